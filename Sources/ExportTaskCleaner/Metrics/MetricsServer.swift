#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle
import Synchronization

/// Serves `GET /metrics` in Prometheus' text format on `metrics.listen` (README, "Metrics"),
/// with SwiftNIO's HTTP/1 on the service's event loops.
///
/// Any other path is 404, any other method 405. Requests are small and bounded: a body beyond
/// 16 KiB, a client silent for 10 s, or more than 32 connections at once are closed. A scrape
/// reads the service's figures under short locks and renders the registry on the event loop:
/// a slow scraper holds up nothing but its own connection.
public final class MetricsServer: Service, Sendable {
    /// The address listened on (the port chosen, when 0 was asked for).
    public let address: SocketAddress
    private let channel: any Channel

    static let maxBodyBytes = 16 * 1024
    static let idleTimeout: TimeAmount = .seconds(10)
    static let maxConnections = 32

    /// Listens on `host:port`. An address that cannot be had (in use, not on this host) is a
    /// configuration error: `run` exits 2 naming it.
    public static func start(host: String, port: Int, registry: PrometheusCollectorRegistry,
                             collect: @escaping @Sendable () -> Void, logger: Logger) async throws -> MetricsServer {
        let connections = Atomic<Int>(0)
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let open = connections.wrappingAdd(1, ordering: .relaxed).newValue
                        channel.closeFuture.whenComplete { _ in connections.wrappingSubtract(1, ordering: .relaxed) }
                        guard open <= maxConnections else {
                            channel.close(promise: nil)
                            return
                        }
                        try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(MetricsRequestHandler(registry: registry, collect: collect))
                    }
                }
                .bind(host: host, port: port)
                .get()
        } catch let error as IOError {
            throw CleanerError.configuration("metrics.listen \(host):\(port): cannot listen there: \(String(cString: strerror(error.errnoCode)))")
        } catch {
            throw CleanerError.configuration("metrics.listen \(host):\(port): cannot listen there (\(TransportErrorDescription.describe(error)))")
        }
        guard let address = channel.localAddress else {
            try? await channel.close()
            throw CleanerError.runtime("the metrics endpoint could not determine its address")
        }
        logger.info("metrics endpoint listening", metadata: ["address": "\(address)", "path": "/metrics"])
        return MetricsServer(address: address, channel: channel)
    }

    private init(address: SocketAddress, channel: any Channel) {
        self.address = address
        self.channel = channel
    }

    /// Serves until graceful shutdown (or cancellation), then closes the listening socket.
    public func run() async throws {
        try? await gracefulShutdown()
        try? await channel.close()
    }

    /// Closes the listening socket now.
    public func shutdown() async {
        try? await channel.close()
    }
}

/// One connection's requests: collects a request, then answers it.
final class MetricsRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let collect: @Sendable () -> Void
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    private var buffer: [UInt8] = []

    init(registry: PrometheusCollectorRegistry, collect: @escaping @Sendable () -> Void) {
        self.registry = registry
        self.collect = collect
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyBytes = 0
        case .body(let part):
            bodyBytes += part.readableBytes
            if bodyBytes > MetricsServer.maxBodyBytes { context.close(promise: nil) }
        case .end:
            guard let head else { return }
            self.head = nil
            respond(to: head, context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        var headers = HTTPHeaders()
        let status: HTTPResponseStatus
        var body = ByteBuffer()
        if path != "/metrics" {
            status = .notFound
            body = ByteBuffer(string: "not found; the metrics are at /metrics\n")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        } else if head.method != .GET, head.method != .HEAD {
            status = .methodNotAllowed
            headers.add(name: "Allow", value: "GET, HEAD")
            body = ByteBuffer(string: "only GET\n")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        } else {
            status = .ok
            collect()
            buffer.removeAll(keepingCapacity: true)
            registry.emit(into: &buffer)
            body = ByteBuffer(bytes: buffer)
            headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
        }
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            written.whenComplete { _ in loopBound.value.close(promise: nil) }
        }
    }
}
