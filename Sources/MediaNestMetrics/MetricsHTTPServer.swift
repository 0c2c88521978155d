public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
public import Prometheus
public import ServiceLifecycle
import Synchronization

/// Whether the worker can take work now, and why (or why not), for `/readyz`.
public typealias ReadinessCheck = @Sendable () -> (ready: Bool, reason: String)

/// A small HTTP/1 server for the operator's probes, run as a swift-service-lifecycle `Service`:
///
/// - `GET /metrics`: the Prometheus text exposition of every swift-metrics metric;
/// - `GET /healthz`: 200 while the process answers at all (liveness);
/// - `GET /readyz`: 200 when ``ReadinessCheck`` says ready (the database answers and the claim
///   loop makes progress), 503 with the reason otherwise.
///
/// It runs on SwiftNIO's shared event loop group, never on the job threads, so a scrape cannot
/// hold up a job and a busy worker still answers. Each response closes its connection: a scrape
/// every 15 s does not need keep-alive, and nothing can pile up idle connections.
public struct MetricsHTTPServer: Service {
    private let address: MetricsListenAddress
    private let registry: PrometheusCollectorRegistry
    private let readiness: ReadinessCheck
    private let logger: Logger
    private let onBound: (@Sendable (MetricsListenAddress) -> Void)?

    /// Creates the server; nothing is bound until ``run()``.
    /// - Parameters:
    ///   - address: Where to listen; port 0 picks a free port (reported to `onBound`).
    ///   - registry: What `/metrics` renders (``PrometheusMetrics/bootstrap()``).
    ///   - readiness: Asked on each `/readyz`; must be cheap and non-blocking (a snapshot).
    ///   - logger: Where the listen address and bind failures go.
    ///   - onBound: Called once with the address actually bound.
    public init(address: MetricsListenAddress, registry: PrometheusCollectorRegistry, readiness: @escaping ReadinessCheck,
                logger: Logger, onBound: (@Sendable (MetricsListenAddress) -> Void)? = nil) {
        self.address = address
        self.registry = registry
        self.readiness = readiness
        self.logger = logger
        self.onBound = onBound
    }

    /// Binds, serves until graceful shutdown or cancellation, then closes the listening socket.
    /// - Throws: The bind error (address in use, not an address of this host).
    public func run() async throws {
        let registry = self.registry
        let readiness = self.readiness
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ProbeHandler(registry: registry, readiness: readiness))
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
        let bound = MetricsListenAddress(host: address.host, port: channel.localAddress?.port ?? address.port)
        logger.info("serving /metrics, /healthz and /readyz", metadata: ["address": "\(bound)"])
        onBound?(bound)
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await channel.closeFuture.get()
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

/// Answers one request per connection.
private final class ProbeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let readiness: ReadinessCheck
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, readiness: @escaping ReadinessCheck) {
        self.registry = registry
        self.readiness = readiness
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break  // probes carry no body; whatever comes is ignored
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        var status = HTTPResponseStatus.ok
        var contentType = "text/plain; charset=utf-8"
        var body: [UInt8]
        if head.method != .GET && head.method != .HEAD {
            status = .methodNotAllowed
            body = Array("only GET and HEAD\n".utf8)
        } else {
            switch path {
            case "/metrics":
                contentType = "text/plain; version=0.0.4; charset=utf-8"
                body = registry.emitToBuffer()
            case "/healthz":
                body = Array("ok\n".utf8)
            case "/readyz":
                let (ready, reason) = readiness()
                status = ready ? .ok : .serviceUnavailable
                body = Array("\(ready ? "ready" : "not ready"): \(reason)\n".utf8)
            default:
                status = .notFound
                body = Array("not found; try /metrics, /healthz or /readyz\n".utf8)
            }
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
        let channel = context.channel
        done.futureResult.whenComplete { _ in channel.close(promise: nil) }
    }
}
