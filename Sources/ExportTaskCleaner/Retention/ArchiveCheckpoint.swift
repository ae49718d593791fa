/// One archive file as the database records it (`audit_archive`, docs/database.md,
/// "Retention"): which audit rows it holds, the last one's hash, and the file's SHA-256. The
/// last checkpoint is where the chain in the database starts.
public struct ArchiveCheckpoint: Sendable, Equatable, Codable {
    public var sequence: Int
    public var file: String
    public var firstID: Int
    public var lastID: Int
    public var lastHash: String
    public var sha256: String
    public var rows: Int
    public var tasks: Int
    public var archivedAt: String
    public var runner: String

    public init(sequence: Int, file: String, firstID: Int, lastID: Int, lastHash: String, sha256: String,
                rows: Int, tasks: Int, archivedAt: String, runner: String) {
        self.sequence = sequence
        self.file = file
        self.firstID = firstID
        self.lastID = lastID
        self.lastHash = lastHash
        self.sha256 = sha256
        self.rows = rows
        self.tasks = tasks
        self.archivedAt = archivedAt
        self.runner = runner
    }
}

/// What a prune moved, or (`--dry-run`) would move.
public struct PruneSummary: Sendable, Equatable {
    /// Audit rows and tasks that left the database (or would).
    public var auditRows = 0
    public var tasks = 0
    /// The files written, in chain order (none on a dry run).
    public var files: [String] = []
    /// The audit row IDs moved, first and last.
    public var firstID: Int?
    public var lastID: Int?
    /// Batches committed, and the longest time one held the write lock.
    public var batches = 0
    public var longestLockHold: Duration = .zero
    /// Leftovers of an interrupted prune removed (files whose rows were all still in the database).
    public var leftoversRemoved: [String] = []
    /// Why pruning stopped before `cutoff`: a task still in its cycle holds the chain there.
    public var heldAt: Int?

    public init() {}

    mutating func add(_ batch: PruneBatch, file: String?, lockHold: Duration) {
        auditRows += batch.rows
        tasks += batch.taskCount
        if let file { files.append(file) }
        if firstID == nil { firstID = batch.firstID }
        lastID = batch.lastID
        batches += 1
        longestLockHold = max(longestLockHold, lockHold)
    }
}

/// One batch: audit rows `firstID...lastID` and the tasks whose history ends in them.
package struct PruneBatch: Sendable, Equatable {
    package var firstID: Int
    package var lastID: Int
    package var rows: Int { lastID - firstID + 1 }
    package var taskCount: Int
}
