import NIOCore
import NIOHTTP1

/// Closes a metrics connection that makes requests faster than one an interval beyond a short
/// burst (docs/metrics.md, "Metrics"): a token bucket of `burst` requests, refilled one each `interval`.
///
/// It sits between NIO's HTTP decoder and its pipelining handler, and counts each request as it
/// is decoded. The pipelining handler alone bounds nothing here: the answers are written at
/// once, so it passes every request of a read on, and one read of 64 KiB holds some 1,700
/// pipelined `GET /metrics`, each a render of the registry. With the budget, the 17th of them
/// closes the connection, and the rest is dropped unanswered. Prometheus sends one request
/// every scrape interval (seconds at the least).
final class MetricsRequestBudget: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private let interval: Int64
    private let capacity: Int64
    /// Time credit, in nanoseconds: a request costs `interval`.
    private var credit: Int64
    private var last: NIODeadline
    private var closing = false

    init(burst: Int, interval: TimeAmount, now: NIODeadline = .now()) {
        self.interval = max(1, interval.nanoseconds)
        capacity = Int64(max(1, burst)) * self.interval
        credit = capacity
        last = now
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        if case .head = unwrapInboundIn(data), !spend(now: .now()) {
            closing = true
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }

    /// Takes one request's cost from the credit, refilled for the time since the last request;
    /// false when there is not enough.
    func spend(now: NIODeadline) -> Bool {
        let elapsed = max(0, (now - last).nanoseconds)
        last = now
        credit = min(capacity, credit &+ elapsed)
        guard credit >= interval else { return false }
        credit -= interval
        return true
    }
}
