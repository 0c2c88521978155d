public import Logging
public import MediaNestMetrics
import ServiceLifecycle

/// Serves `/metrics`, `/healthz` and `/readyz` beside the runtime.
public enum WorkerMetricsEndpoint {
    /// Starts the endpoint in a `ServiceGroup` of its own, or nothing when metrics are `off`.
    ///
    /// The group installs no signal handlers (the runtime handles SIGTERM/SIGINT); cancel the
    /// returned task to stop it. A port that cannot be bound (another instance on it) is logged
    /// as an error and leaves the worker running without metrics: jobs matter more than their
    /// figures, and Prometheus shows the target down.
    /// - Parameters:
    ///   - configuration: The worker's configuration (``WorkerConfiguration/metricsAddress``).
    ///   - readiness: What `/readyz` answers.
    ///   - logger: For the listen address and bind failures.
    /// - Returns: The serving task, or `nil` when metrics are off.
    public static func start(configuration: WorkerConfiguration, readiness: @escaping ReadinessCheck, logger: Logger) -> Task<Void, Never>? {
        guard let address = configuration.metricsAddress else { return nil }
        let server = MetricsHTTPServer(address: address, registry: PrometheusMetrics.bootstrap(), readiness: readiness, logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [.init(service: server)], gracefulShutdownSignals: [],
                                                                           cancellationSignals: [], logger: logger))
        return Task {
            do {
                try await group.run()
            } catch is CancellationError {
            } catch {
                guard !Task.isCancelled else { return }
                logger.error("cannot serve metrics; this worker runs without them (set --metrics-address, metrics.listen or MEDIANEST_METRICS_LISTEN to a free port, or off)",
                             metadata: ["address": "\(address)", "error": "\(error)"])
            }
        }
    }
}
