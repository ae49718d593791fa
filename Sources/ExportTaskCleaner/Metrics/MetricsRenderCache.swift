import NIOCore
import Prometheus
import Synchronization

/// The registry rendered at most once each `reuse` (docs/metrics.md, "Metrics"): a scrape within it of
/// the last render gets the same text. However many connections ask, the endpoint's thread
/// renders at most ten times a second (100 ms); Prometheus scrapes every few seconds at most.
final class MetricsRenderCache: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let collect: @Sendable () -> Void
    private let reuse: TimeAmount
    private let last = Mutex<(at: NIODeadline, body: ByteBuffer)?>(nil)

    init(registry: PrometheusCollectorRegistry, collect: @escaping @Sendable () -> Void, reuse: TimeAmount) {
        self.registry = registry
        self.collect = collect
        self.reuse = reuse
    }

    /// The text of a scrape at `now`: the last render's, when it is recent enough.
    func body(now: NIODeadline = .now()) -> ByteBuffer {
        last.withLock { last in
            if let last, now - last.at < reuse, now >= last.at { return last.body }
            collect()
            var bytes: [UInt8] = []
            bytes.reserveCapacity(last?.body.readableBytes ?? 4096)
            registry.emit(into: &bytes)
            let body = ByteBuffer(bytes: bytes)
            last = (now, body)
            return body
        }
    }
}
