import Foundation
import Logging
import MediaNestCore
import MediaNestQueue

/// Starts claimed units on the ``JobPool`` and hands what became of them to the
/// ``ResultWriter``: the seam between the claim loop, the pool threads and the writer.
///
/// A unit is one job, or the jobs of one media item claimed together (``ClaimedUnit``: its
/// thumbnail and preview). Each job of a unit is in flight on its own (its token, lease,
/// cancellation, heartbeat entry and fence), but the unit runs as one pool body, the
/// ``JobExecutor`` decides one outcome per job, and the outcomes go to the writer in one
/// submission, so that the unit's completions are written in one transaction.
struct RunLauncher: Sendable {
    /// The in-flight set the runs join, and the claim loop's inbox for ``Scheduler/Event/finished(jobID:token:)``.
    let state: RuntimeState
    let pool: JobPool
    let executor: JobExecutor
    let writer: ResultWriter
    let metrics: WorkerMetrics
    /// How long a run owns its lease from its claim until a heartbeat extends it
    /// (``WorkerConfiguration/ownedLease``).
    let ownedLease: Duration
    let logger: Logger

    /// Registers claimed units as in flight (one lock for the batch) and hands them to the pool
    /// (one submission, one wake-up), one body per unit.
    /// - Parameters:
    ///   - tokens: Each job's run token, from ``Scheduler/start(_:)``.
    ///   - claimSentAt: When the claim was sent: each run owns its lease for `ownedLease` from
    ///     then until a heartbeat extends it.
    ///   - storageGone: The storage root went between the check and the claim: the runs are
    ///     handed straight back.
    func launch(_ units: [ClaimedUnit], tokens: [String: UInt64], claimSentAt: ContinuousClock.Instant, storageGone: Bool) {
        guard !units.isEmpty else { return }
        let runsByUnit = units.map { unit in
            unit.works.compactMap { work -> InFlightRun? in
                guard let token = tokens[work.job.id] else { return nil }
                // The clock starts when a pool thread picks the job up (see JobExecutor).
                let cancellation = JobCancellation(timeout: nil)
                cancellation.extendLease(until: claimSentAt + ownedLease)
                return InFlightRun(work: work, token: token, cancellation: cancellation, progress: JobProgress(), salvage: JobSalvage())
            }
        }.filter { !$0.isEmpty }
        state.runsClaimed(runsByUnit.flatMap { $0 })
        for runs in runsByUnit {
            for run in runs { metrics.claimed(run.work.job.type) }
        }
        do {
            try pool.submit(contentsOf: runsByUnit.map { body(for: $0, storageGone: storageGone) })
        } catch {
            // The pool is shut only after the claim loop returned; should it ever be shut
            // first, the runs go back to pending uncharged rather than wait out their leases.
            logger.error("could not start claimed jobs", metadata: ["error": "\(error)"])
            for runs in runsByUnit {
                finish(runs.map { ($0, RunOutcome.release(.shutdown)) }, startedAt: .now)
            }
        }
    }

    /// The code a pool thread runs for one claimed unit: the ``JobExecutor`` runs it and decides
    /// each job's outcome, and the outcomes go to the writer together.
    private func body(for runs: [InFlightRun], storageGone: Bool) -> @Sendable () -> Void {
        let handles = runs.map { JobExecutor.Run(work: $0.work, cancellation: $0.cancellation, progress: $0.progress, salvage: $0.salvage) }
        return { [self] in
            let startedAt = ContinuousClock.now
            let outcomes = handles.count == 1 ? [executor.execute(handles[0], storageGone: storageGone)]
                                              : executor.execute(unit: handles, storageGone: storageGone)
            finish(Array(zip(runs, outcomes)), startedAt: startedAt)
        }
    }

    /// Called on a pool thread when a unit's runs ended: hands the outcomes of those still in
    /// flight as these runs (each once) to the writer in one submission, and tells the
    /// scheduler their slots are free.
    func finish(_ ended: [(run: InFlightRun, outcome: RunOutcome)], startedAt: ContinuousClock.Instant) {
        let finished = state.handlersReturned(ended, startedAt: startedAt)
        guard !finished.isEmpty else { return }
        writer.submit(contentsOf: finished)
    }
}
