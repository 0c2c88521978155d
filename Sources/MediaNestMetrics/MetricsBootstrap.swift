import Metrics
public import Prometheus

/// Makes swift-metrics report to Prometheus, once per process.
///
/// `MetricsSystem.bootstrap` may run only once in a process, and counters made before it go
/// nowhere; so the first caller bootstraps and every caller (the HTTP endpoint, tests) gets the
/// same registry to render.
public enum PrometheusMetrics {
    private static let shared: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Job durations run from milliseconds (metadata of a photo) to hours (a long transcode).
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
            .seconds(300), .seconds(900), .seconds(3600),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// Bootstraps `MetricsSystem` with a `PrometheusMetricsFactory` on the first call.
    /// - Returns: The registry `/metrics` renders.
    @discardableResult
    public static func bootstrap() -> PrometheusCollectorRegistry { shared }
}
