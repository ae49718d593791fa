import FoundationEssentials
import NIOPosix

/// The embedded store: the queue in one SQLite file (docs/database.md), behind the store
/// protocols. The default, needing no server.
///
/// SQLite blocks the calling thread: a write may wait up to the busy timeout while another
/// process holds the database. Run on Swift's cooperative pool (a thread per core), such a
/// wait would hold up the requests too; so every call runs on NIO's pool of threads for
/// blocking work, where it holds up only the task that needs the answer. SQLite's errors
/// leave as ``StoreError``.
public final class SQLiteQueueStore: QueueStore, QueueBackup {
    /// The synchronous core, for the SQLite-only tools (the store benchmark, the tests).
    package let queue: SQLiteQueue

    /// Opens the database at `path` for `purpose`.
    ///
    /// Throws `CleanerError.configuration` when the path cannot be used (missing directory,
    /// no permission, another application's file, no queue yet to inspect),
    /// `CleanerError.runtime` when the file is not a usable queue (corrupt, or written by a
    /// newer release) or a feeding tool's `-wal`/`-shm` is not writable here.
    public init(path: String, runner: String = Runner.current, purpose: StorePurpose = .write) throws {
        queue = try SQLiteQueue(path: path, runner: runner, purpose: purpose == .inspect ? .inspect : .write)
    }

    public var path: String { queue.path }
    public var location: String { queue.path }
    /// What opening changed in the files' modes and groups (``QueueFiles``), for the log.
    public var repairs: [QueueFiles.Repair] { queue.repairs }
    /// The schema version this release writes (docs/database.md, "The database").
    public static var schemaVersion: Int { SQLiteQueue.schemaVersion }
    public var writeTransactions: Int { queue.writeTransactions }

    // MARK: WorkQueue

    public func claim(limit: Int, leaseToken: String, leaseUntil: Date, now: Date) async throws -> [ClaimedTask] {
        try await read { try $0.claim(limit: limit, leaseToken: leaseToken, leaseUntil: leaseUntil, now: now) }
    }

    public func apply(_ transitions: [TaskTransition]) async throws -> [Bool] {
        try await write { try $0.apply(transitions) }
    }

    public func renewLeases(tokens: [String], until: Date) async throws -> Set<Int> {
        try await write { try $0.renewLeases(tokens: tokens, until: until) }
    }

    public func expireLeases(now: Date) async throws -> [ExpiredLease] {
        try await write { try $0.expireLeases(now: now) }
    }

    public func counts() async throws -> [TaskState: Int] { try await read { try $0.counts() } }
    public func nextDue() async throws -> Date? { try await read { try $0.nextDue() } }
    public func hasUnfinishedTasks() async throws -> Bool { try await read { try $0.hasUnfinishedTasks() } }
    public func changeSignal() async throws -> Int { try await read { try $0.dataVersion() } }
    public func oldestPendingEnqueuedAt() async throws -> Date? { try await read { try $0.oldestPendingEnqueuedAt() } }

    public func heartbeat(startedAt: Date, status: String, now: Date) async throws {
        try await write { try $0.heartbeat(startedAt: startedAt, status: status, now: now) }
    }

    public func removeHeartbeat() async throws { try await write { try $0.removeHeartbeat() } }

    // MARK: QueueOperations

    public func enqueue(_ list: EnqueueList, now: Date) async throws -> EnqueueSummary {
        try await write { try $0.enqueue(list, now: now) }
    }

    public func requeue(_ selection: RequeueSelection, now: Date) async throws -> RequeueSummary {
        try await write { try $0.requeue(selection, now: now) }
    }

    public func status(now: Date) async throws -> QueueStatus { try await read { try $0.status(now: now) } }
    public func auditHead() async throws -> QueueStatus.AuditHead? { try await read { try $0.auditHead() } }
    public func verifyAuditChain(continuing walker: AuditVerification.Walker?) async throws -> AuditVerification {
        try await read { try $0.verifyAuditChain(continuing: walker) }
    }
    public func checkConsistency() async throws -> ConsistencyReport { try await read { try $0.checkConsistency() } }

    // MARK: Retention

    public func archiveCheckpoints() async throws -> [ArchiveCheckpoint] { try await read { try $0.archiveCheckpoints() } }
    public func lastArchiveCheckpoint() async throws -> ArchiveCheckpoint? { try await read { try $0.lastArchiveCheckpoint() } }

    public func planPrune(after position: ChainPosition, cutoff: Date, targetRows: Int) async throws -> PrunePlan? {
        try await read { try $0.planPrune(after: position, cutoff: cutoff, targetRows: targetRows) }
    }

    public func commitPrune(_ plan: PrunePlan, checkpoint: ArchiveCheckpoint) async throws -> PruneCommit {
        try await write { try $0.commitPrune(plan, checkpoint: checkpoint) }
    }

    public func databaseSize() async throws -> Int? { try await read { try $0.databaseSize() } }

    /// On the calling thread: `body` is the caller's and stays with it. Only the commands
    /// stream audit rows, and a one-shot command has no other work to hold up.
    public func auditEntries(_ filter: AuditFilter, _ body: (AuditEntry) throws -> Void) async throws {
        do { try queue.auditEntries(filter, body) } catch let error as SQLiteError { throw error.storeError }
    }

    // MARK: Threads

    /// The pool's thread keeps the last closure it ran until it runs the next one: a strong
    /// reference there would keep the file open after the store is released (no checkpoint,
    /// `-wal` and `-shm` left behind by a command that has ended). The caller holds the store
    /// while it waits, so the queue is alive whenever a closure runs on its behalf.
    private static func alive(_ queue: SQLiteQueue?) throws -> SQLiteQueue {
        guard let queue else { throw StoreError(.unavailable, "the queue was closed") }
        return queue
    }

    public func close() async {}

    public func backup(to path: String) async throws -> BackupSummary { try await read { try $0.backup(to: path) } }

    /// A read or a claim: skipped when the calling task is cancelled before the pool gets to
    /// it, since a cancelled caller no longer wants the answer.
    private func read<T: Sendable>(_ body: @escaping @Sendable (SQLiteQueue) throws -> T) async throws -> T {
        do {
            return try await NIOThreadPool.singleton.runIfActive { [weak queue] in try body(try Self.alive(queue)) }
        } catch let error as SQLiteError {
            throw error.storeError
        }
    }

    /// A write: runs once submitted, whether or not the caller is cancelled meanwhile, as
    /// goqite writes an outcome with a context of its own (docs/operations.md, "Behaviour
    /// under failures"); each is bounded by SQLite's busy timeout.
    private func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteQueue) throws -> T) async throws -> T {
        do {
            return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                NIOThreadPool.singleton.submit { [weak queue] state in
                    guard case .active = state else {
                        continuation.resume(throwing: NIOThreadPoolError.ThreadPoolInactive())
                        return
                    }
                    continuation.resume(with: Result { try body(try Self.alive(queue)) })
                }
            }
        } catch let error as SQLiteError {
            throw error.storeError
        }
    }
}
