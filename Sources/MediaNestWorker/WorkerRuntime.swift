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
/// - ``ClaimLoop`` drives the ``Scheduler``: it claims jobs for free slots, hands them to the
///   ``JobPool`` and decides when to stop; between claims it sleeps on the LISTEN session
///   (``Listener``), which wakes it for new jobs;
/// - ``ResultWriter`` writes what handlers returned, successes in batches;
/// - ``Heartbeat`` extends in-flight leases and refreshes the worker registry row;
/// - ``RescueService`` puts back the jobs of workers whose leases expired;
/// - ``MaintenanceService`` (only with `--maintenance-interval`) runs ``Maintenance`` now and
///   then, step by step over the writer's connection;
/// - ``MemoryReclaimer`` gives free heap memory back once the worker is quiet.
///
/// WorkerRuntime+Services.swift assembles them, each given what it uses in its `init`;
/// WorkerRuntime+Startup.swift holds the start-up checks.
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
    /// Gives free heap memory back once the pool is idle and the writer holds no outcome.
    let reclaimer: MemoryReclaimer
    let metrics: WorkerMetrics
    let systemd: SystemdReporter
    /// What the jobs may hold at once (``WorkerConfiguration/memoryBudget`` resolved against the
    /// cgroup limit at start), or `nil` for no memory budget.
    let memoryCapacity: Int64?
    /// Result writes, heartbeats and maintenance; claims too with `--no-listen`.
    let database: PGConnectionRunner
    /// The LISTEN session, where the claim loop claims and sleeps: ``database`` itself with
    /// `--no-listen`.
    let claimDatabase: PGConnectionRunner

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
        let reclaimer = MemoryReclaimer(logger: logger)
        self.reclaimer = reclaimer
        self.pool = JobPool(threads: configuration.concurrency, reclaimer: reclaimer)
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
        let (first, stopNow) = state.withLock { state -> (Bool, Bool) in
            let first = state.shutdownRequestedAt == nil
            if first {
                state.shutdownRequestedAt = .now
                logger.info("shutting down: no new jobs; in-flight jobs may finish", metadata: ["grace_period_s": "\(configuration.gracePeriod.seconds)", "in_flight": "\(state.inFlight.count)"])
            }
            let stopNow = immediately && !state.stopImmediately
            if stopNow {
                state.stopImmediately = true
                logger.warning("stopping in-flight jobs now", metadata: ["in_flight": "\(state.inFlight.count)"])
            }
            return (first, stopNow)
        }
        if first {
            health.update { $0.shuttingDown = true }
            systemd.stopping()
        }
        if first || stopNow { state.post(.signal(immediately: stopNow)) }
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
        // The run's async code stays on a thread of its own, whatever else holds the process's
        // cooperative pool (see RunExecutor).
        try await RunExecutor.run(named: "medianest-run") { executor in
            try await serveServices(signals: signals, checkEnvironmentFirst: checkEnvironmentFirst,
                                    additionalServices: additionalServices, executor: executor)
        }
    }

    private func serveServices(signals: Bool, checkEnvironmentFirst: Bool, additionalServices: [any Service],
                               executor: RunExecutor) async throws -> WorkerExit {
        let own = makeServices(checkEnvironmentFirst: checkEnvironmentFirst)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = additionalServices.map {
            .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
        }
        services += own.inGroupOrder.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: signals ? [.sigterm, .sigint] : [], logger: logger))
        // The group turns the first signal into a graceful shutdown; this watcher logs each
        // signal and turns the second into an immediate stop. It holds the executor: it may
        // outlive the run by a moment after its cancellation.
        let watcher = signals ? Task(executorPreference: executor) { [self, executor] in
            withExtendedLifetime(executor) {}
            await watchSignals()
        } : nil
        defer {
            watcher?.cancel()
            pool.shutdown()
            database.close()
            if claimDatabase !== database { claimDatabase.close() }
        }
        try await group.run()
        // Every run has been written or released by now. A handler stuck in C code past the
        // hard deadline may still hold its thread: wait for the threads a moment, not forever.
        pool.shutdown()
        if await !onOwnThread(named: "medianest-pool-join", { [pool] in pool.join(until: .now + .seconds(1)) }) {
            logger.warning("a job thread had not returned at exit; exiting without it")
        }
        return own.claimLoop.outcome ?? .shutdown
    }

    private func watchSignals() async {
        var seen = 0
        for await signal in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
            seen += 1
            logger.notice("received signal \(signal == .sigterm ? "SIGTERM" : "SIGINT")")
            requestShutdown(immediately: seen > 1)
        }
    }
}
