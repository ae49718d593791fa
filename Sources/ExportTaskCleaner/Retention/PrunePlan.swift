/// Where the audit chain in the database starts: the last checkpoint's row and hash (row 0 and
/// the genesis hash before any prune), and that checkpoint's sequence number.
public struct ChainPosition: Sendable, Equatable {
    public var lastID: Int
    public var hash: String
    public var sequence: Int

    public static let start = ChainPosition(lastID: 0, hash: AuditChain.genesis, sequence: 0)

    public init(lastID: Int, hash: String, sequence: Int) {
        self.lastID = lastID
        self.hash = hash
        self.sequence = sequence
    }

    init(_ checkpoint: ArchiveCheckpoint?) {
        self = checkpoint.map { ChainPosition(lastID: $0.lastID, hash: $0.lastHash, sequence: $0.sequence) } ?? .start
    }
}

/// A batch a store found to move (``PruneCut``): its audit rows, already checked against the
/// chain from `after`, and the tasks whose history ends in them.
public struct PrunePlan: Sendable {
    public var after: ChainPosition
    public var entries: [AuditEntry]
    public var tasks: [ArchivedTask]
    /// Leaving tasks whose history goes on after this batch: what its rows counted.
    public var carries: [PruneCarry] = []
    /// The row of a task still in its cycle that held the batch there, if one did.
    public var heldAt: Int?

    public init(after: ChainPosition, entries: [AuditEntry], tasks: [ArchivedTask], carries: [PruneCarry] = [], heldAt: Int?) {
        self.after = after
        self.entries = entries
        self.tasks = tasks
        self.carries = carries
        self.heldAt = heldAt
    }

    package var batch: PruneBatch? {
        guard let first = entries.first, let last = entries.last else { return nil }
        return PruneBatch(firstID: first.id, lastID: last.id, taskCount: tasks.count)
    }

    /// The position after this batch.
    var next: ChainPosition? {
        guard let last = entries.last, let hash = last.hash else { return nil }
        return ChainPosition(lastID: last.id, hash: hash, sequence: after.sequence + 1)
    }
}

/// What committing a batch did.
public struct PruneCommit: Sendable, Equatable {
    /// False when another prune moved the checkpoint first: nothing was changed.
    public var committed: Bool
    /// Tasks deleted (a task requeued since it was planned stays, its copy in the archive too).
    public var tasksDeleted: Int
    /// How long the transaction held the database's write lock.
    public var lockHold: Duration

    public init(committed: Bool, tasksDeleted: Int, lockHold: Duration) {
        self.committed = committed
        self.tasksDeleted = tasksDeleted
        self.lockHold = lockHold
    }
}
