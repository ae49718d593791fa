import Logging
import Prometheus

/// What `metrics.listen` turns on (README, "Metrics"): a Prometheus registry, the service's
/// metrics recorded into it through swift-metrics, the process metrics, and the endpoint.
public struct MetricsSetup: Sendable {
    public let metrics: ServiceMetrics
    private let registry: PrometheusCollectorRegistry
    private let process: ProcessMetrics

    public init() {
        registry = PrometheusCollectorRegistry()
        metrics = ServiceMetrics(factory: PrometheusMetricsFactory(registry: registry))
        process = ProcessMetrics(registry: registry)
    }

    /// Starts serving `GET /metrics` at `address`; each scrape first calls `collect` (the
    /// service's live figures) and reads the process metrics.
    public func serve(at address: ListenAddress, collect: @escaping @Sendable () -> Void, logger: Logger) async throws -> MetricsServer {
        let process = self.process
        return try await MetricsServer.start(host: address.host, port: address.port, registry: registry,
                                             collect: { collect(); process.update() }, logger: logger)
    }

    /// The text a scrape gets, without a server (for tests).
    public func render(collect: () -> Void) -> String {
        collect()
        process.update()
        return registry.emitToString()
    }
}
