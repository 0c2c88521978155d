import CoreMetrics
import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import ServiceLifecycle

/// The result writer's thread: takes finished runs from the ``ResultMailbox`` and writes their
/// ``RunOutcome``s, with the retry state of each write. Confined to the writer's thread (made
/// there by ``ResultWriter/run()``), so it needs no lock of its own.
final class ResultWriterLoop {
    private let mailbox: ResultMailbox
    private let lane: DatabaseLane
    /// The queue with ``WorkerConfiguration/resultLockTimeout`` for the transactions that
    /// record runs: a write stuck behind a row lock turns into a `55P03` to retry instead of
    /// stalling every write behind it (set per transaction; see ``JobStore/lockTimeout``).
    private let store: JobStore
    /// Writes the outcomes that do not go in a batch of completions.
    private let recorder: OutcomeRecorder
    private let metrics: WorkerMetrics
    /// The in-flight set that written runs leave (``RuntimeState/runsWritten(_:)``).
    private let state: RuntimeState
    /// ``WorkerConfiguration/resultWriteRetryWindow``.
    private let retryWindow: Duration
    /// Told how many finished runs the writer let go of, once it holds them no longer.
    private let reclaimer: MemoryReclaimer?
    private let logger: Logger
    private var pendingWrites: [PendingWrite] = []

    init(mailbox: ResultMailbox, lane: DatabaseLane, store: JobStore, recorder: OutcomeRecorder, metrics: WorkerMetrics,
         state: RuntimeState, retryWindow: Duration, reclaimer: MemoryReclaimer?, logger: Logger) {
        self.mailbox = mailbox
        self.lane = lane
        self.store = store
        self.recorder = recorder
        self.metrics = metrics
        self.state = state
        self.retryWindow = retryWindow
        self.reclaimer = reclaimer
        self.logger = logger
    }

    private func jobLogger(for job: ClaimedJob) -> Logger { JobExecutor.logger(logger, for: job) }

    /// Writes until the mailbox is stopped.
    func run() {
        while true {
            let held = pendingWrites.count
            let (taken, stopping) = takeAndWrite()
            // What was written or given up is gone, with the memory its outcome kept alive:
            // an idle worker gives memory back only once the writer holds no outcome.
            reclaimer?.outcomesLetGo(held + taken - pendingWrites.count)
            if stopping {
                if !pendingWrites.isEmpty {
                    logger.warning("results not written at exit; their leases expire and the jobs are rescued", metadata: ["count": "\(pendingWrites.count)"])
                }
                return
            }
        }
    }

    /// Waits for finished runs (or for the next retry to come due), then writes what is due.
    /// The runs taken live in its locals only, which are gone once it returns.
    /// - Returns: How many runs it took from the mailbox, and whether the writer must stop.
    private func takeAndWrite() -> (taken: Int, stopping: Bool) {
        var deadline = ContinuousClock.now + .seconds(60)
        if let due = pendingWrites.map(\.notBefore).min() {
            deadline = min(deadline, max(lane.retryAt, due, .now + .milliseconds(10)))
        }
        let (incoming, stopping) = mailbox.take(waitingUntil: deadline, alreadyPending: pendingWrites.count)
        pendingWrites.append(contentsOf: incoming.map { PendingWrite(run: $0) })
        writePendingResults()
        return (incoming.count, stopping)
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
            guard !pending.alone, pending.notBefore <= now, case .complete = pending.run.outcome else { return false }
            return true
        }
        guard batch.count > 1 else { return }
        let owned: Set<String>
        do {
            owned = try lane.runner.runBlocking { connection in
                return try store.completeBatch(batch.map { pending in
                    guard case .complete(let outcome) = pending.run.outcome else { preconditionFailure("the batch holds completions only") }
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
            let jobLogger = jobLogger(for: job)
            if owned.contains(job.id) {
                metrics.completed(job.type, duration: pending.run.duration)
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
        guard now - firstConflict < retryWindow else {
            pendingWrites.remove(at: index)
            giveUp(pending, error: error)
            return false
        }
        let base = min(Duration.milliseconds(50) * (1 << min(pending.conflicts - 1, 5)), .seconds(2))
        pending.notBefore = now + base * Double.random(in: 0.5...1.5)
        pendingWrites[index] = pending
        jobLogger(for: pending.run.work.job).debug("result write hit a conflict; retrying it", metadata: [
            "try": "\(pending.conflicts)", "sqlstate": "\(error.sqlState ?? "")"])
        return true
    }

    /// Drops a write that cannot be done. The run leaves the in-flight set, so the heartbeat
    /// stops extending its lease; the lease expires and a rescue pass (of any worker) puts
    /// the job back to pending. Nothing is lost and nothing is charged for it here.
    private func giveUp(_ pending: PendingWrite, error: any Error) {
        jobLogger(for: pending.run.work.job).error(
            "job result could not be stored; giving up on this write: the job's lease will expire and the job will be rescued",
            metadata: ["tries": "\(pending.conflicts + 1)", "error": "\(error)"])
        forget([pending.run])
    }

    /// Written (or given-up) runs leave the in-flight set; the scheduler hears of each.
    private func forget(_ runs: [FinishedRun]) {
        state.runsWritten(runs.map { (jobID: $0.work.job.id, token: $0.token) })
    }

    /// Writes one run's outcome in its own transaction(s) and logs it.
    /// - Throws: ``DatabaseError`` for the caller to retry (connection, transient conflict)
    ///   or give up on.
    private func write(_ pending: PendingWrite, on connection: PGConnection) throws {
        var jobLogger = jobLogger(for: pending.run.work.job)
        if pending.conflicts > 0 { jobLogger[metadataKey: "write_retries"] = "\(pending.conflicts)" }
        try recorder.write(pending.run.outcome, of: pending.run, logger: jobLogger, on: connection)
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
