import CoreMetrics
import Dispatch
import Foundation
import Logging
import MediaNestCore
import MediaNestDB
import MediaNestQueue
import ServiceLifecycle
import Synchronization

/// The claim loop (the scheduler): claims jobs for free slots, hands them to the ``JobPool``,
/// rescues expired leases, and decides when to stop.
///
/// Runs on a thread of its own over the worker's LISTEN session, where it also sleeps between
/// claims (see ``Listener``); with `--no-listen` over the worker's one connection, sleeping on
/// ``RuntimeState``'s condition. Graceful shutdown (the first SIGTERM/SIGINT, through the
/// ``ServiceGroup``) stops claiming and lets in-flight jobs finish for the grace period; then
/// they are stopped and released. Cancellation, or a second signal, stops them at once. It
/// returns when nothing is in flight, and the group then stops the writer and the heartbeat, in
/// that order.
final class ClaimLoop: Service, @unchecked Sendable {
    private let runtime: WorkerRuntime
    /// Claims, rescues, the drain check, queue samples and shutdown releases.
    private let lane: DatabaseLane
    /// Sleeps on the LISTEN session between claims; `nil` with `--no-listen`.
    private var listener: Listener?
    private var nextPoll: ContinuousClock.Instant = .now
    private var pollIntervalInUse: Duration = .zero
    private var storageWasAvailable = true
    private var nextRescue: ContinuousClock.Instant = .now
    private var nextSample: ContinuousClock.Instant = .now
    private var drainingForRunAlone = false
    /// The memory budget: what the runs in flight hold, and the job types held back for want of
    /// room. Only this loop's thread touches it.
    private var budget: MemoryBudget
    private let estimator: JobMemoryEstimator
    private var stoppedForShutdown = false
    private var hardDeadline: ContinuousClock.Instant?
    /// What ``WorkerRuntime/run(additionalServices:)`` returns.
    private let exit = Mutex<WorkerExit?>(nil)

    private let checkEnvironmentFirst: Bool

    /// - Parameters:
    ///   - database: The LISTEN session when `listens`, the worker's one connection otherwise.
    ///   - listens: Whether to LISTEN and sleep on `database` (`database.listen`).
    init(runtime: WorkerRuntime, database: PGConnectionRunner, listens: Bool, checkEnvironmentFirst: Bool) {
        self.runtime = runtime
        self.checkEnvironmentFirst = checkEnvironmentFirst
        self.lane = DatabaseLane(database, metrics: runtime.metrics)
        self.listener = listens ? Listener(types: runtime.types) : nil
        self.budget = MemoryBudget(capacity: runtime.memoryCapacity)
        self.estimator = JobMemoryEstimator(configuration: runtime.configuration)
    }

    private var logger: Logger { runtime.logger }
    private var store: JobStore { runtime.store }
    private var configuration: WorkerConfiguration { runtime.configuration }
    private var state: RuntimeState { runtime.state }

    /// How the loop ended, once it has.
    var outcome: WorkerExit? { exit.withLock { $0 } }

    /// Checks the environment, then claims until shutdown (or, with `--drain`, until nothing is
    /// left).
    /// - Throws: ``WorkerStartupError`` when the environment cannot work.
    func run() async throws {
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                if checkEnvironmentFirst, try await !runtime.checkEnvironment() {
                    exit.withLock { $0 = .shutdown }
                    return
                }
                runtime.markStarted()
                let result = await onOwnThread(named: "medianest-scheduler") { [self] in loop() }
                exit.withLock { $0 = result }
            } onGracefulShutdown: { [runtime] in
                runtime.requestShutdown()
            }
        } onCancel: { [runtime] in
            runtime.requestShutdown(immediately: true)
        }
    }

    private func withDatabase<T>(_ what: String, _ body: (PGConnection) throws -> T) -> T? {
        lane.call(what, logger: logger, body)
    }

    private struct Snapshot {
        var wakeCount: UInt64
        var claimWanted: Bool
        var shutdownAt: ContinuousClock.Instant?
        var immediate: Bool
        var runningHandlers: [JobType: Int]
        var runAloneActive: Bool
        var inFlight: Int
        /// The memory estimates of the runs in flight, by job id: a run holds its reservation
        /// until its result is written (see ``MemoryBudget``).
        var reservations: [String: Int64]
    }

    private func loop() -> WorkerExit {
        logger.info("worker starting", metadata: [
            "types": "\(runtime.types.map(\.rawValue).joined(separator: ","))",
            "concurrency": "\(configuration.concurrency)",
            "memory_budget": "\(budget.capacity.map { "\($0 >> 20) MiB" } ?? "none")",
            "lease_s": "\(configuration.lease.seconds)", "heartbeat_s": "\(configuration.heartbeatInterval.seconds)",
            "listen": "\(configuration.listen)", "database": "\(configuration.database)",
        ])
        runtime.systemd.ready()
        while true {
            let snapshot = state.withLock { state -> Snapshot in
                let claimWanted = state.claimWanted
                state.claimWanted = false
                return Snapshot(wakeCount: state.wakeCount, claimWanted: claimWanted, shutdownAt: state.shutdownRequestedAt,
                                immediate: state.immediate, runningHandlers: state.runningHandlers,
                                runAloneActive: state.inFlight.values.contains { $0.work.runAlone && !$0.handlerDone },
                                inFlight: state.inFlight.count,
                                reservations: state.inFlight.mapValues(\.memoryEstimate))
            }
            // In-flight gauges from here, not per job: every start and finish wakes the loop.
            runtime.metrics.updateInFlight(snapshot.runningHandlers)
            runtime.loopProgressed(inFlight: snapshot.runningHandlers, draining: snapshot.shutdownAt.map { ($0, configuration.gracePeriod) },
                                   databaseReachable: !lane.isUnavailable)

            let now = ContinuousClock.now
            if let shutdownAt = snapshot.shutdownAt {
                if !stoppedForShutdown && (snapshot.immediate || now >= shutdownAt + configuration.gracePeriod) {
                    stoppedForShutdown = true
                    // Handlers get a moment to notice the stop and return; one stuck in C code is
                    // released anyway when the moment is over.
                    hardDeadline = now + (snapshot.immediate ? .seconds(1) : .seconds(3))
                    state.withLock { state in
                        for entry in state.inFlight.values where !entry.handlerDone { entry.cancellation.stop(.shutdown) }
                    }
                }
                if let hardDeadline, now >= hardDeadline {
                    releaseAbandonedRuns()
                    return finish(.shutdown)
                }
                if snapshot.inFlight == 0 { return finish(.shutdown) }
            } else {
                if let fatal = lane.fatal {
                    state.withLock { $0.fatal = $0.fatal ?? fatal }
                    logger.critical("stopping: \(fatal)")
                    runtime.requestShutdown(immediately: true)
                    continue
                }
                if now >= nextRescue {
                    rescue()
                    nextRescue = now + configuration.rescueInterval
                }
                if now >= nextSample {
                    sampleQueue()
                    nextSample = now + WorkerRuntime.queueSampleInterval
                }
                let retryDue = state.withLock { state -> Bool in
                    let due = state.retryWakeups.contains { $0 <= now }
                    if due { state.retryWakeups.removeAll { $0 <= now } }
                    return due
                }
                // Nothing is claimed while the storage root is gone (checked with a stat each
                // cycle); what is pending stays pending, uncharged, until it is back.
                let storageAvailable = runtime.storageMonitor?.isAvailable() ?? true
                // Wake-ups that came while the root was gone were spent: claim once it is back.
                let storageCameBack = storageAvailable && !storageWasAvailable
                storageWasAvailable = storageAvailable
                let claimNow = storageAvailable && (snapshot.claimWanted || retryDue || storageCameBack || now >= nextPoll)
                let pollTick = !snapshot.claimWanted
                let pollInterval = currentPollInterval
                if now >= nextPoll {
                    nextPoll = now + jittered(pollInterval)
                } else if pollInterval < pollIntervalInUse {
                    // LISTEN just went down: do not sit out the slow poll.
                    nextPoll = min(nextPoll, now + jittered(pollInterval))
                }
                pollIntervalInUse = pollInterval
                if claimNow {
                    budget.setReservations(snapshot.reservations)
                    claim(runningHandlers: snapshot.runningHandlers, inFlight: snapshot.inFlight, runAloneActive: snapshot.runAloneActive, pollTick: pollTick)
                }
                if configuration.drain, drainFinished() { return finish(.drained) }
            }
            wait(seenWakeCount: snapshot.wakeCount)
        }
    }

    private func drainFinished() -> Bool {
        let busy = state.withLock { !$0.inFlight.isEmpty || $0.claimWanted }
        guard !busy else { return false }
        guard let runnable = withDatabase("drain check", { try store.runnableJobExists(types: runtime.types, on: $0) }) else { return false }
        return !runnable
    }

    /// The fallback poll: slow while LISTEN delivers wake-ups, fast without it.
    private var currentPollInterval: Duration {
        configuration.listen && state.withLock({ $0.listenHealthy }) ? configuration.listenPollInterval : configuration.pollInterval
    }

    private func wait(seenWakeCount: UInt64) {
        var deadline = nextPoll
        let shuttingDown = state.withLock { $0.shutdownRequestedAt != nil }
        if shuttingDown { deadline = .now + .milliseconds(100) }
        deadline = min(deadline, nextRescue)
        if runtime.metrics.sampling { deadline = min(deadline, nextSample) }
        if let due = state.withLock({ $0.retryWakeups.min() }) { deadline = min(deadline, due) }
        // While the storage root is gone, look again every second so claiming resumes soon.
        if let monitor = runtime.storageMonitor, !monitor.isAvailableCached { deadline = min(deadline, .now + .seconds(1)) }
        if configuration.drain { deadline = min(deadline, .now + .milliseconds(250)) }
        // The watchdog is pinged from here, never from a timer: wake up in time for it.
        if let ping = runtime.systemd.nextDue { deadline = min(deadline, max(ping, .now + .milliseconds(10))) }
        if listener != nil {
            listener?.wait(on: lane, runtime: runtime, until: deadline, seenWakeCount: seenWakeCount)
        } else {
            state.wait(until: deadline, seenWakeCount: seenWakeCount)
        }
    }

    private func jittered(_ interval: Duration) -> Duration {
        interval * Double.random(in: 0.8...1.2)
    }

    private func finish(_ exit: WorkerExit) -> WorkerExit {
        state.withLock { $0.finished = true }
        state.signal()
        if let fatal = state.withLock({ $0.fatal }) {
            logger.info("worker stopped", metadata: ["reason": "fatal"])
            return .fatal(fatal)
        }
        _ = withDatabase("unregister") { try store.unregister(on: $0) }
        logger.info("worker stopped", metadata: ["reason": "\(exit)"])
        return exit
    }

    // MARK: Claim

    /// How many finished runs may wait for their results to be written before the loop stops
    /// claiming: the writer's backlog. Slots free up when a handler returns, not when its result
    /// is stored, so without a bound a stalled writer (a lock it waits for, a slow disk) would
    /// let the loop claim without end; every run in the backlog is one the heartbeat must keep
    /// alive and one that runs again, alone, if the process dies.
    static func writeBacklogLimit(concurrency: Int) -> Int { max(1024, 16 * concurrency) }

    private func claim(runningHandlers: [JobType: Int], inFlight: Int, runAloneActive: Bool, pollTick: Bool) {
        guard !runAloneActive else { return }
        let running = runningHandlers.values.reduce(0, +)
        // The writer's `forget` wakes the loop (claimWanted) once it has caught up.
        guard inFlight - running < ClaimLoop.writeBacklogLimit(concurrency: configuration.concurrency) else { return }
        let types = runtime.types
        if running == 0 {
            drainingForRunAlone = false
            let sentAt = ContinuousClock.now
            if let alone = withDatabase("claim run-alone", { try store.claimRunAlone(types: types, on: $0) }) {
                if let alone {
                    runtime.jobLogger(for: alone.job).notice("running a job rescued after a crash alone, to find out whether it crashes the worker")
                    // It runs with nothing beside it, whatever its estimate.
                    start([(ClaimedUnit([alone]), estimator.estimate(type: alone.job.type, item: alone.mediaItem))], claimSentAt: sentAt)
                    return
                }
            } else {
                return
            }
        } else {
            if pollTick, let waiting = withDatabase("check run-alone", { try store.runAloneJobWaiting(types: types, on: $0) }), waiting {
                if !drainingForRunAlone {
                    logger.info("a job rescued after a crash waits to run alone; finishing in-flight jobs first")
                }
                drainingForRunAlone = true
            }
            if drainingForRunAlone { return }
        }
        var globalFree = configuration.concurrency - running
        guard globalFree > 0 else { return }
        var slots: [JobType: Int] = [:]
        for type in types {
            let limit = min(configuration.perTypeLimits[type] ?? configuration.concurrency, configuration.concurrency)
            slots[type] = max(0, min(limit - (runningHandlers[type] ?? 0), globalFree))
        }
        // A job handed back for want of memory is claimed again first, alone in its claim, once
        // its room is free.
        for type in budget.takeHoldsThatFit() where (slots[type] ?? 0) > 0 && globalFree > 0 {
            let sentAt = ContinuousClock.now
            guard let claimed = withDatabase("claim", { try store.claim(slots: [type: 1], limit: 1, on: $0) }) else { return }
            let started = admitted(claimed.map { ClaimedUnit([$0]) })
            start(started, claimSentAt: sentAt)
            globalFree -= started.count
            slots[type, default: 0] -= started.count
        }
        guard globalFree > 0 else { return }
        for type in types {
            slots[type] = budget.slots(slots[type] ?? 0, of: type, minimum: estimator.minimum(for: type))
        }
        let sentAt = ContinuousClock.now
        let together = claimedTogether
        guard let claimed = withDatabase("claim", { try store.claimUnits(slots: slots, limit: globalFree, together: together, on: $0) }) else { return }
        if !claimed.isEmpty {
            logger.debug("claimed jobs", metadata: ["count": "\(claimed.reduce(0) { $0 + $1.works.count })"])
            start(admitted(claimed), claimSentAt: sentAt)
        }
    }

    /// The job types whose pending jobs of one media item are claimed together and run as one
    /// execution by a ``JointJobHandler`` (an item's thumbnail and preview, from one decode).
    private var claimedTogether: Set<JobType> {
        runtime.registry.jointTypes(servedFrom: Set(runtime.types)).reduce(into: Set<JobType>()) { $0.formUnion($1) }
    }

    /// Reserves memory for the claimed units that fit the budget, in claim order, and hands the
    /// others straight back (uncharged, see ``JobStore/release(_:on:)``), holding their type back
    /// until there is room (see ``MemoryBudget``). A unit of several jobs runs as one execution:
    /// its estimate is its largest job's, reserved under its lead.
    /// - Returns: The units to start, with their estimates.
    private func admitted(_ claimed: [ClaimedUnit]) -> [(unit: ClaimedUnit, estimate: Int64)] {
        var admitted: [(unit: ClaimedUnit, estimate: Int64)] = []
        var handBack: [ClaimedUnit] = []
        func estimate(_ unit: ClaimedUnit) -> Int64 {
            unit.works.map { estimator.estimate(type: $0.job.type, item: $0.mediaItem) }.max() ?? 0
        }
        for unit in claimed {
            let bytes = estimate(unit)
            if budget.admits(bytes) {
                budget.reserve(unit.lead.job.id, bytes: bytes)
                admitted.append((unit, bytes))
            } else {
                budget.hold(unit.lead.job.type, bytes: bytes)
                handBack.append(unit)
            }
        }
        guard !handBack.isEmpty else { return admitted }
        if let released = withDatabase("hand back", { try store.release(handBack.flatMap(\.works).map(\.job), on: $0) }) {
            logger.debug("handed back jobs that do not fit the memory budget", metadata: [
                "jobs": "\(released.joined(separator: ","))", "reserved_mib": "\(budget.reserved >> 20)",
                "budget_mib": "\((budget.capacity ?? 0) >> 20)"])
            return admitted
        }
        // The database went away between the claim and the hand-back: run them rather than let
        // their leases expire, which would count them as lost.
        logger.warning("could not hand back jobs that exceed the memory budget; running them anyway", metadata: ["count": "\(handBack.count)"])
        for unit in handBack {
            let bytes = estimate(unit)
            budget.reserve(unit.lead.job.id, bytes: bytes)
            admitted.append((unit, bytes))
        }
        return admitted
    }

    /// Registers claimed runs as in flight (one lock for the batch) and hands them to the pool
    /// (one submission, one wake-up): one body per claimed unit, so the jobs of an item claimed
    /// together run as one execution on one thread.
    /// - Parameter claimSentAt: When the claim was sent: each run owns its lease for
    ///   ``WorkerConfiguration/ownedLease`` from then until a heartbeat extends it.
    private func start(_ units: [(unit: ClaimedUnit, estimate: Int64)], claimSentAt: ContinuousClock.Instant) {
        guard !units.isEmpty else { return }
        // The root may have gone between the check and the claim: hand the jobs straight back.
        let storageGone = !(runtime.storageMonitor?.isAvailable() ?? true)
        let runsByUnit = state.withLock { state in
            units.map { unit, estimate in
                unit.works.enumerated().map { index, work -> InFlightRun in
                    state.nextToken += 1
                    if let previous = state.inFlight[work.job.id] {
                        // Our own lease on this job expired and it was rescued back to us: the old
                        // run must not write anything, and the new one takes its place.
                        previous.cancellation.stop(.leaseLost)
                        if !previous.handlerDone && previous.holdsSlot { state.runningHandlers[previous.work.job.type, default: 1] -= 1 }
                    }
                    // The clock starts when a pool thread picks the job up (see JobPool).
                    let cancellation = JobCancellation(timeout: nil)
                    cancellation.extendLease(until: claimSentAt + configuration.ownedLease)
                    // The lead takes the unit's slot and holds its memory estimate; the jobs that
                    // came along with it run in its execution.
                    let run = InFlightRun(work: work, token: state.nextToken, cancellation: cancellation,
                                          progress: JobProgress(), salvage: JobSalvage(), memoryEstimate: index == 0 ? estimate : 0,
                                          holdsSlot: index == 0)
                    state.inFlight[work.job.id] = run
                    if run.holdsSlot { state.runningHandlers[work.job.type, default: 0] += 1 }
                    return run
                }
            }
        }
        var bodies: [@Sendable () -> Void] = []
        bodies.reserveCapacity(runsByUnit.count)
        for runs in runsByUnit {
            var runnable: [(run: InFlightRun, item: MediaItemRecord)] = []
            for run in runs {
                let work = run.work
                runtime.metrics.claimed(work.job.type)
                if storageGone {
                    runtime.finishRun(jobID: work.job.id, token: run.token,
                                      result: .failure(JobError(.ioError, "The storage root is unavailable.")), environmentFault: true)
                } else if let item = work.mediaItem {
                    runnable.append((run, item))
                } else {
                    runtime.finishRun(jobID: work.job.id, token: run.token, result: .failure(JobError(.mediaItemMissing, "The media item \(work.job.mediaItemID) of this job no longer exists.")))
                }
            }
            guard !runnable.isEmpty else { continue }
            if runnable.count > 1, let joint = runtime.registry.jointHandler(for: Set(runnable.map(\.run.work.job.type))) {
                bodies.append(unitBody(runnable, handler: JobUnitHandler.together(joint)))
                continue
            }
            for entry in runnable {
                guard let handler = runtime.registry.handler(for: entry.run.work.job.type) else {
                    runtime.finishRun(jobID: entry.run.work.job.id, token: entry.run.token,
                                      result: .failure(JobError(.unknownJobType, "This worker has no handler for job type \(entry.run.work.job.type).")))
                    continue
                }
                bodies.append(unitBody([entry], handler: .alone(handler)))
            }
        }
        runtime.pool.submit(contentsOf: bodies)
    }

    /// What runs a claimed unit: a job's own handler, or the joint handler of an item's jobs.
    private enum JobUnitHandler: Sendable {
        case alone(any JobHandler)
        case together(any JointJobHandler)
    }

    /// The code a pool thread runs for one claimed unit: it starts each job's clock, runs the
    /// jobs that have not been stopped meanwhile in one call of the handler, and hands all their
    /// results to ``WorkerRuntime/finishRuns(_:)`` at once.
    private func unitBody(_ runs: [(run: InFlightRun, item: MediaItemRecord)], handler: JobUnitHandler) -> @Sendable () -> Void {
        let runtime = self.runtime
        let storage = configuration.storage ?? StorageLayout(root: "/nonexistent")
        let members = runs.map { run, item in
            (run: run, timeout: configuration.timeout(for: run.work.job.type),
             context: JobContext(job: run.work.job, mediaItem: item, storage: storage, progress: run.progress,
                                 cancellation: run.cancellation, logger: runtime.jobLogger(for: run.work.job), salvage: run.salvage))
        }
        return {
            for member in members {
                member.context.cancellation.startClock(timeout: member.timeout)
            }
            runtime.state.withLock { state in
                for member in members {
                    if let run = state.inFlight[member.run.work.job.id], run.token == member.run.token { run.startedAt = .now }
                }
            }
            var results = [Result<JobOutcome, JobError>?](repeating: nil, count: members.count)
            var started: [Int] = []
            for (index, member) in members.enumerated() {
                if let reason = member.context.cancellation.stopReason {
                    // Stopped while it waited for a thread (shutdown, lease lost): do not start it.
                    results[index] = .failure(reason.error)
                } else {
                    started.append(index)
                }
            }
            if !started.isEmpty {
                for index in started {
                    members[index].context.logger.info("job started", metadata: started.count > 1 ? [
                        "together_with": "\(started.filter { $0 != index }.map { members[$0].run.work.job.id }.joined(separator: ","))"] : [:])
                }
                let outcomes: [Result<JobOutcome, JobError>]
                switch handler {
                case .alone(let handler):
                    let context = members[started[0]].context
                    outcomes = [Result { () throws(JobError) in try handler.run(context) }]
                case .together(let handler):
                    outcomes = handler.run(together: started.map { members[$0].context })
                }
                for (position, index) in started.enumerated() {
                    results[index] = position < outcomes.count ? outcomes[position]
                        : .failure(JobError(.internalError, "The handler returned no result for this job.", retryable: true))
                    runtime.metrics.read(members[index].context.bytesRead.total, type: members[index].run.work.job.type)
                }
            }
            runtime.finishRuns(members.enumerated().map { index, member in
                let result = results[index] ?? .failure(JobError(.internalError, "The job was not run.", retryable: true))
                // A read that failed because the whole volume went away is not the job's
                // fault: judge that now, while the failure is fresh.
                var environmentFault = false
                if case .failure(let error) = result, [.ioError, .fileMissing].contains(error.code), let monitor = runtime.storageMonitor {
                    environmentFault = !monitor.isAvailable()
                }
                return WorkerRuntime.RunResult(jobID: member.run.work.job.id, token: member.run.token, result: result,
                                               environmentFault: environmentFault)
            })
        }
    }

    /// Puts back every run whose handler did not return in time after a shutdown stop.
    private func releaseAbandonedRuns() {
        let abandoned = state.withLock { state in state.inFlight.values.filter { !$0.handlerDone }.map(\.work.job) }
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

    // MARK: Rescue

    private func rescue() {
        let running = state.withLock { Array($0.inFlight.keys) }
        guard let report = withDatabase("rescue", { try store.rescueExpired(excluding: running, on: $0) }) else { return }
        if !report.requeued.isEmpty {
            runtime.metrics.leaseRescues.increment(by: Int64(report.requeued.count))
            logger.warning("rescued jobs whose worker stopped heartbeating; they will run alone", metadata: ["jobs": "\(report.requeued.joined(separator: ","))"])
            state.withLock { $0.claimWanted = true }
        }
        if !report.poisoned.isEmpty {
            runtime.metrics.poisonJobs.increment(by: Int64(report.poisoned.count))
            logger.error("jobs failed as poison: they crashed the worker while running alone", metadata: ["jobs": "\(report.poisoned.joined(separator: ","))"])
        }
    }

    // MARK: Queue figures

    /// One grouped query for the queue gauges, every ``WorkerRuntime/queueSampleInterval``,
    /// and only while a metrics backend is bootstrapped: a worker nobody scrapes pays nothing.
    private func sampleQueue() {
        guard runtime.metrics.sampling else { return }
        let types = runtime.types.map(\.rawValue)
        guard let rows = withDatabase("queue sample", { connection -> [(String, Int64, Double)] in
            try connection.query("""
                SELECT job_type, count(*)::int8 AS depth,
                       coalesce(extract(epoch FROM now() - min(run_at)), 0)::float8 AS oldest
                  FROM processing_jobs
                 WHERE status = 'pending' AND run_at <= now() AND job_type = ANY($1::text[])
                 GROUP BY job_type
                """, [types]).map { row in
                (try row.decode("job_type", as: String.self), try row.decode("depth", as: Int64.self), try row.decode("oldest", as: Double.self))
            }
        }) else { return }
        runtime.metrics.updateQueue(types: runtime.types, rows: rows)
    }
}
