import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue

/// Writes one run's ``RunOutcome`` in its own transaction(s) and logs what became of the job:
/// completed, retried, failed, released or dropped. The result writer's path for every outcome
/// that is not written in a batch of completions (see ``ResultWriterLoop``). It holds no state:
/// retrying a write that hit a conflict is the writer's business.
struct OutcomeRecorder {
    /// The queue, as this worker, with the writer's lock timeout.
    let store: JobStore
    let metrics: WorkerMetrics
    /// Turns a result the database refuses into the run's failure, retried or not.
    let retryPolicy: RetryPolicy
    /// Told when a retry's `run_at` comes: no NOTIFY marks that moment, so the scheduler wakes
    /// up for it itself.
    let retryDue: (ContinuousClock.Instant) -> Void

    /// Writes `outcome` and logs it.
    /// - Throws: ``DatabaseError`` for the writer to retry (connection, transient conflict) or
    ///   give up on.
    func write(_ outcome: RunOutcome, of run: FinishedRun, logger jobLogger: Logger, on connection: PGConnection) throws {
        let job = run.work.job
        switch outcome {
        case .drop(.cancelled):
            jobLogger.notice("job cancelled by an operator; stopped")
        case .drop(.mediaItemDeleted):
            // Its row went with the item (ON DELETE CASCADE): there is nothing to write.
            jobLogger.notice("the job's media item was deleted; stopped")
        case .release(let reason):
            // Fenced: when another run owns the job now, nothing is written.
            let released = !(try store.release([job], on: connection)).isEmpty
            switch reason {
            case .leaseLost:
                jobLogger.warning(released ? "job stopped: this worker could not renew its lease in time; released it back to pending"
                                           : "job stopped: this worker lost its lease; another worker owns it now")
            case .shutdown:
                jobLogger.notice(released ? "job released for shutdown; it goes back to pending without charging an attempt" : "job stopped for shutdown; it was no longer ours")
            case .environmentFault(let code):
                jobLogger.notice(released ? "job released without charging an attempt: the storage root was unavailable"
                                          : "job failed while the storage root was unavailable; it was no longer ours",
                                 metadata: ["code": "\(code)"])
            }
        case .complete(let result):
            let stored: Bool
            do {
                stored = try store.complete(job, outcome: result, on: connection)
            } catch let error as DatabaseError where !error.isConnectionProblem && !error.isTransientConflict {
                // The result itself cannot be stored (for example an item update breaks a
                // constraint): retrying it would fail the same way, so it is the run's failure.
                let failure = JobError(.internalError, "The job's result could not be stored: \(error.message)", retryable: true)
                jobLogger.error("job result could not be stored; recording that as the run's failure", metadata: ["error": "\(error)"])
                try write(RunOutcome.failure(failure, of: job, policy: retryPolicy), of: run, logger: jobLogger, on: connection)
                return
            }
            if stored {
                metrics.completed(job.type, duration: run.duration)
                jobLogger.info("job completed", metadata: ["duration_ms": "\(run.durationMilliseconds)"])
            } else {
                jobLogger.warning("job result dropped: this run no longer owns the job (lease lost or cancelled)")
            }
        case .retry(let error, let delay, let salvaged):
            try recordFailure(error, retryAfter: delay, salvaged: salvaged, of: job, logger: jobLogger, on: connection)
        case .fail(let error, let salvaged):
            try recordFailure(error, retryAfter: nil, salvaged: salvaged, of: job, logger: jobLogger, on: connection)
        }
    }

    private func recordFailure(_ error: JobError, retryAfter delay: Duration?, salvaged: MediaItemUpdate, of job: ClaimedJob,
                               logger jobLogger: Logger, on connection: PGConnection) throws {
        switch try store.fail(job, error: error, retryAfter: delay, itemUpdate: salvaged, on: connection) {
        case .retrying(let runAt):
            metrics.retried(job.type)
            jobLogger.warning("job failed; will retry", metadata: ["code": "\(error.code)", "error": "\(error.message)", "run_at": "\(runAt)"])
            // No NOTIFY marks the moment run_at passes: the scheduler wakes up for it itself.
            retryDue(ContinuousClock.now + .seconds(max(0, runAt.timeIntervalSinceNow)) + .milliseconds(50))
        case .failed:
            metrics.failed(job.type)
            jobLogger.error("job failed", metadata: ["code": "\(error.code)", "error": "\(error.message)", "retryable": "\(error.isRetryable)"])
        case .dropped:
            jobLogger.warning("job failure dropped: this run no longer owns the job")
        }
    }
}
