import MediaNestCore
import MediaNestQueue

/// What the claim loop decides, as a plain value: which jobs to claim and when, when to sample
/// the queue and sleep, and how to shut down. No thread, no database, no clock of its own.
///
/// The claim loop (its driver) feeds it ``Event``s (woken, finished, written, signal, …) with
/// ``handle(_:now:)``, starts a cycle with ``tick(now:storageAvailable:)`` and then asks for
/// ``next()`` ``Action``s until it gets ``Action/sleep(until:)``, reporting what each action
/// found (see Scheduler+Claim.swift; the events and actions are in Scheduler+Events.swift).
/// Time only enters through the `now` of those calls and randomness only through ``random``,
/// so the tests drive it with a manual clock.
///
/// Policies it owns:
/// - **Slots.** At most ``Settings/concurrency`` executions run (one per pool thread), at most
///   ``Settings/perTypeLimits`` jobs of a type; the memory budget trims the slots further
///   (``MemoryBudget``). An item's jobs claimed together (a unit: its thumbnail and preview) are
///   one execution, and each of its jobs counts against its own type's slots.
/// - **Run alone.** A job rescued after a crash runs with nothing beside it: claimed first when
///   nothing runs, and while it waits behind running jobs nothing else is claimed.
/// - **Writer backlog.** A slot frees when its handler returns, not when its result is stored:
///   nothing is claimed while ``Settings/writeBacklogLimit`` results wait to be written.
/// - **Fallback poll.** Without a wake-up it claims every poll interval (slow while LISTEN
///   works, fast without it), jittered ±20 % so that workers spread out.
/// - **Retry wake-ups.** No NOTIFY announces that a retry's `run_at` passed: it wakes for it.
/// - **Drain** (`--drain`): exits once nothing is in flight and nothing is runnable.
/// - **Shutdown.** At a signal it stops claiming; after the grace period (at once when
///   immediate) it stops the running handlers, gives them a moment, then releases whatever is
///   still running and exits.
struct Scheduler {
    typealias Instant = ContinuousClock.Instant

    /// The policy figures, from ``WorkerConfiguration``.
    struct Settings: Sendable {
        var types: [JobType]
        var concurrency: Int
        var perTypeLimits: [JobType: Int] = [:]
        /// The fallback poll without LISTEN (or while it is down).
        var pollInterval: Duration = .seconds(5)
        /// The fallback poll while LISTEN delivers wake-ups.
        var listenPollInterval: Duration = .seconds(30)
        var listens = false
        /// How often the queue gauges are sampled; `nil`: never (no metrics backend).
        var sampleInterval: Duration?
        var gracePeriod: Duration = .seconds(30)
        var drain = false
        var memoryCapacity: Int64?
        /// The smallest estimate of a type's job (``JobMemoryEstimator/minimum(for:)``).
        var minimumEstimates: [JobType: Int64] = [:]

        var writeBacklogLimit: Int { Scheduler.writeBacklogLimit(concurrency: concurrency) }
    }

    /// How many finished runs may wait for their results to be written before claiming stops.
    /// Every run in the backlog is one the heartbeat must keep alive, and one that runs again,
    /// alone, if the process dies; without a bound a stalled writer (a lock it waits for, a slow
    /// disk) would let the loop claim without end.
    static func writeBacklogLimit(concurrency: Int) -> Int { max(1024, 16 * concurrency) }
    /// How long stopped handlers get to return after a graceful shutdown's grace period.
    static let stopGrace: Duration = .seconds(3)
    /// The same after an immediate stop (a second signal, cancellation, a fatal fault).
    static let immediateStopGrace: Duration = .seconds(1)

    let settings: Settings
    /// A number in 0..<1 for the poll's jitter.
    var random: () -> Double

    private(set) var runs: [String: Run] = [:]
    /// Jobs whose handler runs, by type (runs whose handler has not returned).
    private(set) var running: [JobType: Int] = [:]
    /// Executions running: the pool threads taken (a claimed unit is one).
    private(set) var executions = 0
    private var nextToken: UInt64 = 0
    /// Something asked for a claim (a wake-up, a finished or written run).
    private(set) var claimWanted = true
    private var listenHealthy = false
    private(set) var nextPoll: Instant
    private var pollIntervalInUse: Duration = .zero
    private var storageWasAvailable = true
    private var nextSample: Instant
    private var retryWakeups: [Instant] = []
    /// A run-alone job waits for the running ones to finish.
    var drainingForRunAlone = false
    var budget: MemoryBudget
    private(set) var shutdownAt: Instant?
    private var immediate = false
    private var stoppedForShutdown = false
    private(set) var hardDeadline: Instant?
    var cycle: Cycle?

    init(settings: Settings, now: Instant, random: @escaping () -> Double = { Double.random(in: 0..<1) }) {
        self.settings = settings
        self.random = random
        nextPoll = now
        nextSample = now
        budget = MemoryBudget(capacity: settings.memoryCapacity)
    }

    /// Jobs whose handler runs now.
    var runningCount: Int { running.values.reduce(0, +) }

    /// A run's handler returned (or its run was replaced or written first): its job leaves its
    /// type's count, and a unit's lead gives back the execution's thread.
    private mutating func handlerReturned(_ run: Run) {
        running[run.claim.type, default: 1] -= 1
        if run.claim.ledBy == nil { executions -= 1 }
    }

    mutating func handle(_ event: Event, now: Instant) {
        switch event {
        case .woken:
            claimWanted = true
        case .listen(let healthy):
            listenHealthy = healthy
        case .finished(let jobID, let token):
            guard var run = runs[jobID], run.token == token, !run.handlerDone else { return }
            run.handlerDone = true
            runs[jobID] = run
            handlerReturned(run)
            if shutdownAt == nil { claimWanted = true }
        case .written(let jobID, let token):
            if let run = runs[jobID], run.token == token {
                if !run.handlerDone { handlerReturned(run) }
                runs[jobID] = nil
            }
            // A finished job frees a slot and hints that more work may be waiting.
            if shutdownAt == nil { claimWanted = true }
        case .retryDue(let instant):
            retryWakeups.append(instant)
        case .signal(let immediately):
            if shutdownAt == nil { shutdownAt = now }
            if immediately { immediate = true }
        }
    }

    /// Registers claimed jobs as in flight and gives each a token; a job already in flight here
    /// (our own expired lease, rescued back to us) replaces its old run, which the driver stops.
    mutating func start(_ claims: [Claim]) -> [Run] {
        claims.map { claim in
            nextToken += 1
            if let previous = runs[claim.jobID], !previous.handlerDone { handlerReturned(previous) }
            let run = Run(claim: claim, token: nextToken)
            runs[claim.jobID] = run
            running[claim.type, default: 0] += 1
            if claim.ledBy == nil { executions += 1 }
            budget.reserve(claim.jobID, bytes: claim.estimate)
            return run
        }
    }

    /// The fallback poll's interval now: slow while LISTEN delivers wake-ups, fast without it.
    var pollInterval: Duration {
        settings.listens && listenHealthy ? settings.listenPollInterval : settings.pollInterval
    }

    func jittered(_ interval: Duration) -> Duration { interval * (0.8 + 0.4 * random()) }

    /// Starts a cycle: decides what is due at `now`; then ask ``next()``.
    /// - Parameter storageAvailable: Whether the storage root is there: nothing is claimed
    ///   while it is gone, and a claim follows once it is back.
    mutating func tick(now: Instant, storageAvailable: Bool) {
        var cycle = Cycle(now: now, storageAvailable: storageAvailable)
        if shutdownAt == nil {
            let retryDue = retryWakeups.contains { $0 <= now }
            retryWakeups.removeAll { $0 <= now }
            let storageCameBack = storageAvailable && !storageWasAvailable
            storageWasAvailable = storageAvailable
            cycle.claimNow = storageAvailable && (claimWanted || retryDue || storageCameBack || now >= nextPoll)
            cycle.pollTick = !claimWanted
            let interval = pollInterval
            if now >= nextPoll {
                nextPoll = now + jittered(interval)
            } else if interval < pollIntervalInUse {
                // LISTEN just went down: do not sit out the slow poll.
                nextPoll = min(nextPoll, now + jittered(interval))
            }
            pollIntervalInUse = interval
        }
        claimWanted = false
        self.cycle = cycle
    }

    /// When to wake up at the end of a cycle.
    func sleepDeadline(now: Instant) -> Instant {
        if claimWanted { return now }
        var deadline = shutdownAt == nil ? nextPoll : now + .milliseconds(100)
        if settings.sampleInterval != nil { deadline = min(deadline, nextSample) }
        if let due = retryWakeups.min() { deadline = min(deadline, due) }
        // While the storage root is gone, look again every second so claiming resumes soon.
        if !storageWasAvailable { deadline = min(deadline, now + .seconds(1)) }
        if settings.drain { deadline = min(deadline, now + .milliseconds(250)) }
        return deadline
    }

    /// Shutdown: stop the running handlers when the grace period is over, release them when
    /// they do not return in time, exit when nothing is left.
    mutating func shutdownStep(now: Instant) -> Action? {
        guard let shutdownAt else { return nil }
        if !stoppedForShutdown && (immediate || now >= shutdownAt + settings.gracePeriod) {
            stoppedForShutdown = true
            // Handlers get a moment to notice the stop and return; one stuck in C code is
            // released anyway when the moment is over.
            hardDeadline = now + (immediate ? Scheduler.immediateStopGrace : Scheduler.stopGrace)
            let stopping = runs.values.filter { !$0.handlerDone }.map(\.claim.jobID).sorted()
            if !stopping.isEmpty { return .stopRuns(stopping) }
        }
        if let hardDeadline, now >= hardDeadline, cycle?.released != true {
            cycle?.released = true
            let abandoned = runs.values.filter { !$0.handlerDone }.map(\.claim.jobID).sorted()
            if !abandoned.isEmpty { return .release(abandoned) }
        }
        if cycle?.released == true || runs.isEmpty { return .exit(.shutdown) }
        return .sleep(until: sleepDeadline(now: now))
    }

    /// A queue sample, when one is due.
    mutating func timerStep(now: Instant) -> Action? {
        if let interval = settings.sampleInterval, now >= nextSample {
            nextSample = now + interval
            return .sampleQueue
        }
        return nil
    }
}
