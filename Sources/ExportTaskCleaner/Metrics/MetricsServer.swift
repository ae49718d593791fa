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

/// Serves `GET /metrics` in Prometheus' text format on `metrics.listen` (docs/metrics.md, "Metrics"),
/// with SwiftNIO's HTTP/1 on an event loop of its own.
///
/// Any other path is 404, any other method 405. The limits (``Limits``) are docs/metrics.md's: a
/// thread of its own, so that no client of the endpoint can hold up the IoTDA client's event
/// loops; a whole request (head and body) within 10 s; a budget of requests per connection, so
/// that pipelined requests cannot pile up renders; and bounded bodies, buffers and connections.
/// A scrape reads the service's figures under short locks and renders the registry on the
/// endpoint's own loop, at most once each 100 ms.
public final class MetricsServer: Service, Sendable {
    /// The requests a connection may make, and the connections there may be (docs/metrics.md, "Metrics").
    struct Limits: Sendable {
        /// The longest a whole request (head and body to its end) may take: from the
        /// connection's start or the last answer. Also the longest an idle connection is kept.
        var requestTimeout: TimeAmount = .seconds(10)
        var maxBodyBytes = 16 * 1024
        var maxConnections = 32
        /// A connection's requests: a burst of `requestBurst`, then one each `requestInterval`;
        /// one beyond closes it (``MetricsRequestBudget``).
        var requestBurst = 16
        var requestInterval: TimeAmount = .seconds(1)
        /// How long a render of the registry serves later scrapes (``MetricsRenderCache``).
        var renderReuse: TimeAmount = .milliseconds(100)

        static let standard = Limits()
    }

    /// The address listened on (the port chosen, when 0 was asked for).
    public let address: SocketAddress
    /// The endpoint's own thread: never `MultiThreadedEventLoopGroup.singleton`, which the
    /// IoTDA client runs on.
    let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let connections: Connections
    private let stopped = Mutex(false)

    /// Listens on `host:port`. An address that cannot be had (in use, not on this host) is a
    /// configuration error: `run` exits 2 naming it.
    public static func start(host: String, port: Int, registry: PrometheusCollectorRegistry,
                             collect: @escaping @Sendable () -> Void, logger: Logger) async throws -> MetricsServer {
        try await start(host: host, port: port, registry: registry, collect: collect, limits: .standard, logger: logger)
    }

    static func start(host: String, port: Int, registry: PrometheusCollectorRegistry,
                      collect: @escaping @Sendable () -> Void, limits: Limits, logger: Logger) async throws -> MetricsServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let connections = Connections(limit: limits.maxConnections)
        let renders = MetricsRenderCache(registry: registry, collect: collect, reuse: limits.renderReuse)
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        guard connections.add(channel) else {
                            channel.close(promise: nil)
                            return
                        }
                        try Self.configure(channel.pipeline.syncOperations, renders: renders, limits: limits)
                    }
                }
                .bind(host: host, port: port)
                .get()
        } catch {
            try? await group.shutdownGracefully()
            if let error = error as? IOError {
                throw CleanerError.configuration("metrics.listen \(ListenAddress(host: host, port: port)): cannot listen there: \(String(cString: strerror(error.errnoCode)))")
            }
            throw CleanerError.configuration("metrics.listen \(ListenAddress(host: host, port: port)): cannot listen there (\(TransportErrorDescription.describe(error)))")
        }
        guard let address = channel.localAddress else {
            try? await channel.close()
            try? await group.shutdownGracefully()
            throw CleanerError.runtime("the metrics endpoint could not determine its address")
        }
        logger.info("metrics endpoint listening", metadata: ["address": "\(address)", "path": "/metrics"])
        return MetricsServer(address: address, group: group, channel: channel, connections: connections)
    }

    /// A connection's handlers, socket side first: reading stops while the answers are not
    /// written (``BackPressureHandler``); NIO's HTTP/1, whose pipelining handler passes on one
    /// request at a time; before it, the connection's budget of requests; last, the answers.
    private static func configure(_ pipeline: ChannelPipeline.SynchronousOperations, renders: MetricsRenderCache,
                                  limits: Limits) throws {
        try pipeline.addHandler(BackPressureHandler())
        try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
        let pipelining = try pipeline.handler(type: HTTPServerPipelineHandler.self)
        try pipeline.addHandler(MetricsRequestBudget(burst: limits.requestBurst, interval: limits.requestInterval),
                                position: .before(pipelining))
        try pipeline.addHandler(MetricsRequestHandler(renders: renders, limits: limits))
    }

    private init(address: SocketAddress, group: MultiThreadedEventLoopGroup, channel: any Channel, connections: Connections) {
        self.address = address
        self.group = group
        self.channel = channel
        self.connections = connections
    }

    /// Serves until graceful shutdown (or cancellation), then closes everything.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Closes the listening socket and every connection now, then stops the endpoint's thread.
    /// Once only: later calls return at once. Called from a task, never from the loop itself
    /// (an event loop cannot wait for its own end).
    public func shutdown() async {
        let first = stopped.withLock { stopped in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        try? await channel.close()
        for connection in connections.all { try? await connection.close() }
        try? await group.shutdownGracefully()
    }

    /// The open connections: counted for the cap, and closed at shutdown.
    final class Connections: Sendable {
        private let limit: Int
        private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

        init(limit: Int) {
            self.limit = limit
        }

        /// Registers `channel`; false when the cap is reached (the caller closes it).
        func add(_ channel: any Channel) -> Bool {
            let key = ObjectIdentifier(channel)
            let added = channels.withLock { channels in
                guard channels.count < limit else { return false }
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
