import CoreMetrics
import Foundation
import MediaNestCore
import MediaNestDB
import MediaNestQueue

/// One job this process has claimed and not yet written the result of.
final class InFlightRun: @unchecked Sendable {
    // Mutable fields are only touched under RuntimeState's lock.
    let work: ClaimedWork
    let token: UInt64
    let cancellation: JobCancellation
    let progress: JobProgress
    /// What the handler salvaged for a failure (checksums of a file it could read but not use).
    let salvage: JobSalvage
    /// What the job is estimated to hold at its peak (``JobMemoryEstimator``): reserved in the
    /// claim loop's ``MemoryBudget`` while the run is in flight, until its result is written.
    let memoryEstimate: Int64
    /// Whether the run takes a slot of its type in ``RuntimeState/Fields/runningHandlers``: every
    /// run but the jobs that came along with a claimed unit's lead (see ``ClaimedUnit``), which
    /// run on the lead's thread, in the same execution.
    let holdsSlot: Bool
    /// When a pool thread picked the run up (the claim time until then); durations count from it.
    var startedAt = ContinuousClock.now
    var handlerDone = false
    var sentProgressVersion: UInt64 = 0

    init(work: ClaimedWork, token: UInt64, cancellation: JobCancellation, progress: JobProgress, salvage: JobSalvage,
         memoryEstimate: Int64 = 0, holdsSlot: Bool = true) {
        self.salvage = salvage
        self.holdsSlot = holdsSlot
        self.memoryEstimate = memoryEstimate
        self.work = work
        self.token = token
        self.cancellation = cancellation
        self.progress = progress
    }
}

/// A handler's result on its way to the ``ResultWriter``.
struct FinishedRun: Sendable {
    var work: ClaimedWork
    var token: UInt64
    var result: Result<JobOutcome, JobError>
    var stopReason: StopReason?
    var startedAt: ContinuousClock.Instant
    /// The run failed because the storage root was gone: release it, do not charge it.
    var environmentFault = false
    /// Item changes a failed run still records (checksums of a file it could read but not parse).
    var salvaged = MediaItemUpdate()
    var duration: Duration { ContinuousClock.now - startedAt }
    var durationMilliseconds: Int { Int(duration.seconds * 1000) }
}

/// The in-flight set and the claim loop's wake-ups, shared by the services behind one lock.
///
/// Only what more than one service reads lives here: the runs in flight (the claim loop adds
/// them, the pool finishes them, the heartbeat extends them, the writer removes them) and the
/// shutdown request. Each service keeps the rest of its state to itself.
final class RuntimeState: @unchecked Sendable {
    struct Fields {
        var inFlight: [String: InFlightRun] = [:]
        var runningHandlers: [JobType: Int] = [:]
        var claimWanted = true
        /// The claim loop's connection LISTENs, so the fallback poll may be slow.
        var listenHealthy = false
        /// Why the worker must stop for good (see ``WorkerExit/fatal(_:)``).
        var fatal: String?
        var shutdownRequestedAt: ContinuousClock.Instant?
        var immediate = false
        /// Start-up checks passed: the other services may use the database.
        var started = false
        /// The claim loop returned.
        var finished = false
        var nextToken: UInt64 = 0
        /// When retries this worker scheduled come due (no NOTIFY announces that moment).
        var retryWakeups: [ContinuousClock.Instant] = []
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
    ///   a claim is wanted) and the loop must not sleep at all.
    func armSocketWait(seenWakeCount: UInt64) -> Int32? {
        condition.lock()
        defer { condition.unlock() }
        guard wakePipe.read >= 0, fields.wakeCount == seenWakeCount, !fields.claimWanted else { return nil }
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
        while fields.wakeCount == seenWakeCount && !fields.claimWanted {
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

/// A stop flag with a condition, for a service thread that sleeps between rounds.
final class StopFlag: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopped = false

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    var isStopped: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    /// Sleeps until `deadline`; returns `false` when stopped (before or while sleeping).
    func sleep(until deadline: ContinuousClock.Instant) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !stopped {
            let remaining = deadline - .now
            if remaining <= .zero { return true }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
        return false
    }
}

/// Runs `body` on a new OS thread and waits for it without blocking the cooperative pool: the
/// services' loops make blocking libpq calls.
func onOwnThread<T: Sendable>(named name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.name = name
        thread.start()
    }
}
