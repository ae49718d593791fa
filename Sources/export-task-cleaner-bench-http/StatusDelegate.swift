import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Synchronization

/// Keeps a response's status and drops its body.
final class StatusDelegate: HTTPClientResponseDelegate {
    typealias Response = Int
    private let status = Atomic<Int>(0)

    func didReceiveHead(task: HTTPClient.Task<Int>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        status.store(Int(head.status.code), ordering: .relaxed)
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<Int>) throws -> Int { status.load(ordering: .relaxed) }
}
