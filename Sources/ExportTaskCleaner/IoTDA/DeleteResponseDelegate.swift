import AsyncHTTPClient
import FoundationEssentials
import NIOCore
import NIOHTTP1
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the delegate collected from a response.
struct ReceivedResponse: Sendable {
    var status = 0
    var reason = ""
    var requestID: String?
    var retryAfter: String?
    /// The `Date` header of a 401, for the clock diagnosis.
    var date: String?
    var body: [UInt8] = []
    /// The body was longer than the most read: only its first part is in ``body``.
    var bodyTruncated = false
}

/// Collects the response and records whether the request head was written, which decides
/// ``Delivery`` when the request fails. AsyncHTTPClient calls it on the request's event loop.
final class DeleteResponseDelegate: HTTPClientResponseDelegate {
    typealias Response = ReceivedResponse

    private let headSent = Atomic<Bool>(false)
    private let received = Mutex(ReceivedResponse())
    private let maxBodyBytes: Int

    init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    var wasHeadSent: Bool { headSent.load(ordering: .acquiring) }

    /// The answer's status once its head has come; nil before.
    var receivedStatus: Int? { received.withLock { $0.status == 0 ? nil : $0.status } }

    /// What came before a failure: the head, and as much of the body as arrived.
    var receivedSoFar: ReceivedResponse { received.withLock { $0 } }

    func didSendRequestHead(task: HTTPClient.Task<ReceivedResponse>, _ head: HTTPRequestHead) {
        headSent.store(true, ordering: .releasing)
    }

    func didReceiveHead(task: HTTPClient.Task<ReceivedResponse>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        received.withLock {
            $0.status = Int(head.status.code)
            $0.reason = head.status.reasonPhrase
            $0.requestID = head.headers.first(name: "X-Request-Id")
            $0.retryAfter = head.headers.first(name: "Retry-After")
            // An HTTP date is 29 characters; anything much longer is not one.
            if head.status.code == 401 { $0.date = head.headers.first(name: "Date").flatMap { $0.utf8.count <= 64 ? $0 : nil } }
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<ReceivedResponse>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        received.withLock {
            let room = maxBodyBytes - $0.body.count
            if room > 0 { $0.body.append(contentsOf: buffer.readableBytesView.prefix(room)) }
            if buffer.readableBytes > room { $0.bodyTruncated = true }
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<ReceivedResponse>) throws -> ReceivedResponse {
        received.withLock { $0 }
    }
}
