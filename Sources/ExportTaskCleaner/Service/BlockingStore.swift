import NIOPosix

/// Runs the queue store's calls on NIO's pool of threads for blocking work.
///
/// SQLite blocks the calling thread: a write may wait up to the busy timeout while another
/// process holds the database. Run on Swift's cooperative pool (a thread per core), such a
/// wait would hold up the requests too; on the blocking pool it holds up only the task that
/// needs the answer.
struct BlockingStore: Sendable {
    let store: any WorkQueue

    func run<T: Sendable>(_ body: @escaping @Sendable (any WorkQueue) throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive { [store] in try body(store) }
    }
}
