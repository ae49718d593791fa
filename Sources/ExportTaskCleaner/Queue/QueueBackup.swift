/// A store that writes a consistent copy of itself to a file, while the service runs: the
/// SQLite store (docs/operations.md, "Backup and restore"). A PostgreSQL database is backed up
/// with PostgreSQL's own tools (`pg_dump`), which the docs name instead.
public protocol QueueBackup: Sendable {
    /// Writes the copy to `path`, which must not exist; a crash leaves `path` whole or absent.
    func backup(to path: String) async throws -> BackupSummary
}

/// What `backup` wrote, read back from the copy itself.
public struct BackupSummary: Sendable, Equatable {
    public var path: String
    public var bytes: Int
    /// Tasks in the copy, in every state.
    public var tasks: Int
    /// The copy's last audit row: its ID and hash, where an auditor ties it to the chain.
    public var auditHead: QueueStatus.AuditHead?
}
