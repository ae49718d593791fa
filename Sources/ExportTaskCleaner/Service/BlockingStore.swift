import NIOPosix

/// Runs the queue store's calls on NIO's pool of threads for blocking work.
///
/// SQLite blocks the calling thread: a write may wait up to the busy timeout while another
/// process holds the database. Run on Swift's cooperative pool (a thread per core), such a
/// wait would hold up the requests too; on the blocking pool it holds up only the task that
/// needs the answer.
struct BlockingStore: Sendable {
    let store: any WorkQueue

    /// Skipped when the calling task is cancelled before the pool gets to it: for reads and
    /// claims, which a cancelled caller no longer wants.
    func run<T: Sendable>(_ body: @escaping @Sendable (any WorkQueue) throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive { [store] in try body(store) }
    }

    /// Runs whether or not the calling task is cancelled, as goqite writes an outcome with a
    /// context of its own: for the writes that record what the server did, which cancellation
    /// must never drop (docs/operations.md, "Behaviour under failures"). Each is bounded by SQLite's busy
    /// timeout; the recorder bounds how often it tries.
    func runShielded<T: Sendable>(_ body: @escaping @Sendable (any WorkQueue) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            NIOThreadPool.singleton.submit { [store] state in
                guard case .active = state else {
                    continuation.resume(throwing: NIOThreadPoolError.ThreadPoolInactive())
                    return
                }
                continuation.resume(with: Result { try body(store) })
            }
        }
    }
}
