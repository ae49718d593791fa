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
/// Any other path is 404, any other method 405. Requests are small and bounded: a connection
/// is closed when its next request head is not complete within 10 s, when a body goes beyond
/// 16 KiB, when it does not read its answers (the socket's buffer full), and beyond 32
/// connections at once. A scrape reads the service's figures under short locks and renders the
/// registry on the event loop: a slow scraper holds up nothing but its own connection.
public final class MetricsServer: Service, Sendable {
    /// The address listened on (the port chosen, when 0 was asked for).
    public let address: SocketAddress
    private let channel: any Channel
    private let connections: Connections

    static let maxBodyBytes = 16 * 1024
    /// The longest wait for a request head: from the connection's start or the last answer.
    static let requestTimeout: TimeAmount = .seconds(10)
    static let maxConnections = 32

    /// Listens on `host:port`. An address that cannot be had (in use, not on this host) is a
    /// configuration error: `run` exits 2 naming it.
    public static func start(host: String, port: Int, registry: PrometheusCollectorRegistry,
                             collect: @escaping @Sendable () -> Void, logger: Logger) async throws -> MetricsServer {
        let connections = Connections()
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        guard connections.add(channel) else {
                            channel.close(promise: nil)
                            return
                        }
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(MetricsRequestHandler(registry: registry, collect: collect))
                    }
                }
                .bind(host: host, port: port)
                .get()
        } catch let error as IOError {
            throw CleanerError.configuration("metrics.listen \(ListenAddress(host: host, port: port)): cannot listen there: \(String(cString: strerror(error.errnoCode)))")
        } catch {
            throw CleanerError.configuration("metrics.listen \(ListenAddress(host: host, port: port)): cannot listen there (\(TransportErrorDescription.describe(error)))")
        }
        guard let address = channel.localAddress else {
            try? await channel.close()
            throw CleanerError.runtime("the metrics endpoint could not determine its address")
        }
        logger.info("metrics endpoint listening", metadata: ["address": "\(address)", "path": "/metrics"])
        return MetricsServer(address: address, channel: channel, connections: connections)
    }

    private init(address: SocketAddress, channel: any Channel, connections: Connections) {
        self.address = address
        self.channel = channel
        self.connections = connections
    }

    /// Serves until graceful shutdown (or cancellation), then closes everything.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Closes the listening socket and every connection now.
    public func shutdown() async {
        try? await channel.close()
        for connection in connections.all { try? await connection.close() }
    }

    /// The open connections: counted for the cap, and closed at shutdown.
    final class Connections: Sendable {
        private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

        /// Registers `channel`; false when the cap is reached (the caller closes it).
        func add(_ channel: any Channel) -> Bool {
            let key = ObjectIdentifier(channel)
            let added = channels.withLock { channels in
                guard channels.count < MetricsServer.maxConnections else { return false }
                channels[key] = channel
                return true
            }
            if added {
                channel.closeFuture.whenComplete { [self] _ in _ = channels.withLock { $0.removeValue(forKey: key) } }
            }
            return added
        }

        var all: [any Channel] { channels.withLock { Array($0.values) } }
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
    /// Closes the connection when the next request head is not complete in time.
    private var deadline: Scheduled<Void>?

    init(registry: PrometheusCollectorRegistry, collect: @escaping @Sendable () -> Void) {
        self.registry = registry
        self.collect = collect
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armDeadline(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    private func armDeadline(context: ChannelHandlerContext) {
        deadline?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: MetricsServer.requestTimeout) {
            loopBound.value.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            deadline?.cancel()
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
            body = ByteBuffer(string: "only GET and HEAD\n")
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
        if !keepAlive {
            headers.add(name: "Connection", value: "close")
        } else if head.version == .http1_0 {
            headers.add(name: "Connection", value: "keep-alive")
        }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !context.channel.isWritable {
            // A client that does not read its answers gets no more: nothing piles up for it.
            context.close(promise: nil)
        } else if !keepAlive {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            written.whenComplete { _ in loopBound.value.close(promise: nil) }
        } else {
            armDeadline(context: context)
        }
    }
}
