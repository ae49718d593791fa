import NIOCore
import NIOHTTP1

/// One connection's handler: collects a request, asks the core for a decision, and writes the
/// answer now or schedules it on the event loop (never blocking it). Every answer carries a
/// `Date` from the simulator's clock.
///
/// Behind NIO's `HTTPServerPipelineHandler`, a connection's next request is not read before
/// this one's answer is written, so at most one request per connection is pending here.
final class SimulatorHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Request bodies beyond this are cut (deletes have none; the signature check will fail).
    private static let maxBodyBytes = 64 * 1024

    private let core: SimulatorCore
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var random: WyRand
    private var date = DateHeaderCache()

    init(core: SimulatorCore) {
        self.core = core
        var system = SystemRandomNumberGenerator()
        self.random = WyRand(seed: system.next())
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.removeAll(keepingCapacity: true)
        case .body(let buffer):
            let room = Self.maxBodyBytes - body.count
            if room > 0 { body.append(contentsOf: buffer.readableBytesView.prefix(room)) }
        case .end:
            guard let head else { return }
            self.head = nil
            let decision = core.decide(head: head, body: body)
            let keepAlive = head.isKeepAlive
            let version = head.version
            if decision.delay <= .zero {
                perform(decision.action, counted: decision.counted, version: version, keepAlive: keepAlive, context: context)
            } else {
                context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(decision.delay)) {
                    self.perform(
                        decision.action, counted: decision.counted, version: version, keepAlive: keepAlive, context: context)
                }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func perform(
        _ action: Decision.Action, counted: Bool, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext
    ) {
        switch action {
        case .drop:
            if counted { core.completed(nil) }
            context.close(promise: nil)
        case .drip(let answer, let interval):
            if counted { core.completed(Int(answer.status.code)) }
            let head = responseHead(answer, version: version, keepAlive: keepAlive)
            context.writeAndFlush(wrapOutboundOut(.head(head)), promise: nil)
            drip(answer.body ?? ByteBuffer(), every: interval, keepAlive: keepAlive, context: context)
        case .answer(let answer):
            if counted { core.completed(Int(answer.status.code)) }
            let head = responseHead(answer, version: version, keepAlive: keepAlive)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            if let body = answer.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
            end(keepAlive: keepAlive, context: context)
        }
    }

    /// Writes the body's first byte now and the rest one `interval` apart, then ends the
    /// answer; stops when the client has gone.
    private func drip(_ body: ByteBuffer, every interval: Duration, keepAlive: Bool, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        var remaining = body
        guard let byte = remaining.readSlice(length: 1) else {
            end(keepAlive: keepAlive, context: context)
            return
        }
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(byte))), promise: nil)
        let rest = remaining
        context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(interval)) {
            self.drip(rest, every: interval, keepAlive: keepAlive, context: context)
        }
    }

    private func end(keepAlive: Bool, context: ChannelHandlerContext) {
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                loopBound.value.close(promise: nil)
            }
        }
    }

    private func responseHead(_ answer: Answer, version: HTTPVersion, keepAlive: Bool) -> HTTPResponseHead {
        var headers = HTTPHeaders()
        headers.reserveCapacity(6)
        headers.add(name: "X-Request-Id", value: nextRequestID())
        headers.add(name: "Date", value: date.value(for: core.now()))
        if let body = answer.body {
            headers.add(name: "Content-Type", value: answer.contentType.value)
            headers.add(name: "Content-Length", value: String(body.readableBytes))
        } else if answer.status != .noContent {
            headers.add(name: "Content-Length", value: "0")
        }
        if let seconds = answer.retryAfterSeconds { headers.add(name: "Retry-After", value: String(seconds)) }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        return HTTPResponseHead(version: version, status: answer.status, headers: headers)
    }

    /// 32 random lower-case hex digits, as IoTDA's `X-Request-Id`.
    private func nextRequestID() -> String {
        let high = random.next()
        let low = random.next()
        return String(unsafeUninitializedCapacity: 32) { buffer in
            let digits: StaticString = "0123456789abcdef"
            digits.withUTF8Buffer { hex in
                for i in 0..<16 {
                    buffer[i] = hex[Int((high >> (60 - 4 * UInt64(i))) & 0xF)]
                    buffer[16 + i] = hex[Int((low >> (60 - 4 * UInt64(i))) & 0xF)]
                }
            }
            return 32
        }
    }
}

/// wyrand: a small, fast generator for request IDs (not for secrets).
struct WyRand: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0xa076_1d64_78bd_642f
        let product = state.multipliedFullWidth(by: state ^ 0xe703_7ed1_a0b4_28db)
        return product.high ^ product.low
    }
}
