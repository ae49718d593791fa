import FoundationEssentials

/// `audit --task ID --archive DIR` (docs/commands.md): a task's archived audit rows, file by
/// file, with the checkpoint that says when and where they went.
public enum TaskArchiveSearch {
    public struct Found: Sendable {
        public var checkpoint: ArchiveCheckpoint
        public var rows: [AuditEntry]
    }

    /// Reads every recorded file (each checked against its SHA-256) for rows of `exportTaskID`.
    public static func rows(of exportTaskID: String, checkpoints: [ArchiveCheckpoint], folder: String) throws -> [Found] {
        var result: [Found] = []
        for checkpoint in checkpoints {
            // The name is a database column: only the name export-task-cleaner gives the range
            // is opened (never `../…`), as `audit --verify --archive` requires too.
            guard checkpoint.file == ArchiveFiles.name(firstID: checkpoint.firstID, lastID: checkpoint.lastID) else {
                throw CleanerError.runtime("audit --archive: checkpoint \(checkpoint.sequence) names \(IDList.quoted(checkpoint.file)) for rows \(checkpoint.firstID) to \(checkpoint.lastID): not the name export-task-cleaner gives them")
            }
            var rows: [AuditEntry] = []
            do {
                try ArchiveReader.read(checkpoint, folder: folder) { item, _ in
                    if case .audit(let entry) = item, entry.exportTaskID == exportTaskID { rows.append(entry) }
                    return true
                }
            } catch {
                throw CleanerError.runtime("audit --archive: \(TextFormat.printable("\(error)"))")
            }
            if !rows.isEmpty { result.append(Found(checkpoint: checkpoint, rows: rows)) }
        }
        return result
    }
}

extension AuditFilter {
    /// Whether an archived row passes the filter's outcome and time (its task's state is gone
    /// with it, so `--state` does not apply).
    public func matches(_ entry: AuditEntry) -> Bool {
        if let exportTaskID, entry.exportTaskID != exportTaskID { return false }
        if let outcome, entry.outcome != outcome.rawValue { return false }
        if let since, entry.at < Timestamp.format(since) { return false }
        return true
    }
}
