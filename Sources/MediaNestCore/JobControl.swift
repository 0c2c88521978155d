import Synchronization

/// Why a running job is being stopped before it finished.
public enum StopReason: String, Sendable, Hashable {
    /// An operator cancelled the job (`medianest-worker cancel`, or the row set to `cancelled`).
    case cancelled
    /// The worker is shutting down; the job goes back to pending without charging an attempt.
    case shutdown
    /// The job ran past its wall-clock limit.
    case timeout
    /// Another worker took the job over after this worker's lease expired.
    case leaseLost
    /// The job's row is gone: its media item was deleted and the job went with it (cascade).
    case mediaItemDeleted

    /// The error a handler throws when it notices this stop.
    public var error: JobError {
        switch self {
        case .cancelled: JobError(.cancelled, "The job was cancelled by an operator.")
        case .shutdown: JobError(.shutdown, "The worker is shutting down; the job will run again.")
        case .timeout: JobError(.timeout, "The job ran past its time limit.")
        case .leaseLost: JobError(.leaseLost, "The worker lost its lease on the job; another worker owns it now.")
        case .mediaItemDeleted: JobError(.mediaItemMissing, "The job's media item was deleted while the job ran; there is nothing left to process.")
        }
    }
}

/// Lets the engine stop a running job, and lets the job (and FFmpeg's interrupt callback) notice.
///
/// Handlers call ``check()`` between units of work; blocking C code polls ``shouldStop`` from its
/// interrupt callback. The first reason given wins. A deadline turns into ``StopReason/timeout``
/// the first time it is checked after it passed.
///
/// It also carries the run's **lease as this process knows it** (``extendLease(until:)``): the
/// last moment at which the database's lease is certainly still this run's. Past it the run
/// stops with ``StopReason/leaseLost`` without asking the database, because by then another
/// worker may have rescued the job: a run that was paused (SIGSTOP, a VM freeze) or cut off from
/// PostgreSQL must not go on to rename its outputs over the rescuer's. Handlers check the token
/// right before committing an output, so a late run never replaces a file once its lease may
/// have passed to another worker.
public final class JobCancellation: Sendable {
    private struct State {
        var reason: StopReason?
        var deadline: ContinuousClock.Instant?
        var leaseDeadline: ContinuousClock.Instant?
    }
    private let state: Mutex<State>
    /// For a token of work shared by several jobs: the jobs' own tokens (see
    /// ``init(stoppingWhenAllOf:)``); empty otherwise.
    private let members: [JobCancellation]

    /// Creates a token.
    /// - Parameter timeout: The job's wall-clock limit, counted from now; `nil` for none.
    public init(timeout: Duration? = nil) {
        state = Mutex(State(reason: nil, deadline: timeout.map { ContinuousClock.now + $0 }))
        members = []
    }

    /// A token for work shared by several jobs (one decode for an item's thumbnail and preview):
    /// it stops once every one of `members` must stop, with the first member's reason, so the
    /// shared work goes on while any job still wants it. Each job's own outputs are still
    /// committed only after a check of that job's own token. ``stop(_:)`` stops it at once.
    /// - Parameter members: The jobs' tokens, not empty.
    public init(stoppingWhenAllOf members: [JobCancellation]) {
        precondition(!members.isEmpty, "shared work belongs to at least one job")
        state = Mutex(State(reason: nil, deadline: nil))
        self.members = members
    }

    /// Starts (or restarts) the wall-clock limit from now. The worker calls it when a thread
    /// picks the job up, so that a job that waited for a thread is not charged for the wait.
    /// - Parameter timeout: The limit, counted from now; `nil` for none.
    public func startClock(timeout: Duration?) {
        state.withLock { $0.deadline = timeout.map { ContinuousClock.now + $0 } }
    }

    /// Moves the run's known lease end to `instant` (never backwards). The worker calls it with
    /// the moment it *sent* the claim or the heartbeat that the database answered, plus less
    /// than the lease: the database stamped its own expiry later than that, so the run's view
    /// ends first. ``ContinuousClock`` keeps counting while the process is stopped, so a run
    /// that wakes up after a long pause sees its lease gone at once.
    /// - Parameter instant: The new end; `nil` never moves it.
    public func extendLease(until instant: ContinuousClock.Instant) {
        state.withLock { state in
            if state.leaseDeadline.map({ instant > $0 }) ?? true { state.leaseDeadline = instant }
        }
    }

    /// Asks the job to stop. Later calls do not replace the first reason.
    public func stop(_ reason: StopReason) {
        state.withLock { if $0.reason == nil { $0.reason = reason } }
    }

    /// The reason the job must stop, or `nil` while it may go on. Cheap enough for a C callback.
    public var stopReason: StopReason? {
        if !members.isEmpty, state.withLock({ $0.reason }) == nil {
            let reasons = members.map(\.stopReason)
            if reasons.allSatisfy({ $0 != nil }), let first = reasons[0] { stop(first) }
        }
        return state.withLock { state in
            if state.reason == nil, let leaseDeadline = state.leaseDeadline, ContinuousClock.now >= leaseDeadline {
                state.reason = .leaseLost
            }
            if state.reason == nil, let deadline = state.deadline, ContinuousClock.now >= deadline {
                state.reason = .timeout
            }
            return state.reason
        }
    }

    /// Whether the job must stop now.
    public var shouldStop: Bool { stopReason != nil }

    /// Throws the stop's ``JobError`` if the job must stop.
    /// - Throws: ``JobError`` with code `cancelled`, `shutdown`, `timeout` or `lease_lost`.
    public func check() throws(JobError) {
        if let reason = stopReason { throw reason.error }
    }
}

/// A snapshot of a job's progress, as written to `processing_jobs.progress_info`.
public struct ProgressSnapshot: Sendable, Hashable {
    /// Fraction done, from 0 to 1, or `nil` when unknown.
    public var fraction: Double?
    /// A short name of the current stage, such as `hashing` or `probing`.
    public var stage: String
    /// Extra stage details (frames done, bytes read, speed).
    public var details: [String: JSONValue]

    public init(fraction: Double? = nil, stage: String, details: [String: JSONValue] = [:]) {
        self.fraction = fraction
        self.stage = stage
        self.details = details
    }

    /// The JSON written to `progress_info`.
    public var json: JSONValue {
        var object = details
        object["stage"] = .string(stage)
        if let fraction { object["fraction"] = .double((fraction * 1000).rounded() / 1000) }
        return .object(object)
    }
}

/// Where a handler reports how far it got. The engine's heartbeat reads the latest snapshot.
///
/// Reporting is cheap (one lock, no I/O), so handlers may call it from tight loops; only the
/// latest value is kept and the heartbeat writes it at most once per interval.
public final class JobProgress: Sendable {
    private let latest = Mutex<(snapshot: ProgressSnapshot?, version: UInt64)>((nil, 0))

    public init() {}

    /// Records the job's current progress.
    public func report(_ snapshot: ProgressSnapshot) {
        latest.withLock { $0 = (snapshot, $0.version &+ 1) }
    }

    /// Records the job's current progress.
    /// - Parameters:
    ///   - stage: A short stage name.
    ///   - fraction: Fraction done, 0 to 1, if known.
    ///   - details: Extra details.
    public func report(stage: String, fraction: Double? = nil, details: [String: JSONValue] = [:]) {
        report(ProgressSnapshot(fraction: fraction.map { min(max($0, 0), 1) }, stage: stage, details: details))
    }

    /// The latest snapshot and a counter that changes on every report.
    public var current: (snapshot: ProgressSnapshot?, version: UInt64) { latest.withLock { $0 } }
}

/// Bytes a job read from its media file, for `medianest_bytes_read_total`.
///
/// The readers (the media module's `SafeFile` `pread`s and FFmpeg's AVIO read callback
/// over it) add to the counter the file was opened with; the engine reads ``total`` once the
/// handler returned. One per run, so concurrent jobs never share one. Adding is one relaxed
/// atomic add per read call (reads are 64 KiB to 4 MiB), and a run that reads nothing costs
/// only the allocation and one load.
public final class ByteCounter: Sendable {
    private let count = Atomic<Int64>(0)

    /// Creates a counter at zero.
    public init() {}

    /// Adds `bytes` read.
    /// - Parameter bytes: Bytes a read call returned; zero or negative adds nothing.
    public func add(_ bytes: Int) {
        guard bytes > 0 else { return }
        count.wrappingAdd(Int64(bytes), ordering: .relaxed)
    }

    /// The bytes added so far.
    public var total: Int64 { count.load(ordering: .relaxed) }
}
