import Logging
import Prometheus
import Synchronization

/// What `metrics.listen` turns on (docs/metrics.md, "Metrics"): a Prometheus registry, the service's
/// metrics recorded into it through swift-metrics, the process metrics, and the endpoint.
public final class MetricsSetup: Sendable {
    public let metrics: ServiceMetrics
    private let registry: PrometheusCollectorRegistry
    private let process: ProcessMetrics
    /// The service's live figures, read at each scrape once the service exists (in a
    /// ``Callback``: a closure read out of a lock directly grows with every read).
    private let collector = Mutex<Callback<Void>?>(nil)

    public init() {
        registry = PrometheusCollectorRegistry()
        metrics = ServiceMetrics(factory: PrometheusMetricsFactory(registry: registry))
        process = ProcessMetrics(registry: registry)
    }

    /// Starts serving `GET /metrics` at `address`: before the service exists, so that an
    /// address in use stops `run` at once. Each scrape reads the process metrics and, once
    /// ``setCollector(_:)`` was called, the service's live figures.
    public func serve(at address: ListenAddress, logger: Logger) async throws -> MetricsServer {
        try await serve(at: address, limits: .standard, logger: logger)
    }

    /// ``serve(at:logger:)`` with other limits (tests: a short request timeout).
    func serve(at address: ListenAddress, limits: MetricsServer.Limits, logger: Logger) async throws -> MetricsServer {
        try await MetricsServer.start(host: address.host, port: address.port, registry: registry,
                                      collect: { [self] in collect() },
                                      limits: limits, logger: logger)
    }

    /// What each scrape does before rendering: the service's live figures (once the service
    /// exists), then the process metrics.
    func collect() {
        collector.withLock { $0 }?.call()
        process.update()
    }

    /// What a scrape calls first: the service's `collectMetrics`.
    public func setCollector(_ collect: @escaping @Sendable () -> Void) {
        collector.withLock { $0 = Callback(collect) }
    }

    /// The text a scrape gets, without a server (for tests).
    public func render(collect: () -> Void) -> String {
        collect()
        process.update()
        return registry.emitToString()
    }
}
