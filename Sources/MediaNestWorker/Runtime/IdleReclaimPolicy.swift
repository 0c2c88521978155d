/// When an idle worker gives memory back: a pure decision over the job pool's and the result
/// writer's events, with the time passed in, so it is tested without threads or clocks.
///
/// The pool reports each job it starts (``workStarted()``) and each moment every one of its
/// threads has gone idle (``poolWentIdle(at:)``). The result writer reports the finished runs
/// it is handed (``outcomesHanded(_:)``) and those it lets go of once written or given up
/// (``outcomesLetGo(_:at:)``): a run's outcome, and whatever it keeps alive, is freed on the
/// writer's thread, after the pool thread that made it went idle. So the worker is *quiet* only
/// when the pool is idle and the writer holds no outcome, and memory is given back once it has
/// stayed quiet for ``settle`` after some work, once per quiet spell: a stream of jobs with short
/// gaps keeps its memory (the next job would only fault the same pages in again), a quiet
/// worker is not trimmed again and again, and new work that came and went makes the next quiet
/// spell give back again.
struct IdleReclaimPolicy: Sendable, Equatable {
    /// How long the worker must stay quiet before memory is given back.
    let settle: Duration
    /// Some job started (or some outcome was handed over) since memory was last given back.
    private(set) var workSinceReclaim = false
    /// When the pool last became idle, while it still is.
    private(set) var idleSince: ContinuousClock.Instant?
    /// Finished runs handed to the writer and not yet let go of.
    private(set) var outcomesHeld = 0
    /// When the writer last let go of the last outcome it held.
    private(set) var drainedAt: ContinuousClock.Instant?

    init(settle: Duration) {
        self.settle = settle
    }

    /// A thread picked up a job: the pool is busy.
    mutating func workStarted() {
        workSinceReclaim = true
        idleSince = nil
    }

    /// Every thread is idle and nothing waits (again, if it already was: the first time counts).
    mutating func poolWentIdle(at now: ContinuousClock.Instant) {
        if idleSince == nil { idleSince = now }
    }

    /// Finished runs were handed to the writer: nothing is due until it lets go of them.
    mutating func outcomesHanded(_ count: Int) {
        guard count > 0 else { return }
        outcomesHeld += count
        workSinceReclaim = true
    }

    /// The writer let go of `count` finished runs (written or given up) at `now`.
    mutating func outcomesLetGo(_ count: Int, at now: ContinuousClock.Instant) {
        guard count > 0 else { return }
        outcomesHeld = max(0, outcomesHeld - count)
        if outcomesHeld == 0 { drainedAt = now }
    }

    /// When to give memory back: ``settle`` after the later of the pool going idle and the
    /// writer letting go of its last outcome; `nil` while either is busy or when nothing ran
    /// since the last time.
    var reclaimAt: ContinuousClock.Instant? {
        guard workSinceReclaim, outcomesHeld == 0, let idleSince else { return nil }
        return max(idleSince, drainedAt ?? idleSince) + settle
    }

    /// Whether memory is due to be given back at `now`.
    func isDue(at now: ContinuousClock.Instant) -> Bool {
        reclaimAt.map { now >= $0 } ?? false
    }

    /// Memory was given back; nothing more is due until the next job.
    mutating func reclaimed() {
        workSinceReclaim = false
    }
}
