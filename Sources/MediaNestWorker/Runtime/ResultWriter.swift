import CoreMetrics
import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import ServiceLifecycle

import Synchronization

/// The result writer: writes what the runs' ``RunOutcome``s say, on a thread of its own, over
/// the worker's connection that is not the LISTEN session (the heartbeat's too).
///
/// Completions that are due together go in one batch transaction; failures, releases and
/// drops one by one (``ResultWriterLoop``). The pool only ``submit(contentsOf:)``s: the runs of
/// one claimed unit together (an item's thumbnail and preview, run as one), so that the unit's
/// completions go into one transaction, each fenced by its own lease. A written run leaves
/// the in-flight set and the writer posts ``Scheduler/Event/written(jobID:token:)``, which frees
/// its slot and stops its heartbeat.
final class ResultWriter: Service, Sendable {
    /// How long the first of a group of results may wait for company before the writer writes
    /// them (unless ``ResultMailbox/coalesceTarget`` of them wait first). Settling is much
    /// cheaper per item in big batches (one transaction for hundreds of items rather than for
    /// the few that finished since the last write), and 20 ms is nothing beside what a media job
    /// takes. With `--no-listen`, where claims and writes take turns on one backend, it is a
    /// fifth of the queue's throughput: about 6,000 → 7,200 no-op jobs/s on the development
    /// machine.
    static let coalesceWindow: Duration = .milliseconds(20)
    private let mailbox: ResultMailbox
    private let database: PGConnectionRunner
    private let store: JobStore
    private let metrics: WorkerMetrics
    private let state: RuntimeState
    private let configuration: WorkerConfiguration
    private let reclaimer: MemoryReclaimer?
    private let logger: Logger

    /// - Parameters:
    ///   - database: The writer's connection (shared with the heartbeat and maintenance).
    ///   - store: The queue, as this worker; the writer sets its lock timeout.
    ///   - state: The in-flight set it removes written runs from, and the scheduler's inbox.
    ///   - reclaimer: Told of every finished run the writer is handed and lets go of: an idle
    ///     worker gives memory back only once no outcome is held.
    init(database: PGConnectionRunner, store: JobStore, metrics: WorkerMetrics, state: RuntimeState,
         configuration: WorkerConfiguration, reclaimer: MemoryReclaimer? = nil, logger: Logger) {
        self.database = database
        var store = store
        store.lockTimeout = configuration.resultLockTimeout
        self.store = store
        self.metrics = metrics
        self.state = state
        self.configuration = configuration
        self.reclaimer = reclaimer
        self.logger = logger
        // Half the backlog the scheduler allows: it never stops claiming while results gather.
        self.mailbox = ResultMailbox(coalesceTarget: Scheduler.writeBacklogLimit(concurrency: configuration.concurrency) / 2)
    }

    /// Hands finished runs to the writer at once: the runs of one claimed unit.
    func submit(contentsOf runs: [FinishedRun]) {
        // Counted before they reach the mailbox: the pool thread that hands them over reports
        // itself idle only after this returns, so the reclaimer never sees an idle pool while
        // outcomes are on their way to the writer.
        reclaimer?.outcomesHanded(runs.count)
        mailbox.submit(contentsOf: runs)
    }

    /// Runs until graceful shutdown (after the claim loop, which waits for every result to be
    /// written before it returns) or cancellation.
    func run() async {
        await runOnOwnThread(named: "medianest-writer", stop: mailbox.stop) { [self] in
            let recorder = OutcomeRecorder(store: store, metrics: metrics, retryPolicy: configuration.retryPolicy,
                                           retryDue: { [state] in state.post(.retryDue($0)) })
            ResultWriterLoop(mailbox: mailbox, lane: DatabaseLane(database, metrics: metrics), store: store, recorder: recorder,
                             metrics: metrics, state: state, retryWindow: configuration.resultWriteRetryWindow,
                             reclaimer: reclaimer, logger: logger).run()
        }
    }
}

/// Finished runs on their way to the writer's thread.
final class ResultMailbox: Sendable {
    private struct Fields {
        var submitted: [FinishedRun] = []
        /// When `submitted` last went from empty to not empty.
        var oldestSubmittedAt: ContinuousClock.Instant = .now
        var stopRequested = false
    }
    /// Only to sleep on and wake; what it guards is in `fields`.
    private let condition = NSCondition()
    private let fields = Mutex(Fields())
    /// Results that are written at once, without waiting out the coalesce window.
    let coalesceTarget: Int

    init(coalesceTarget: Int) { self.coalesceTarget = coalesceTarget }

    /// Adds `runs` in one step: the writer takes all of them or none.
    func submit(contentsOf runs: [FinishedRun]) {
        guard !runs.isEmpty else { return }
        condition.lock()
        let wake = fields.withLock { fields -> Bool in
            let wasEmpty = fields.submitted.isEmpty
            if wasEmpty { fields.oldestSubmittedAt = .now }
            fields.submitted.append(contentsOf: runs)
            return wasEmpty || fields.submitted.count >= coalesceTarget
        }
        // While results gather, only the first ones and the target wake the writer.
        if wake { condition.signal() }
        condition.unlock()
    }

    func stop() {
        condition.lock()
        fields.withLock { $0.stopRequested = true }
        condition.broadcast()
        condition.unlock()
    }

    /// Waits for new runs (then lets them gather for ``ResultWriter/coalesceWindow``), for
    /// `deadline`, or for the stop.
    /// - Parameter alreadyPending: Writes the writer holds already (they count toward the target).
    /// - Returns: The runs submitted, and whether the writer must stop.
    func take(waitingUntil deadline: ContinuousClock.Instant, alreadyPending: Int) -> ([FinishedRun], Bool) {
        condition.lock()
        defer { condition.unlock() }
        while fields.withLock({ $0.submitted.isEmpty && !$0.stopRequested }) {
            let remaining = deadline - .now
            if remaining <= .zero { break }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
        if let oldest = fields.withLock({ $0.submitted.isEmpty ? nil : $0.oldestSubmittedAt }) {
            let until = oldest + ResultWriter.coalesceWindow
            while fields.withLock({ !$0.stopRequested && $0.submitted.count + alreadyPending < coalesceTarget }) {
                let remaining = until - .now
                if remaining <= .zero { break }
                _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
            }
        }
        return fields.withLock { fields in
            defer { fields.submitted = [] }
            return (fields.submitted, fields.stopRequested)
        }
    }
}
