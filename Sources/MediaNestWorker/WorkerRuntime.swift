import Dispatch
import Foundation
public import Logging
import MediaNestCore
import MediaNestDB
public import MediaNestQueue
import MediaNestSystemd
public import ServiceLifecycle
import UnixSignals
import Synchronization

/// How a worker run ended.
public enum WorkerExit: Sendable, Hashable {
    /// `--drain`: nothing was runnable and nothing was in flight.
    case drained
    /// A signal (or ``WorkerRuntime/requestShutdown(immediately:)``) stopped the worker.
    case shutdown
    /// A fault no retry can fix appeared while running (the schema was reverted or dropped, the
    /// role lost its privileges): the worker released what it could and stopped. The message
    /// says what to do; exit with ``WorkerStartupError/configurationExitCode``.
    case fatal(String)
}

/// The worker daemon: claims jobs, runs them on a fixed pool of threads, keeps their leases
/// alive, writes their results, rescues crashed workers' jobs and shuts down gracefully.
///
/// It is a handful of services run by a swift-service-lifecycle ``ServiceGroup``, one file each
/// under `Runtime/`, each owning its state and its OS thread (blocking libpq calls never run on
/// Swift's cooperative pool):
/// - ``ClaimLoop`` (the scheduler) claims jobs for free slots, hands them to the ``JobPool``,
///   rescues expired leases and decides when to stop; between claims it sleeps on the LISTEN
///   session (``Listener``), which wakes it for new jobs;
/// - ``ResultWriter`` writes what handlers returned, successes in batches;
/// - ``Heartbeat`` extends in-flight leases and refreshes the worker registry row;
/// - ``MaintenanceService`` (only with `--maintenance-interval`) runs ``Maintenance`` now and
///   then, step by step over the writer's connection.
///
/// Connections, at most two: the LISTEN session, where the claim loop claims and sleeps, and one
/// for result writes, heartbeats and maintenance (a ``PGConnectionRunner`` whose serial queue
/// orders their calls). With `--no-listen`, one for everything. Claims and writes on two backends run side
/// by side; on one they take turns, which the queue bench measures (README, "Sizing database
/// connections").
///
/// Start it from a command with ``serve(signals:additionalServices:)`` (what ``WorkerMain`` does).
public final class WorkerRuntime: Sendable {
    /// The configuration the runtime was made with.
    public let configuration: WorkerConfiguration
    /// This worker's id (`host:pid:instance`).
    public let identity: WorkerIdentity
    /// What `/readyz` reads: database reachable, last loop progress, shutting down.
    public let health: WorkerHealth
    let registry: HandlerRegistry
    let store: JobStore
    private let servedTypes: [JobType]
    let logger: Logger
    let state: RuntimeState
    /// Watches the storage root (when one is configured) so that an unmounted volume stops
    /// claiming instead of failing every job.
    let storageMonitor: StorageRootMonitor?
    let pool: JobPool
    let metrics: WorkerMetrics
    let systemd: SystemdReporter
    /// What the jobs may hold at once (``WorkerConfiguration/memoryBudget`` resolved against the
    /// cgroup limit at start), or `nil` for no memory budget.
    let memoryCapacity: Int64?
    /// Result writes, heartbeats and maintenance; claims too with `--no-listen`.
    private let database: PGConnectionRunner
    /// The LISTEN session, where the claim loop claims and sleeps: ``database`` itself with
    /// `--no-listen`.
    private let claimDatabase: PGConnectionRunner
    private let writer = Mutex<ResultWriter?>(nil)

    /// `application_name` of the connection for result writes and heartbeats, as seen in
    /// `pg_stat_activity`.
    public static let applicationName = "medianest-worker"
    /// `application_name` of the LISTEN session, where the claim loop claims.
    public static let listenerApplicationName = "medianest-worker listener"
    /// How often the queue gauges are sampled (while a metrics backend is bootstrapped).
    static let queueSampleInterval: Duration = .seconds(15)

    /// Creates a runtime.
    /// - Parameters:
    ///   - configuration: Options; validate them first.
    ///   - registry: The handlers; the worker serves their types (narrowed by `configuration.types`).
    ///   - logger: The base logger; jobs add `job_id`, `media_id`, `job_type` and `attempt`.
    ///   - health: Where the runtime reports its health (for `/readyz`).
    ///   - notifier: systemd's notification socket (a no-op without `NOTIFY_SOCKET`).
    /// - Throws: ``WorkerConfigurationError`` when no type would be served.
    public init(configuration: WorkerConfiguration, registry: HandlerRegistry, logger: Logger,
                health: WorkerHealth = WorkerHealth(), notifier: SystemdNotifier = SystemdNotifier()) throws(WorkerConfigurationError) {
        try configuration.validate()
        let available = registry.types
        let served: [JobType]
        if let wanted = configuration.types {
            let missing = wanted.filter { registry.handler(for: $0) == nil }
            guard missing.isEmpty else {
                throw WorkerConfigurationError("No handler for job type \(missing.map(\.rawValue).joined(separator: ", ")) in this build; available: \(available.isEmpty ? "none" : available.map(\.rawValue).joined(separator: ", ")).")
            }
            served = Array(Set(wanted)).sorted()
        } else {
            served = available
        }
        guard !served.isEmpty else {
            throw WorkerConfigurationError(configuration.storage == nil
                ? "No storage root is configured, so no media job can run: pass --storage-root or set MEDIANEST_STORAGE_ROOT to the directory that media_items.storage_path is relative to."
                : "This worker has no job handlers to run, so it would never claim a job.")
        }
        self.configuration = configuration
        self.identity = WorkerIdentity(instance: configuration.instance)
        self.registry = registry
        self.servedTypes = served
        self.store = JobStore(workerID: identity.id, lease: configuration.lease, retryPolicy: configuration.retryPolicy,
                              maxLostAlone: configuration.maxLostAlone)
        var logger = logger
        logger[metadataKey: "worker_id"] = "\(identity.id)"
        self.logger = logger
        self.health = health
        self.state = RuntimeState()
        self.storageMonitor = configuration.storage.map { StorageRootMonitor(root: $0.root, logger: logger) }
        self.pool = JobPool(threads: configuration.concurrency, reclaimer: MemoryReclaimer(logger: logger))
        self.metrics = WorkerMetrics(types: served)
        self.systemd = SystemdReporter(notifier: notifier, logger: logger)
        self.memoryCapacity = configuration.memoryBudget.capacity()
        self.database = PGConnectionRunner(configuration: configuration.database.with("application_name", WorkerRuntime.applicationName),
                                           label: "worker", logger: logger)
        self.claimDatabase = configuration.listen
            ? PGConnectionRunner(configuration: configuration.database.with("application_name", WorkerRuntime.listenerApplicationName),
                                 label: "listener", logger: logger)
            : database
    }

    /// The job types this worker claims.
    public var types: [JobType] { servedTypes }

    // MARK: Control

    /// Stops claiming and lets in-flight jobs finish for the grace period; with `immediately`,
    /// stops them now. Either way unfinished jobs go back to pending without charging an attempt.
    /// Calling it again without `immediately` changes nothing.
    public func requestShutdown(immediately: Bool = false) {
        let first = state.withLock { state -> Bool in
            var first = false
            if state.shutdownRequestedAt == nil {
                first = true
                state.shutdownRequestedAt = .now
                logger.info("shutting down: no new jobs; in-flight jobs may finish", metadata: ["grace_period_s": "\(configuration.gracePeriod.seconds)", "in_flight": "\(state.inFlight.count)"])
            }
            if immediately && !state.immediate {
                state.immediate = true
                logger.warning("stopping in-flight jobs now", metadata: ["in_flight": "\(state.inFlight.count)"])
            }
            return first
        }
        if first {
            health.update { $0.shuttingDown = true }
            systemd.stopping()
        }
        state.signal()
    }

    /// A job's logger: the base logger with `job_id`, `media_id`, `job_type` and `attempt`.
    func jobLogger(for job: ClaimedJob) -> Logger {
        var jobLogger = logger
        jobLogger[metadataKey: "job_id"] = "\(job.id)"
        jobLogger[metadataKey: "media_id"] = "\(job.mediaItemID)"
        jobLogger[metadataKey: "job_type"] = "\(job.type)"
        jobLogger[metadataKey: "attempt"] = "\(job.attempt)"
        return jobLogger
    }

    func requestClaim() {
        state.withLock { $0.claimWanted = true }
        state.signal()
    }

    func markStarted() {
        state.withLock { $0.started = true }
        health.update { $0.databaseReachable = true }
        state.signal()
    }

    /// The claim loop completed an iteration: health, watchdog, status.
    func loopProgressed(inFlight: [JobType: Int], draining: (ContinuousClock.Instant, Duration)?, databaseReachable: Bool) {
        health.update {
            $0.lastProgress = .now
            $0.databaseReachable = databaseReachable
        }
        systemd.loopProgressed(statusLine: {
            let running = inFlight.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            let totals = metrics.finishedTotals
            let head = draining == nil ? "running" : "draining"
            return "\(head) \(inFlight.values.reduce(0, +))/\(configuration.concurrency)\(running.isEmpty ? "" : " (" + running.joined(separator: ", ") + ")"); completed \(totals.completed), failed \(totals.failed)\(databaseReachable ? "" : "; database unreachable")"
        }, draining: draining)
    }

    // MARK: Start-up checks

    /// Checks, before anything runs, what no retry would fix: the storage root (absolute, present,
    /// a directory) and the database (it exists, the role and password work, the schema is
    /// migrated). While the server merely cannot be reached (down, starting up) it waits, with a
    /// warning per try, until it can or a shutdown is requested.
    /// - Returns: `false` when a shutdown was requested while waiting.
    /// - Throws: ``WorkerStartupError`` (exit code 78) naming the fault and what to do.
    public func checkEnvironment() async throws(WorkerStartupError) -> Bool {
        if let storage = configuration.storage {
            try StorageRootMonitor.validateAtStart(storage.root)
            try StorageRootMonitor.validateDerivedRootAtStart(storage.derivedRoot)
        }
        var backoff: Duration = .milliseconds(250)
        while true {
            let database = configuration.database
            let logger = self.logger
            // libpq blocks; keep it off the cooperative pool.
            let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Result<DatabasePreflight.Outcome, WorkerStartupError>, Never>) in
                Thread.detachNewThread {
                    continuation.resume(returning: Result { () throws(WorkerStartupError) in try DatabasePreflight.check(database, logger: logger) })
                }
            }
            switch outcome {
            case .success(.ready):
                return true
            case .success(.unreachable(let error)):
                logger.warning("database unreachable at start; waiting for it", metadata: ["error": "\(error)", "retry_in_ms": "\(Int(backoff.seconds * 1000))"])
            case .failure(let error):
                throw error
            }
            if state.withLock({ $0.shutdownRequestedAt != nil }) { return false }
            try? await Task.sleep(for: backoff)
            if state.withLock({ $0.shutdownRequestedAt != nil }) { return false }
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    // MARK: Run

    /// Runs the services until shutdown (or, with `drain`, until nothing is left), without the
    /// start-up checks and without signal handling: for embedding the runtime (tests).
    ///
    /// - Returns: Why it stopped.
    public func run() async -> WorkerExit {
        do {
            return try await serve(signals: false, checkEnvironmentFirst: false)
        } catch {
            return .fatal("\(error)")
        }
    }

    /// Checks the environment, then runs the services in a ``ServiceGroup`` until shutdown.
    ///
    /// With `signals`, the first SIGTERM or SIGINT starts a graceful shutdown (the group's
    /// graceful shutdown: stop claiming, let in-flight jobs finish for the grace period, release
    /// the rest uncharged) and a second one stops the jobs at once. Cancelling the calling task
    /// stops at once too.
    /// - Parameters:
    ///   - signals: Handle SIGTERM and SIGINT.
    ///   - additionalServices: More services for the group (such as the metrics endpoint); they
    ///     start first and stop last, after the worker has drained.
    /// - Returns: Why it stopped.
    /// - Throws: ``WorkerStartupError`` when the environment cannot work.
    public func serve(signals: Bool = true, additionalServices: [any Service] = []) async throws -> WorkerExit {
        try await serve(signals: signals, checkEnvironmentFirst: true, additionalServices: additionalServices)
    }

    private func serve(signals: Bool, checkEnvironmentFirst: Bool, additionalServices: [any Service] = []) async throws -> WorkerExit {
        let claimLoop = ClaimLoop(runtime: self, database: claimDatabase, listens: configuration.listen, checkEnvironmentFirst: checkEnvironmentFirst)
        let writer = ResultWriter(runtime: self, database: database)
        self.writer.withLock { $0 = writer }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = additionalServices.map {
            .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
        }
        // Graceful shutdown runs in reverse: the claim loop drains first, while the writer and the
        // heartbeat still work for it; the heartbeat stops last. The claim loop stays last in
        // the list: it returns on its own at the first signal, and the group takes any other
        // service returning out of turn for a failure. Maintenance, when the worker runs it,
        // stops working at the signal (after its current step) and returns in its turn.
        var own: [any Service] = [Heartbeat(runtime: self, database: database), writer]
        if let interval = configuration.maintenanceInterval {
            own.append(MaintenanceService(runtime: self, database: database, interval: interval))
        }
        own.append(claimLoop)
        services += own.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: signals ? [.sigterm, .sigint] : [], logger: logger))
        // The group turns the first signal into a graceful shutdown; this watcher logs each
        // signal and turns the second into an immediate stop.
        let watcher = signals ? Task { await watchSignals() } : nil
        defer {
            watcher?.cancel()
            // The writer holds the runtime: without this the two keep each other alive after
            // the run (LeakSanitizer found the cycle; one runtime per run, every run).
            self.writer.withLock { $0 = nil }
            pool.shutdown()
            database.close()
            if claimDatabase !== database { claimDatabase.close() }
        }
        try await group.run()
        return claimLoop.outcome ?? .shutdown
    }

    private func watchSignals() async {
        var seen = 0
        for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
            seen += 1
            logger.notice("received signal \(signal == .sigterm ? "SIGTERM" : "SIGINT")")
            requestShutdown(immediately: seen > 1)
        }
    }

    /// Called on a pool thread when a handler returned.
    func finishRun(jobID: String, token: UInt64, result: Result<JobOutcome, JobError>, environmentFault: Bool = false) {
        finishRuns([RunResult(jobID: jobID, token: token, result: result, environmentFault: environmentFault)])
    }

    /// What one run of a claimed unit came to (see ``finishRuns(_:)``).
    struct RunResult: Sendable {
        var jobID: String
        var token: UInt64
        var result: Result<JobOutcome, JobError>
        var environmentFault = false
    }

    /// Called on a pool thread when the handler of a claimed unit (one job, or an item's jobs run
    /// together) returned: the unit's results go to the writer in one submission, so that its
    /// successes are completed in one transaction.
    func finishRuns(_ results: [RunResult]) {
        let finished = state.withLock { state -> [FinishedRun] in
            results.compactMap { result -> FinishedRun? in
                guard let entry = state.inFlight[result.jobID], entry.token == result.token, !entry.handlerDone else { return nil }
                entry.handlerDone = true
                if entry.holdsSlot { state.runningHandlers[entry.work.job.type, default: 1] -= 1 }
                // A finished handler freed a slot: claim for it while its result is written.
                if state.shutdownRequestedAt == nil { state.claimWanted = true }
                return FinishedRun(work: entry.work, token: result.token, result: result.result,
                                   stopReason: entry.cancellation.stopReason, startedAt: entry.startedAt,
                                   environmentFault: result.environmentFault, salvaged: entry.salvage.current)
            }
        }
        guard !finished.isEmpty else { return }
        writer.withLock { $0 }?.submit(contentsOf: finished)
        state.signal()
    }
}
