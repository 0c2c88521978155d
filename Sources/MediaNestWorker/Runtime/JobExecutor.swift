import Foundation
import Logging
import MediaNestCore
import MediaNestQueue

/// What becomes of one run: decided once, by ``JobExecutor``, and only written by the
/// ``ResultWriter``.
///
/// Poison is not among them: a job is poison when it took its worker down while running alone,
/// which no run lives to report; the rescue pass decides that in the database
/// (``JobStore/rescueExpired(excluding:on:)``).
enum RunOutcome: Sendable, Hashable {
    /// The handler succeeded: complete the job (fenced: only if this run still owns it).
    case complete(JobOutcome)
    /// A retryable failure with attempts left: back to pending after `after`, the attempt charged.
    case retry(JobError, after: Duration, salvaged: MediaItemUpdate)
    /// Failed for good: a permanent error, or the last attempt.
    case fail(JobError, salvaged: MediaItemUpdate)
    /// Back to pending now without charging the attempt (fenced).
    case release(ReleaseReason)
    /// Nothing to write: the row was settled (or deleted) by someone else.
    case drop(DropReason)

    enum ReleaseReason: Sendable, Hashable {
        /// The worker is shutting down.
        case shutdown
        /// The run failed with `code` because the storage root was gone: not the job's fault.
        case environmentFault(JobError.Code)
        /// The run's lease may have passed to another worker (the heartbeat found the row taken,
        /// or this process went too long without hearing from the database): hand it back,
        /// fenced, so that it returns to pending now instead of being rescued as a crash.
        case leaseLost
    }

    enum DropReason: Sendable, Hashable {
        /// An operator cancelled the job.
        case cancelled
        /// Its media item was deleted, and the job's row with it (ON DELETE CASCADE).
        case mediaItemDeleted
    }

    /// A failure's outcome: retry when the error is retryable and attempts remain (the job's
    /// own `max_attempts` unless the policy overrides it), fail for good otherwise.
    static func failure(_ error: JobError, of job: ClaimedJob, policy: RetryPolicy,
                        salvaged: MediaItemUpdate = MediaItemUpdate(), random: Double = Double.random(in: 0..<1)) -> RunOutcome {
        let maxAttempts = policy.maxAttemptsOverride ?? job.maxAttempts
        guard error.isRetryable && job.attempt < maxAttempts else { return .fail(error, salvaged: salvaged) }
        return .retry(error, after: policy.delay(afterAttempt: job.attempt, random: random), salvaged: salvaged)
    }

    /// Classifies how a run ended.
    /// - Parameters:
    ///   - result: What the handler returned or threw.
    ///   - stopReason: Why the engine stopped the run, read after the handler returned (a
    ///     lease that ran out meanwhile counts, even when the handler succeeded).
    ///   - environmentFault: The failure came from the storage root being gone.
    static func classify(_ result: Result<JobOutcome, JobError>, stopReason: StopReason?, environmentFault: Bool,
                         job: ClaimedJob, policy: RetryPolicy, salvaged: MediaItemUpdate = MediaItemUpdate()) -> RunOutcome {
        switch stopReason {
        case .cancelled: return .drop(.cancelled)
        case .mediaItemDeleted: return .drop(.mediaItemDeleted)
        case .leaseLost: return .release(.leaseLost)
        case .shutdown, .timeout, nil: break
        }
        switch result {
        case .success(let outcome):
            return .complete(outcome)
        case .failure(let error) where stopReason == .shutdown || error.code == .shutdown:
            return .release(.shutdown)
        case .failure(let error) where environmentFault:
            return .release(.environmentFault(error.code))
        case .failure(let error):
            return failure(error, of: job, policy: policy, salvaged: salvaged)
        }
    }
}

/// Runs one claimed job on the calling pool thread and decides its ``RunOutcome``: builds the
/// job's context, starts its clock, calls the handler, then classifies how it ended
/// (``RunOutcome/classify(_:stopReason:environmentFault:job:policy:salvaged:)``).
///
/// It holds only what a run needs, given in `init`; it touches no shared state and no database.
struct JobExecutor: Sendable {
    let registry: HandlerRegistry
    /// Where the media files are; `nil` when none is configured (no media handler runs then).
    let storage: StorageLayout?
    let retryPolicy: RetryPolicy
    /// Each type's time limit (``WorkerConfiguration/timeout(for:)``).
    let timeouts: [JobType: Duration]
    /// Whether the storage root is there (a stat); judges whether an I/O failure is the job's fault.
    let storageAvailable: @Sendable () -> Bool
    /// Adds what a run read from its media file to the metrics.
    let countBytesRead: @Sendable (Int64, JobType) -> Void
    let logger: Logger

    /// The parts of one run the engine shares with the handler.
    struct Run: Sendable {
        var work: ClaimedWork
        var cancellation: JobCancellation
        var progress: JobProgress
        var salvage: JobSalvage
    }

    /// A job's logger: the base logger with `job_id`, `media_id`, `job_type` and `attempt`.
    static func logger(_ base: Logger, for job: ClaimedJob) -> Logger {
        var jobLogger = base
        jobLogger[metadataKey: "job_id"] = "\(job.id)"
        jobLogger[metadataKey: "media_id"] = "\(job.mediaItemID)"
        jobLogger[metadataKey: "job_type"] = "\(job.type)"
        jobLogger[metadataKey: "attempt"] = "\(job.attempt)"
        return jobLogger
    }

    /// Runs `run` and decides what becomes of it.
    /// - Parameter storageGone: The storage root was found gone when the job was claimed: do
    ///   not start it; hand it back uncharged.
    func execute(_ run: Run, storageGone: Bool = false) -> RunOutcome {
        guard !storageGone else { return .release(.environmentFault(.ioError)) }
        // The clock starts when a pool thread picks the job up, not at the claim.
        run.cancellation.startClock(timeout: timeouts[run.work.job.type])
        let result: Result<JobOutcome, JobError>
        switch context(for: run) {
        case .success(let context): result = call(context)
        case .failure(let error): result = .failure(error)
        }
        return outcome(of: run, result: result)
    }

    /// Classifies how `run` ended: a read that failed because the whole volume went away is
    /// not the job's fault, judged now, while the failure is fresh.
    func outcome(of run: Run, result: Result<JobOutcome, JobError>) -> RunOutcome {
        var environmentFault = false
        if case .failure(let error) = result, [.ioError, .fileMissing].contains(error.code) {
            environmentFault = !storageAvailable()
        }
        return RunOutcome.classify(result, stopReason: run.cancellation.stopReason, environmentFault: environmentFault,
                                   job: run.work.job, policy: retryPolicy, salvaged: run.salvage.current)
    }

    /// The job's context, unless the run cannot or must not start.
    func context(for run: Run) -> Result<JobContext, JobError> {
        let job = run.work.job
        // Stopped while it waited for a thread (shutdown, lease lost): do not start it.
        if let reason = run.cancellation.stopReason { return .failure(reason.error) }
        guard let item = run.work.mediaItem else {
            return .failure(JobError(.mediaItemMissing, "The media item \(job.mediaItemID) of this job no longer exists."))
        }
        guard registry.handler(for: job.type) != nil else {
            return .failure(JobError(.unknownJobType, "This worker has no handler for job type \(job.type)."))
        }
        return .success(JobContext(job: job, mediaItem: item, storage: storage ?? StorageLayout(root: "/nonexistent"),
                                   progress: run.progress, cancellation: run.cancellation,
                                   logger: JobExecutor.logger(logger, for: job), salvage: run.salvage))
    }

    /// Calls the job's own handler.
    func call(_ context: JobContext) -> Result<JobOutcome, JobError> {
        let job = context.job
        guard let handler = registry.handler(for: job.type) else {
            return .failure(JobError(.unknownJobType, "This worker has no handler for job type \(job.type)."))
        }
        context.logger.info("job started")
        defer { countBytesRead(context.bytesRead.total, job.type) }
        do {
            return .success(try handler.run(context))
        } catch {
            return .failure(JobError.wrapping(error))
        }
    }
}
