import AsyncHTTPClient
import Logging
import NIOCore
import Synchronization

/// An `HTTPClient` on the shared event loops, shut down exactly once: by ``shutdown()``, or
/// when its owner is dropped without it (say, on an error path), which releases the
/// connections instead of tripping AsyncHTTPClient's debug-build check.
final class OwnedHTTPClient: Sendable {
    let client: HTTPClient
    private let isShutDown = Atomic<Bool>(false)

    init(configuration: HTTPClient.Configuration, backgroundActivityLogger: Logger? = nil) {
        if let backgroundActivityLogger {
            client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration,
                                backgroundActivityLogger: backgroundActivityLogger)
        } else {
            client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        }
    }

    /// Closes the connections. Calling it again does nothing.
    func shutdown() async throws {
        guard !isShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        try await client.shutdown()
    }

    deinit {
        if !isShutDown.load(ordering: .acquiring) {
            let _: EventLoopFuture<Void> = client.shutdown()
        }
    }
}
