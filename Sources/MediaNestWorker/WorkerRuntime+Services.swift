import Logging
import MediaNestCore
import MediaNestQueue
import ServiceLifecycle

/// How the runtime assembles its services: each is given, in its `init`, only what it uses
/// (a connection, the queue, the shared ``RuntimeState``, its own figures), never the runtime.
extension WorkerRuntime {
    /// The runtime's own services for one ``serve(signals:additionalServices:)``.
    struct Services {
        /// The scheduler's service, whose ``ClaimLoop/outcome`` says why the worker stopped.
        let claimLoop: ClaimLoop
        /// Every service, in the order the group starts them; it stops them in reverse.
        let inGroupOrder: [any Service]
    }

    /// Makes the services. Graceful shutdown runs in reverse order: the claim loop drains first,
    /// while the writer and the heartbeat still work for it; the heartbeat stops next to last,
    /// the memory reclaimer last. The claim loop stays last in the list: it returns on its own
    /// at the first signal, and the group takes any other service returning out of turn for a
    /// failure. Maintenance, when the worker runs it, stops working at the signal (after its
    /// current step) and returns in its turn.
    /// - Parameter checkEnvironmentFirst: The claim loop runs ``checkEnvironment()`` before it
    ///   claims (the other services wait for it).
    func makeServices(checkEnvironmentFirst: Bool) -> Services {
        let writer = ResultWriter(database: database, store: store, metrics: metrics, state: state, configuration: configuration,
                                  reclaimer: reclaimer, logger: logger)
        let requestShutdown: @Sendable (Bool) -> Void = { [self] immediately in self.requestShutdown(immediately: immediately) }
        var checkEnvironment: (@Sendable () async throws -> Bool)?
        if checkEnvironmentFirst {
            checkEnvironment = { [self] () async throws -> Bool in try await self.checkEnvironment() }
        }
        let claimLoop = ClaimLoop(ClaimLoopDependencies(
            database: claimDatabase, listens: configuration.listen, state: state, store: store, types: types, configuration: configuration,
            metrics: metrics, health: health, systemd: systemd, storageMonitor: storageMonitor, pool: pool, executor: makeExecutor(),
            jointTypes: registry.jointTypes(servedFrom: Set(types)).reduce(into: Set<JobType>()) { $0.formUnion($1) },
            writer: writer, memoryCapacity: memoryCapacity, logger: logger, requestShutdown: requestShutdown),
            checkEnvironment: checkEnvironment)
        var services: [any Service] = [reclaimer, Heartbeat(database: database, metrics: metrics, state: state, store: store,
                                                            types: types, configuration: configuration, logger: logger), writer]
        if let interval = configuration.maintenanceInterval {
            services.append(MaintenanceService(state: state, database: database, interval: interval, logger: logger))
        }
        services.append(RescueService(database: database, store: store, metrics: metrics, state: state,
                                      interval: configuration.rescueInterval, logger: logger))
        services.append(claimLoop)
        return Services(claimLoop: claimLoop, inGroupOrder: services)
    }

    /// What runs each claimed job: the handlers, the storage root, the time limits and the
    /// retry policy.
    private func makeExecutor() -> JobExecutor {
        let monitor = storageMonitor
        let metrics = self.metrics
        var timeouts: [JobType: Duration] = [:]
        for type in types { timeouts[type] = configuration.timeout(for: type) }
        return JobExecutor(registry: registry, storage: configuration.storage, retryPolicy: configuration.retryPolicy,
                           timeouts: timeouts, storageAvailable: { monitor?.isAvailable() ?? true },
                           countBytesRead: { metrics.read($0, type: $1) }, logger: logger)
    }
}
