import CoreMetrics
import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue

/// One job this process has claimed and not yet written the result of.
struct InFlightRun: Sendable {
    let work: ClaimedWork
    let token: UInt64
    let cancellation: JobCancellation
    let progress: JobProgress
    /// What the handler salvaged for a failure (checksums of a file it could read but not use).
    let salvage: JobSalvage
    var handlerDone = false
    var sentProgressVersion: UInt64 = 0

    init(work: ClaimedWork, token: UInt64, cancellation: JobCancellation, progress: JobProgress, salvage: JobSalvage) {
        self.salvage = salvage
        self.work = work
        self.token = token
        self.cancellation = cancellation
        self.progress = progress
    }
}

/// A run's ``RunOutcome`` on its way to the ``ResultWriter``.
struct FinishedRun: Sendable {
    var work: ClaimedWork
    var token: UInt64
    var outcome: RunOutcome
    /// When a pool thread picked the run up; durations count from it.
    var startedAt: ContinuousClock.Instant
    var duration: Duration { ContinuousClock.now - startedAt }
    var durationMilliseconds: Int { Int(duration.seconds * 1000) }
}

/// The in-flight set and the claim loop's inbox, shared by the services behind one lock.
///
/// Only what more than one thread reads lives here: the runs in flight (the claim loop adds
/// them, the pool finishes them, the heartbeat extends them, the writer removes them), the
/// shutdown request, and the ``Scheduler/Event``s on their way to the claim loop, which owns the
/// ``Scheduler`` and with it every scheduling decision. Each service keeps the rest of its state
/// to itself.
// @unchecked Sendable: `fields` and `socketWaitArmed` are read and written only while
// `condition` is held (the claim loop sleeps on it, so a Mutex cannot replace it); the pipe's
// descriptors are constants, written to and read from without shared memory.
final class RuntimeState: @unchecked Sendable {
    struct Fields {
        var inFlight: [String: InFlightRun] = [:]
        /// Why the worker must stop for good (see ``WorkerExit/fatal(_:)``).
        var fatal: String?
        var shutdownRequestedAt: ContinuousClock.Instant?
        /// The shutdown stops in-flight jobs at once (a second signal, cancellation, a fatal fault).
        var stopImmediately = false
        /// Start-up checks passed: the other services may use the database.
        var started = false
        /// The claim loop returned.
        var finished = false
        /// Events for the claim loop's ``Scheduler``, in the order they happened.
        var events: [Scheduler.Event] = []
        /// Bumped by every ``RuntimeState/signal()``, so a wake-up that arrives while the
        /// claim loop is busy is not lost.
        var wakeCount: UInt64 = 0
    }
    private let condition = NSCondition()
    private var fields = Fields()
    /// A pipe whose read end ends the claim loop's `poll(2)` on its LISTEN socket (see
    /// ``armSocketWait(seenWakeCount:)``); ``signal()`` writes a byte only while that wait is
    /// armed.
    private let wakePipe: (read: Int32, write: Int32) = {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return (-1, -1) }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        return (ends[0], ends[1])
    }()
    private var socketWaitArmed = false

    deinit {
        if wakePipe.read >= 0 {
            close(wakePipe.read)
            close(wakePipe.write)
        }
    }

    func withLock<T>(_ body: (inout Fields) throws -> T) rethrows -> T {
        condition.lock()
        defer { condition.unlock() }
        return try body(&fields)
    }

    /// Claimed runs join the in-flight set, in one step. A job already in flight here (our own
    /// lease on it expired and it was rescued back to us) has its old run stopped: that run must
    /// not write anything, and the new one takes its place.
    func runsClaimed(_ runs: [InFlightRun]) {
        withLock { fields in
            for run in runs {
                fields.inFlight[run.work.job.id]?.cancellation.stop(.leaseLost)
                fields.inFlight[run.work.job.id] = run
            }
        }
    }

    /// Stops in-flight runs, each for its reason (their handlers notice and return; the
    /// executor decides what becomes of each run). Ids not in flight are skipped.
    /// - Returns: The jobs of the runs stopped, in id order, with their reasons.
    @discardableResult
    func stopRuns(_ reasons: [String: StopReason]) -> [(job: ClaimedJob, reason: StopReason)] {
        withLock { fields in
            reasons.sorted { $0.key < $1.key }.compactMap { id, reason in
                guard let run = fields.inFlight[id] else { return nil }
                run.cancellation.stop(reason)
                return (run.work.job, reason)
            }
        }
    }

    /// The jobs of the runs among `ids` that are in flight.
    func jobsInFlight(_ ids: [String]) -> [ClaimedJob] {
        withLock { fields in ids.compactMap { fields.inFlight[$0]?.work.job } }
    }

    /// What one heartbeat sends for each run in flight: its lease, and its progress when that
    /// changed since the last heartbeat (counted as sent from now on: a lost snapshot costs one
    /// stale `progress_info`), with the run's cancellation, whose lease the heartbeat extends.
    func heartbeatEntries() -> [(entry: HeartbeatEntry, cancellation: JobCancellation)] {
        withLock { fields in
            let runs = fields.inFlight
            return runs.map { id, run in
                let current = run.progress.current
                let changed = current.version != run.sentProgressVersion
                fields.inFlight[id]?.sentProgressVersion = current.version
                return (HeartbeatEntry(jobID: run.work.job.id, leaseID: run.work.job.leaseID, progress: changed ? current.snapshot?.json : nil),
                        run.cancellation)
            }
        }
    }

    /// Handlers returned: each run still in flight as itself (same token, not yet done) is
    /// marked done, once, and the scheduler hears its slot is free
    /// (``Scheduler/Event/finished(jobID:token:)``) while its result is written.
    /// - Returns: The runs to hand to the writer: the others were replaced or settled already.
    func handlersReturned(_ ended: [(run: InFlightRun, outcome: RunOutcome)], startedAt: ContinuousClock.Instant) -> [FinishedRun] {
        let finished = withLock { fields in
            ended.compactMap { run, outcome -> FinishedRun? in
                let id = run.work.job.id
                guard let entry = fields.inFlight[id], entry.token == run.token, !entry.handlerDone else { return nil }
                fields.inFlight[id]?.handlerDone = true
                fields.events.append(.finished(jobID: id, token: run.token))
                return FinishedRun(work: entry.work, token: run.token, outcome: outcome, startedAt: startedAt)
            }
        }
        if !finished.isEmpty { signal() }
        return finished
    }

    /// Runs whose results were written (or given up) leave the in-flight set, each only while
    /// it is still the run in flight for its job, and the scheduler hears of each
    /// (``Scheduler/Event/written(jobID:token:)``): their slots and heartbeats are done.
    func runsWritten(_ runs: [(jobID: String, token: UInt64)]) {
        withLock { fields in
            for run in runs where fields.inFlight[run.jobID]?.token == run.token {
                fields.inFlight[run.jobID] = nil
            }
            fields.events.append(contentsOf: runs.map { .written(jobID: $0.jobID, token: $0.token) })
        }
        signal()
    }

    /// Hands `event` to the claim loop and wakes it.
    func post(_ event: Scheduler.Event) {
        withLock { $0.events.append(event) }
        signal()
    }

    /// The events posted since the last call, and the wake count they go with (for
    /// ``wait(until:seenWakeCount:)``).
    func takeEvents() -> (events: [Scheduler.Event], wakeCount: UInt64) {
        withLock { fields in
            defer { fields.events.removeAll(keepingCapacity: true) }
            return (fields.events, fields.wakeCount)
        }
    }

    /// Wakes the claim loop (and whoever waits on the condition), wherever it sleeps.
    func signal() {
        condition.lock()
        fields.wakeCount &+= 1
        condition.broadcast()
        if socketWaitArmed {
            // Once per armed wait is enough: the loop drains the counter when it wakes.
            socketWaitArmed = false
            var byte: UInt8 = 1
            _ = write(wakePipe.write, &byte, 1)
        }
        condition.unlock()
    }

    /// Prepares a sleep in `poll(2)` beside a socket: from now on ``signal()`` makes the
    /// returned descriptor readable.
    /// - Returns: The descriptor to poll, or `nil` when a signal came after `seenWakeCount` (or
    ///   an event waits) and the loop must not sleep at all.
    func armSocketWait(seenWakeCount: UInt64) -> Int32? {
        condition.lock()
        defer { condition.unlock() }
        guard wakePipe.read >= 0, fields.wakeCount == seenWakeCount, fields.events.isEmpty else { return nil }
        socketWaitArmed = true
        return wakePipe.read
    }

    /// Ends a sleep begun with ``armSocketWait(seenWakeCount:)`` and drains the descriptor.
    func disarmSocketWait() {
        condition.lock()
        socketWaitArmed = false
        condition.unlock()
        var bytes = (UInt64(0), UInt64(0))
        while read(wakePipe.read, &bytes, 16) > 0 {}
    }

    /// Sleeps until `deadline` or a signal after the one numbered `seenWakeCount`.
    func wait(until deadline: ContinuousClock.Instant, seenWakeCount: UInt64) {
        condition.lock()
        defer { condition.unlock() }
        while fields.wakeCount == seenWakeCount && fields.events.isEmpty {
            let remaining = deadline - .now
            if remaining <= .zero { return }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
    }

    /// Sleeps until `deadline` unless `stop` becomes true; returns `false` if it did.
    func wait(until deadline: ContinuousClock.Instant, unless stop: (Fields) -> Bool) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !stop(fields) {
            let remaining = deadline - .now
            if remaining <= .zero { return true }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
        return false
    }
}
