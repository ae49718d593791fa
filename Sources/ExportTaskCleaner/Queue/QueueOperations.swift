import FoundationEssentials

/// The operators' and feeding tools' half of the storage seam: `enqueue`, `requeue`, `status`,
/// `audit`, `audit --verify` (docs/commands.md). Every command runs on any store through it.
public protocol QueueOperations: Sendable {
    /// Where the queue is, for messages and `status`: a path, or a URL without its password.
    var location: String { get }

    /// Queues a list in one transaction; duplicates are counted, invalid IDs stored as
    /// `invalid`. The list is read as it is inserted, so a long one is held once.
    func enqueue(_ list: EnqueueList, now: Date) async throws -> EnqueueSummary

    /// Puts finished tasks back to `pending` with no attempts, with a `requeued` audit row each.
    func requeue(_ selection: RequeueSelection, now: Date) async throws -> RequeueSummary

    func status(now: Date) async throws -> QueueStatus

    /// Streams audit rows matching `filter`, oldest first, in one read transaction.
    func auditEntries(_ filter: AuditFilter, _ body: (AuditEntry) throws -> Void) async throws

    /// The audit chain's last row, for the journal and `status`.
    func auditHead() async throws -> QueueStatus.AuditHead?

    /// Walks the audit chain in the database (``AuditChain``) from the archive's last
    /// checkpoint, and stops at the first row that breaks it. `walker`: a walk of the archives
    /// (``ArchiveVerifier``) to continue, which must end where the checkpoint says.
    func verifyAuditChain(continuing walker: AuditVerification.Walker?) async throws -> AuditVerification

    // Retention (docs/database.md, "Retention"): ``Pruner`` drives these.

    /// The archive's checkpoints, oldest first (none before the first prune).
    func archiveCheckpoints() async throws -> [ArchiveCheckpoint]

    /// The last checkpoint alone (nil before the first prune): where a prune goes on from.
    func lastArchiveCheckpoint() async throws -> ArchiveCheckpoint?

    /// The next batch to move after `position` (``PruneCut``), read without the write lock;
    /// nil when nothing can move.
    func planPrune(after position: ChainPosition, cutoff: Date, targetRows: Int) async throws -> PrunePlan?

    /// Records `checkpoint` and deletes what `plan` holds, in one short transaction; its
    /// archive file is written and synced already.
    func commitPrune(_ plan: PrunePlan, checkpoint: ArchiveCheckpoint) async throws -> PruneCommit

    /// The database's size in bytes, for the metrics; nil where the store cannot say.
    func databaseSize() async throws -> Int?

    /// Checks every task against its audit rows (``ConsistencyReport``).
    func checkConsistency() async throws -> ConsistencyReport

    /// Closes the store's connections; its owner calls it last. (SQLite closes its file when
    /// the store is released, and has nothing to do here.)
    func close() async
}

extension QueueOperations {
    /// The chain in the database alone, from the last checkpoint.
    public func verifyAuditChain() async throws -> AuditVerification {
        try await verifyAuditChain(continuing: nil)
    }

    public func enqueue(_ items: [EnqueueItem], now: Date) async throws -> EnqueueSummary {
        try await enqueue(EnqueueList(items), now: now)
    }
}

/// Both halves: what every store implements.
public typealias QueueStore = WorkQueue & QueueOperations
