import NIOCore
import NIOHTTP1

/// One connection's requests to the metrics endpoint: collects a request, then answers it
/// (docs/metrics.md, "Metrics").
///
/// A whole request, head and body to its end, must come within the request timeout of the
/// connection's start or of the last answer; else the connection is closed. A head alone is not
/// enough: a client that announces a body (a `Content-Length`, or chunks) and sends none would
/// otherwise hold a connection, of 32, for ever.
final class MetricsRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let renders: MetricsRenderCache
    private let limits: MetricsServer.Limits
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    /// Closes the connection when the next request is not complete in time.
    private var deadline: Scheduled<Void>?

    init(renders: MetricsRenderCache, limits: MetricsServer.Limits) {
        self.renders = renders
        self.limits = limits
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
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: limits.requestTimeout) {
            loopBound.value.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            bodyBytes = 0
        case .body(let part):
            bodyBytes += part.readableBytes
            if bodyBytes > limits.maxBodyBytes { context.close(promise: nil) }
        case .end:
            guard let head else { return }
            // The request is complete: the deadline is met.
            deadline?.cancel()
            deadline = nil
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
            body = renders.body()
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
        } else {
            if !keepAlive {
                let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
                written.whenComplete { _ in loopBound.value.close(promise: nil) }
            }
            // The next request, or (closing) a client that never reads this answer, within the
            // deadline.
            armDeadline(context: context)
        }
    }
}
