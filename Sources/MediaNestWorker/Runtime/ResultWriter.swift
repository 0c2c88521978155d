import CoreMetrics
import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import ServiceLifecycle

/// The result writer: writes what handlers returned, on a thread of its own, over the worker's
/// connection that is not the LISTEN session (the heartbeat's too).
///
/// Plain successes that are due together go in one batch transaction; failures, releases and
/// cancellations one by one. Owns its queue of ``PendingWrite``s and their retry state; the
/// claim loop and the pool only ``submit(_:)``. A written run leaves the in-flight set, which
/// frees its slot and stops its heartbeat.
final class ResultWriter: Service, @unchecked Sendable {
    private let runtime: WorkerRuntime
    private let lane: DatabaseLane
    private let mailbox = NSCondition()
    // Under `mailbox`.
    private var submitted: [FinishedRun] = []
    /// When ``submitted`` last went from empty to not empty.
    private var oldestSubmittedAt: ContinuousClock.Instant = .now
    private var stopRequested = false
    /// How long the first of a group of results may wait for company before the writer writes
    /// them (unless ``coalesceTarget`` of them wait first). Settling is much cheaper per item in
    /// big batches (one transaction for hundreds of items rather than for the few that finished
    /// since the last write), and 20 ms is nothing beside what a media job takes. With
    /// `--no-listen`, where claims and writes take turns on one backend, it is a fifth of the
    /// queue's throughput: about 6,000 → 7,200 no-op jobs/s on the development machine.
    static let coalesceWindow: Duration = .milliseconds(20)
    private let coalesceTarget: Int
    // The writer thread's own.
    private var pendingWrites: [PendingWrite] = []

    init(runtime: WorkerRuntime, database: PGConnectionRunner) {
        self.runtime = runtime
        self.lane = DatabaseLane(database, metrics: runtime.metrics)
        var store = runtime.store
        store.lockTimeout = runtime.configuration.resultLockTimeout
        self.store = store
        // Half the backlog the claim loop allows: it never stops claiming while results gather.
        self.coalesceTarget = ClaimLoop.writeBacklogLimit(concurrency: runtime.configuration.concurrency) / 2
    }

    private var logger: Logger { runtime.logger }
    /// The runtime's store with ``WorkerConfiguration/resultLockTimeout`` for the transactions
    /// that record runs: a write stuck behind a row lock turns into a `55P03` to retry instead of
    /// stalling every write behind it (set per transaction; see ``JobStore/lockTimeout``).
    private let store: JobStore
    private var configuration: WorkerConfiguration { runtime.configuration }

    /// Hands finished runs to the writer together: the runs of one claimed unit (an item's
    /// thumbnail and preview run as one), whose successes then go into one batch transaction.
    func submit(contentsOf runs: [FinishedRun]) {
        guard !runs.isEmpty else { return }
        mailbox.lock()
        let wasEmpty = submitted.isEmpty
        if wasEmpty { oldestSubmittedAt = .now }
        submitted.append(contentsOf: runs)
        // While results gather, only the first ones and the target wake the writer.
        if wasEmpty || submitted.count >= coalesceTarget { mailbox.signal() }
        mailbox.unlock()
    }

    /// Runs until graceful shutdown (after the claim loop, which waits for every result to be
    /// written before it returns) or cancellation.
    func run() async {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await onOwnThread(named: "medianest-writer") { [self] in loop() }
            } onGracefulShutdown: { [self] in
                stop()
            }
        } onCancel: { [self] in
            stop()
        }
    }

    private func stop() {
        mailbox.lock()
        stopRequested = true
        mailbox.broadcast()
        mailbox.unlock()
    }

    private func loop() {
        while true {
            let (incoming, stopping) = takeSubmitted()
            pendingWrites.append(contentsOf: incoming.map { PendingWrite(run: $0) })
            writePendingResults()
            if stopping {
                if !pendingWrites.isEmpty {
                    logger.warning("results not written at exit; their leases expire and the jobs are rescued", metadata: ["count": "\(pendingWrites.count)"])
                }
                return
            }
        }
    }

    /// Waits for new runs, a write's retry time, or the stop.
    private func takeSubmitted() -> ([FinishedRun], Bool) {
        var deadline = ContinuousClock.now + .seconds(60)
        if let due = pendingWrites.map(\.notBefore).min() {
            deadline = min(deadline, max(lane.retryAt, due, .now + .milliseconds(10)))
        }
        mailbox.lock()
        defer { mailbox.unlock() }
        while submitted.isEmpty && !stopRequested {
            let remaining = deadline - .now
            if remaining <= .zero { break }
            _ = mailbox.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
        if !submitted.isEmpty {
            let until = oldestSubmittedAt + ResultWriter.coalesceWindow
            while !stopRequested && submitted.count + pendingWrites.count < coalesceTarget {
                let remaining = until - .now
                if remaining <= .zero { break }
                _ = mailbox.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
            }
        }
        let taken = submitted
        submitted = []
        return (taken, stopRequested)
    }

    /// Writes what is due of ``pendingWrites``.
    ///
    /// Plain successes go in one batch transaction. A batch the database refuses for any
    /// reason but the connection is split: its runs are written one by one from then on, so
    /// that one result that cannot be stored does not hold back the others. A write that hits
    /// a transient conflict (SQLSTATE class 40, `55P03` after ``WorkerConfiguration/resultLockTimeout``)
    /// is retried, as a whole transaction, after a short jittered backoff, while the writes
    /// behind it go on; the job's attempts are never touched for it. One that still fails
    /// after ``WorkerConfiguration/resultWriteRetryWindow`` is given up on its own and logged
    /// with the job id: the run leaves the heartbeat, its lease expires, and the job is
    /// rescued. Only the final outcome of each write is logged.
    private func writePendingResults() {
        guard !pendingWrites.isEmpty, ContinuousClock.now >= lane.retryAt else { return }
        writeSuccessfulResultsInOneBatch()
        var index = 0
        while index < pendingWrites.count, ContinuousClock.now >= lane.retryAt {
            let pending = pendingWrites[index]
            guard pending.notBefore <= .now else { index += 1; continue }
            do {
                try lane.runner.runBlocking { connection in
                    try write(pending, on: connection)
                }
                lane.succeeded()
                pendingWrites.remove(at: index)
                forget([pending.run])
            } catch let error as DatabaseError where error.isConnectionProblem {
                // Nothing was written; everything waits for the connection, in order.
                lane.noteUnavailable("write result", error: error, logger: logger)
                return
            } catch let error as DatabaseError where error.isTransientConflict {
                if scheduleRetry(of: index, after: error) { index += 1 }
            } catch {
                giveUp(pendingWrites.remove(at: index), error: error)
            }
        }
    }

    /// Completes the due plain successes that have not been split off, in one transaction.
    private func writeSuccessfulResultsInOneBatch() {
        let now = ContinuousClock.now
        let batch = pendingWrites.filter { pending in
            guard !pending.alone, pending.notBefore <= now, pending.run.stopReason == nil, case .success = pending.run.result else { return false }
            return true
        }
        guard batch.count > 1 else { return }
        let owned: Set<String>
        do {
            owned = try lane.runner.runBlocking { connection in
                return try store.completeBatch(batch.map { pending in
                    guard case .success(let outcome) = pending.run.result else { preconditionFailure("the batch holds successes only") }
                    return (pending.run.work.job, outcome)
                }, on: connection)
            }
            lane.succeeded()
        } catch let error as DatabaseError where error.isConnectionProblem {
            lane.noteUnavailable("write results", error: error, logger: logger)
            return
        } catch {
            // Which run the database choked on is unknown: write each one on its own.
            logger.debug("a batch of results could not be written together; writing them one by one", metadata: ["count": "\(batch.count)", "error": "\(error)"])
            let tokens = Set(batch.map(\.run.token))
            for index in pendingWrites.indices where tokens.contains(pendingWrites[index].run.token) { pendingWrites[index].alone = true }
            return
        }
        for pending in batch {
            let job = pending.run.work.job
            let jobLogger = runtime.jobLogger(for: job)
            if owned.contains(job.id) {
                runtime.metrics.completed(job.type, duration: pending.run.duration)
                jobLogger.info("job completed", metadata: ["duration_ms": "\(pending.run.durationMilliseconds)"])
            } else {
                jobLogger.warning("job result dropped: this run no longer owns the job (lease lost or cancelled)")
            }
        }
        let written = Set(batch.map(\.run.token))
        pendingWrites.removeAll { written.contains($0.run.token) }
        forget(batch.map(\.run))
    }

    /// Backs the write at `index` off after a transient conflict, or gives it up when its
    /// retry window is spent.
    /// - Returns: Whether it stays in the queue.
    private func scheduleRetry(of index: Int, after error: DatabaseError) -> Bool {
        let now = ContinuousClock.now
        var pending = pendingWrites[index]
        pending.conflicts += 1
        let firstConflict = pending.firstConflictAt ?? now
        pending.firstConflictAt = firstConflict
        pending.lastError = error
        guard now - firstConflict < configuration.resultWriteRetryWindow else {
            pendingWrites.remove(at: index)
            giveUp(pending, error: error)
            return false
        }
        let base = min(Duration.milliseconds(50) * (1 << min(pending.conflicts - 1, 5)), .seconds(2))
        pending.notBefore = now + base * Double.random(in: 0.5...1.5)
        pendingWrites[index] = pending
        runtime.jobLogger(for: pending.run.work.job).debug("result write hit a conflict; retrying it", metadata: [
            "try": "\(pending.conflicts)", "sqlstate": "\(error.sqlState ?? "")"])
        return true
    }

    /// Drops a write that cannot be done. The run leaves the in-flight set, so the heartbeat
    /// stops extending its lease; the lease expires and a rescue pass (of any worker) puts
    /// the job back to pending. Nothing is lost and nothing is charged for it here.
    private func giveUp(_ pending: PendingWrite, error: any Error) {
        runtime.jobLogger(for: pending.run.work.job).error(
            "job result could not be stored; giving up on this write: the job's lease will expire and the job will be rescued",
            metadata: ["tries": "\(pending.conflicts + 1)", "error": "\(error)"])
        forget([pending.run])
    }

    /// Removes written (or given-up) runs from the in-flight set.
    private func forget(_ runs: [FinishedRun]) {
        runtime.state.withLock { state in
            for run in runs where state.inFlight[run.work.job.id]?.token == run.token {
                state.inFlight[run.work.job.id] = nil
            }
            // A finished job frees a slot and hints that more work may be waiting.
            if state.shutdownRequestedAt == nil { state.claimWanted = true }
        }
        runtime.state.signal()
    }

    /// Writes one run's outcome in its own transaction(s) and logs it.
    /// - Throws: ``DatabaseError`` for the caller to retry (connection, transient conflict)
    ///   or give up on.
    private func write(_ pending: PendingWrite, on connection: PGConnection) throws {
        let run = pending.run
        var jobLogger = runtime.jobLogger(for: run.work.job)
        if pending.conflicts > 0 { jobLogger[metadataKey: "write_retries"] = "\(pending.conflicts)" }
        let job = run.work.job
        let metrics = runtime.metrics
        switch run.stopReason {
        case .cancelled:
            jobLogger.notice("job cancelled by an operator; stopped")
            return
        case .mediaItemDeleted:
            // Its row went with the item (ON DELETE CASCADE): there is nothing to write.
            jobLogger.notice("the job's media item was deleted; stopped")
            return
        case .leaseLost:
            // The run stopped because its lease may have passed to another worker: either the
            // heartbeat found the row taken, or this process went too long without hearing from
            // the database (paused, partitioned). Hand the job back, fenced: when nobody took it
            // it returns to pending uncharged instead of waiting out its lease and being
            // rescued as a crash; when another run owns it, nothing is written.
            let released = try store.release([job], on: connection)
            jobLogger.warning(released.isEmpty ? "job stopped: this worker lost its lease; another worker owns it now"
                                               : "job stopped: this worker could not renew its lease in time; released it back to pending")
            return
        default:
            break
        }
        switch run.result {
        case .success(let outcome):
            let stored: Bool
            do {
                stored = try store.complete(job, outcome: outcome, on: connection)
            } catch let error as DatabaseError where !error.isConnectionProblem && !error.isTransientConflict {
                // The result itself cannot be stored (for example an item update breaks a
                // constraint): retrying it would fail the same way, so it is the run's failure.
                let failure = JobError(.internalError, "The job's result could not be stored: \(error.message)", retryable: true)
                jobLogger.error("job result could not be stored; recording that as the run's failure", metadata: ["error": "\(error)"])
                if case .retrying = try store.fail(job, error: failure, on: connection) { metrics.retried(job.type) } else { metrics.failed(job.type) }
                return
            }
            if stored {
                metrics.completed(job.type, duration: run.duration)
                jobLogger.info("job completed", metadata: ["duration_ms": "\(run.durationMilliseconds)"])
            } else {
                jobLogger.warning("job result dropped: this run no longer owns the job (lease lost or cancelled)")
            }
        case .failure(let error) where run.stopReason == .shutdown || error.code == .shutdown:
            let released = try store.release([job], on: connection)
            jobLogger.notice(released.isEmpty ? "job stopped for shutdown; it was no longer ours" : "job released for shutdown; it goes back to pending without charging an attempt")
        case .failure(let error) where run.environmentFault:
            let released = try store.release([job], on: connection)
            jobLogger.notice(released.isEmpty ? "job failed while the storage root was unavailable; it was no longer ours"
                                              : "job released without charging an attempt: the storage root was unavailable",
                             metadata: ["code": "\(error.code)"])
        case .failure(let error):
            switch try store.fail(job, error: error, itemUpdate: run.salvaged, on: connection) {
            case .retrying(let runAt):
                metrics.retried(job.type)
                jobLogger.warning("job failed; will retry", metadata: ["code": "\(error.code)", "error": "\(error.message)", "run_at": "\(runAt)"])
                // No NOTIFY marks the moment run_at passes: the claim loop wakes up for it itself.
                let due = ContinuousClock.now + .seconds(max(0, runAt.timeIntervalSinceNow)) + .milliseconds(50)
                runtime.state.withLock { $0.retryWakeups.append(due) }
            case .failed:
                metrics.failed(job.type)
                jobLogger.error("job failed", metadata: ["code": "\(error.code)", "error": "\(error.message)", "retryable": "\(error.isRetryable)"])
            case .dropped:
                jobLogger.warning("job failure dropped: this run no longer owns the job")
            }
        }
    }
}

/// A finished run waiting for its result to be written, with its retry state.
struct PendingWrite {
    var run: FinishedRun
    /// Transient conflicts (class 40, `55P03`) this write has hit.
    var conflicts = 0
    var firstConflictAt: ContinuousClock.Instant?
    var lastError: DatabaseError?
    /// Not to be tried again before this.
    var notBefore: ContinuousClock.Instant = .now
    /// Split off a batch the database refused: written on its own from now on.
    var alone = false

    init(run: FinishedRun) { self.run = run }
}
