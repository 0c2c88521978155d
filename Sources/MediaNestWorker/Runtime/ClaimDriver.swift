import CoreMetrics
import Dispatch
import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import ServiceLifecycle
import Synchronization

/// The claim loop's thread: drives the ``Scheduler``. It feeds the scheduler the events other
/// threads posted (``RuntimeState/post(_:)``), carries out the actions it returns (claims,
/// queue samples, shutdown stops and releases) over its connection, hands claimed jobs to the
/// ``JobPool`` and sleeps when the scheduler says so. Confined to that thread (made there by
/// ``ClaimLoop/run()``): the scheduler, the lane and the listener are its own.
final class ClaimDriver {
    private let dependencies: ClaimLoopDependencies
    /// Claims, the drain check, queue samples and shutdown releases.
    private let lane: DatabaseLane
    /// Sleeps on the LISTEN session between claims; `nil` with `--no-listen`.
    private var listener: Listener?
    /// Every scheduling decision.
    private var scheduler: Scheduler
    private let estimator: JobMemoryEstimator
    /// The job types whose pending jobs of one media item are claimed together, as one unit.
    private let together: Set<JobType>
    /// Starts claimed units on the pool.
    private let launcher: RunLauncher

    init(_ dependencies: ClaimLoopDependencies) {
        self.dependencies = dependencies
        let configuration = dependencies.configuration
        self.lane = DatabaseLane(dependencies.database, metrics: dependencies.metrics)
        self.listener = dependencies.listens ? Listener(types: dependencies.types) : nil
        let estimator = JobMemoryEstimator(configuration: configuration)
        self.estimator = estimator
        self.together = dependencies.jointTypes
        self.launcher = RunLauncher(state: dependencies.state, pool: dependencies.pool, executor: dependencies.executor,
                                    writer: dependencies.writer, metrics: dependencies.metrics,
                                    ownedLease: configuration.ownedLease, logger: dependencies.logger)
        self.scheduler = Scheduler(settings: Scheduler.Settings(
            types: dependencies.types, concurrency: configuration.concurrency, perTypeLimits: configuration.perTypeLimits,
            pollInterval: configuration.pollInterval, listenPollInterval: configuration.listenPollInterval,
            listens: dependencies.listens, sampleInterval: dependencies.metrics.sampling ? WorkerRuntime.queueSampleInterval : nil,
            gracePeriod: configuration.gracePeriod, drain: configuration.drain, memoryCapacity: dependencies.memoryCapacity,
            minimumEstimates: Dictionary(uniqueKeysWithValues: dependencies.types.map { ($0, estimator.minimum(for: $0)) })),
            now: .now)
    }

    private var logger: Logger { dependencies.logger }
    private var store: JobStore { dependencies.store }
    private var configuration: WorkerConfiguration { dependencies.configuration }
    private var state: RuntimeState { dependencies.state }
    private var types: [JobType] { dependencies.types }
    private var metrics: WorkerMetrics { dependencies.metrics }
    private var systemd: SystemdReporter { dependencies.systemd }
    private var storageMonitor: StorageRootMonitor? { dependencies.storageMonitor }
    private func jobLogger(for job: ClaimedJob) -> Logger { JobExecutor.logger(logger, for: job) }

    /// The loop completed an iteration: health, watchdog, status.
    private func reportProgress(inFlight: [JobType: Int], draining: (ContinuousClock.Instant, Duration)?, databaseReachable: Bool) {
        dependencies.health.update {
            $0.lastProgress = .now
            $0.databaseReachable = databaseReachable
        }
        let (metrics, concurrency) = (self.metrics, configuration.concurrency)
        systemd.loopProgressed(statusLine: {
            let running = inFlight.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            let totals = metrics.finishedTotals
            let head = draining == nil ? "running" : "draining"
            return "\(head) \(inFlight.values.reduce(0, +))/\(concurrency)\(running.isEmpty ? "" : " (" + running.joined(separator: ", ") + ")"); completed \(totals.completed), failed \(totals.failed)\(databaseReachable ? "" : "; database unreachable")"
        }, draining: draining)
    }

    private func withDatabase<T>(_ what: String, _ body: (PGConnection) throws -> T) -> T? {
        lane.call(what, logger: logger, body)
    }

    /// Claims until shutdown (or, with `--drain`, until nothing is left).
    func loop() -> WorkerExit {
        logger.info("worker starting", metadata: [
            "types": "\(types.map(\.rawValue).joined(separator: ","))",
            "concurrency": "\(configuration.concurrency)",
            "memory_budget": "\(scheduler.budget.capacity.map { "\($0 >> 20) MiB" } ?? "none")",
            "lease_s": "\(configuration.lease.seconds)", "heartbeat_s": "\(configuration.heartbeatInterval.seconds)",
            "listen": "\(configuration.listen)", "database": "\(configuration.database)",
        ])
        systemd.ready()
        while true {
            let (events, wakeCount) = state.takeEvents()
            let now = ContinuousClock.now
            for event in events { scheduler.handle(event, now: now) }
            // In-flight gauges from here, not per job: every start and finish wakes the loop.
            metrics.updateInFlight(scheduler.running)
            reportProgress(inFlight: scheduler.running, draining: scheduler.shutdownAt.map { ($0, configuration.gracePeriod) },
                                   databaseReachable: !lane.isUnavailable)
            if scheduler.shutdownAt == nil, let fatal = lane.fatal {
                state.withLock { $0.fatal = $0.fatal ?? fatal }
                logger.critical("stopping: \(fatal)")
                dependencies.requestShutdown(true)
                continue
            }
            // Nothing is claimed while the storage root is gone (checked with a stat each
            // cycle); what is pending stays pending, uncharged, until it is back.
            let storageAvailable = scheduler.shutdownAt != nil || (storageMonitor?.isAvailable() ?? true)
            scheduler.tick(now: now, storageAvailable: storageAvailable)
            if let exit = runCycle(seenWakeCount: wakeCount) { return finish(exit) }
        }
    }

    /// Carries out the scheduler's actions until it says to sleep (and sleeps) or to exit.
    private func runCycle(seenWakeCount: UInt64) -> WorkerExit? {
        while true {
            switch scheduler.next() {
            case .stopRuns(let ids):
                state.stopRuns(Dictionary(ids.map { ($0, StopReason.shutdown) }, uniquingKeysWith: { first, _ in first }))
            case .release(let ids):
                releaseAbandonedRuns(ids)
            case .exit(let exit):
                return exit
            case .sampleQueue:
                if let rows = withDatabase("queue sample", QueueSampler(types: types).sample) {
                    metrics.updateQueue(types: types, rows: rows)
                }
            case .claimRunAlone:
                let sentAt = ContinuousClock.now
                let claimed = withDatabase("claim run-alone", { try store.claimRunAlone(types: types, on: $0) })
                let units = claimed.map { $0.map { [ClaimedUnit([$0])] } ?? [] }
                let decision = scheduler.claimResult(units.map(claims(of:)))
                if let alone = units?.first, !decision.start.isEmpty {
                    jobLogger(for: alone.lead.job).notice("running a job rescued after a crash alone, to find out whether it crashes the worker")
                    start([alone], claimSentAt: sentAt)
                }
            case .checkRunAloneWaiting:
                let waiting = withDatabase("check run-alone", { try store.runAloneJobWaiting(types: types, on: $0) })
                if scheduler.runAloneWaiting(waiting) {
                    logger.info("a job rescued after a crash waits to run alone; finishing in-flight jobs first")
                }
            case .claim(let slots, let limit):
                let sentAt = ContinuousClock.now
                let together = self.together
                let units = withDatabase("claim", { try store.claimUnits(slots: slots, limit: limit, together: together, on: $0) })
                let decision = scheduler.claimResult(units.map(claims(of:)))
                guard let units, !units.isEmpty else { continue }
                logger.debug("claimed jobs", metadata: ["count": "\(units.reduce(0) { $0 + $1.works.count })"])
                // A unit starts or goes back as a whole (the scheduler decides by its lead).
                let starting = Set(decision.start.map(\.jobID))
                let handBack = units.filter { !starting.contains($0.lead.job.id) }
                start(units.filter { starting.contains($0.lead.job.id) } + handBackOrKeep(handBack), claimSentAt: sentAt)
            case .checkDrained:
                scheduler.drainChecked(runnable: withDatabase("drain check", { try store.runnableJobExists(types: types, on: $0) }))
            case .sleep(let until):
                wait(until: until, seenWakeCount: seenWakeCount)
                return nil
            }
        }
    }

    /// The scheduler's view of claimed units' jobs: type, run-alone mark, memory estimate (a
    /// unit's, its largest job's, on its lead) and the lead a job came along with.
    private func claims(of units: [ClaimedUnit]) -> [Scheduler.Claim] {
        units.flatMap { unit in
            let estimate = unit.works.map { estimator.estimate(type: $0.job.type, item: $0.mediaItem) }.max() ?? 0
            return unit.works.enumerated().map { index, work in
                Scheduler.Claim(jobID: work.job.id, type: work.job.type, runAlone: work.runAlone,
                                estimate: index == 0 ? estimate : 0, ledBy: index == 0 ? nil : unit.lead.job.id)
            }
        }
    }

    /// Hands claimed jobs that do not fit the memory budget straight back (uncharged, see
    /// ``JobStore/release(_:on:)``).
    /// - Returns: The jobs to run after all: those the database could not take back.
    private func handBackOrKeep(_ handBack: [ClaimedUnit]) -> [ClaimedUnit] {
        guard !handBack.isEmpty else { return [] }
        if let released = withDatabase("hand back", { try store.release(handBack.flatMap(\.works).map(\.job), on: $0) }) {
            logger.debug("handed back jobs that do not fit the memory budget", metadata: [
                "jobs": "\(released.joined(separator: ","))", "reserved_mib": "\(scheduler.budget.reserved >> 20)",
                "budget_mib": "\((scheduler.budget.capacity ?? 0) >> 20)"])
            return []
        }
        // The database went away between the claim and the hand-back: run them rather than let
        // their leases expire, which would count them as lost.
        logger.warning("could not hand back jobs that exceed the memory budget; running them anyway", metadata: ["count": "\(handBack.count)"])
        return handBack
    }

    private func wait(until schedulerDeadline: ContinuousClock.Instant, seenWakeCount: UInt64) {
        var deadline = schedulerDeadline
        // The watchdog is pinged from here, never from a timer: wake up in time for it.
        if let ping = systemd.nextDue { deadline = min(deadline, max(ping, .now + .milliseconds(10))) }
        if listener != nil {
            listener?.wait(on: lane, state: state, logger: logger, until: deadline, seenWakeCount: seenWakeCount)
        } else {
            state.wait(until: deadline, seenWakeCount: seenWakeCount)
        }
    }

    private func finish(_ exit: WorkerExit) -> WorkerExit {
        state.withLock { $0.finished = true }
        state.signal()
        if let fatal = state.withLock({ $0.fatal }) {
            logger.info("worker stopped", metadata: ["reason": "fatal"])
            return .fatal(fatal)
        }
        // The registry row is the heartbeat's: it removes it when it stops, after this loop.
        logger.info("worker stopped", metadata: ["reason": "\(exit)"])
        return exit
    }

    // MARK: Start

    /// Registers claimed units with the scheduler (a token per job) and starts them on the pool.
    private func start(_ units: [ClaimedUnit], claimSentAt: ContinuousClock.Instant) {
        guard !units.isEmpty else { return }
        // The root may have gone between the check and the claim: hand the jobs straight back.
        let storageGone = !(storageMonitor?.isAvailable() ?? true)
        let runs = scheduler.start(claims(of: units))
        let tokens = Dictionary(runs.map { ($0.claim.jobID, $0.token) }, uniquingKeysWith: { _, last in last })
        launcher.launch(units, tokens: tokens, claimSentAt: claimSentAt, storageGone: storageGone)
    }

    /// Puts back the runs whose handlers did not return in time after a shutdown stop.
    private func releaseAbandonedRuns(_ ids: [String]) {
        let abandoned = state.jobsInFlight(ids)
        guard !abandoned.isEmpty else { return }
        for _ in 0..<20 {
            if let released = withDatabase("release on shutdown", { try store.release(abandoned, on: $0) }) {
                logger.notice("released jobs still running at shutdown", metadata: ["count": "\(released.count)"])
                return
            }
            Thread.sleep(forTimeInterval: 0.25)
            lane.retryAt = .now
        }
        logger.error("could not release in-flight jobs; they return to pending when their lease expires", metadata: ["count": "\(abandoned.count)"])
    }
}
