import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import MediaNestMetrics
import Metrics
import ServiceLifecycle
import Synchronization
import MediaNestTestSupport
import Testing

// The limit guards against a hang, not a slow run: under `make test` every test of the process
// shares Swift concurrency's cooperative threads (one per core, two here), and each resumption
// after an `await` queues behind the test starts already waiting for them, so a test of a few
// milliseconds alone has been seen to take over a minute of wall time in a loaded run.
/// The operator's probes over a real loopback socket: the Prometheus exposition of a
/// swift-metrics counter, liveness, and readiness that follows the worker's state.
@Suite("metrics endpoint", .timeLimit(.minutes(5)))
struct MetricsEndpointTests {
    /// A flag the readiness closure reads and the test flips.
    final class Flag: Sendable {
        private let value = Mutex(false)
        var isSet: Bool { value.withLock { $0 } }
        func set() { value.withLock { $0 = true } }
    }

    /// One GET over a fresh connection (the server closes each one).
    private func get(_ address: MetricsListenAddress, _ path: String, method: String = "GET") async throws -> (status: Int, body: String) {
        var request = URLRequest(url: try #require(URL(string: "http://\(address)\(path)")))
        request.httpMethod = method
        request.timeoutInterval = 10
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        return (http.statusCode, String(decoding: data, as: UTF8.self))
    }

    @Test func scrapesCountersAndAnswersHealthAndReadiness() async throws {
        let registry = PrometheusMetrics.bootstrap()
        let ready = Flag()
        let (boundStream, bound) = AsyncStream<MetricsListenAddress>.makeStream()
        let logger = TestLogging.logger("medianest.tests.metrics")
        let server = MetricsHTTPServer(
            address: MetricsListenAddress(host: "127.0.0.1", port: 0), registry: registry,
            readiness: { ready.isSet ? (true, "claim loop progressing") : (false, "database unreachable") },
            logger: logger, onBound: { bound.yield($0) })
        let group = ServiceGroup(services: [server], gracefulShutdownSignals: [], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var addresses = boundStream.makeAsyncIterator()
            let address = try #require(await addresses.next())
            #expect(address.port != 0, "the kernel's ephemeral port is reported")

            let label = "medianest_test_jobs_claimed_total"
            Counter(label: label, dimensions: [("type", "thumbnail")]).increment(by: 3)
            Counter(label: label, dimensions: [("type", "thumbnail")]).increment()
            let metrics = try await get(address, "/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.body.split(separator: "\n").contains("\(label){type=\"thumbnail\"} 4"), "\(metrics.body)")
            #expect(metrics.body.contains("# TYPE \(label) counter"))

            #expect(try await get(address, "/healthz").status == 200)
            let notReady = try await get(address, "/readyz")
            #expect(notReady.status == 503)
            #expect(notReady.body.contains("database unreachable"))
            ready.set()
            let isReady = try await get(address, "/readyz")
            #expect(isReady.status == 200)
            #expect(isReady.body.contains("claim loop progressing"))

            #expect(try await get(address, "/nope").status == 404)
            #expect(try await get(address, "/metrics", method: "POST").status == 405)

            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func aBusyPortFailsTheServiceInsteadOfServingNothing() async throws {
        let registry = PrometheusMetrics.bootstrap()
        let (boundStream, bound) = AsyncStream<MetricsListenAddress>.makeStream()
        let logger = TestLogging.logger("medianest.tests.metrics")
        let first = MetricsHTTPServer(address: MetricsListenAddress(host: "127.0.0.1", port: 0), registry: registry,
                                      readiness: { (true, "") }, logger: logger, onBound: { bound.yield($0) })
        let group = ServiceGroup(services: [first], gracefulShutdownSignals: [], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var addresses = boundStream.makeAsyncIterator()
            let address = try #require(await addresses.next())
            let second = MetricsHTTPServer(address: address, registry: registry, readiness: { (true, "") }, logger: logger)
            await #expect(throws: (any Error).self) { try await second.run() }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func listenAddressesParseAndInstancesGetTheirOwnPort() throws {
        #expect(try MetricsListenAddress.parse("127.0.0.1:9464") == MetricsListenAddress(host: "127.0.0.1", port: 9464))
        #expect(try MetricsListenAddress.parse("[::1]:9500") == MetricsListenAddress(host: "::1", port: 9500))
        #expect(try MetricsListenAddress.parse("0.0.0.0:0")?.port == 0)
        #expect(try MetricsListenAddress.parse("off") == nil)
        #expect(try MetricsListenAddress.parse("OFF") == nil)
        for bad in ["9464", "localhost", "host:port", "127.0.0.1:70000", "::1:9464", ":9464", "[::1]9464"] {
            #expect(throws: MetricsAddressError.self, "\(bad)") { try MetricsListenAddress.parse(bad) }
        }
        #expect(MetricsListenAddress.default(instance: "0").port == 9464)
        #expect(MetricsListenAddress.default(instance: "2").port == 9466)
        #expect(MetricsListenAddress.default(instance: "worker-a").port == 9464)
        #expect(MetricsListenAddress.default(instance: "3").host == "127.0.0.1", "loopback unless configured")
        #expect(try MetricsListenAddress.parse("[::1]:9464")?.description == "[::1]:9464")
    }
}
