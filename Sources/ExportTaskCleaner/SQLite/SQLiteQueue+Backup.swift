import CSQLite
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// `backup PATH` (docs/operations.md, "Backup and restore"): a consistent copy of a live queue.

extension SQLiteQueue {
    /// Writes a consistent copy of the queue to `destination`, which must not exist, and
    /// describes it.
    ///
    /// `VACUUM INTO` reads one snapshot in a read transaction, so the service and the feeders
    /// go on writing meanwhile (WAL); the copy is compact, a file of its own with no `-wal`.
    /// It is written beside `destination` under a hidden name, checked
    /// (`PRAGMA quick_check`, the schema, the counts and the audit chain's head), synced, and
    /// only then linked to `destination` (never replacing a file that appeared meanwhile) and
    /// the folder synced: `destination` is a whole backup or nothing, even after a crash.
    package func backup(to destination: String) throws -> BackupSummary {
        let partial = try Self.partialPath(for: destination)
        // Made empty first, owner and group only (VACUUM INTO writes into an empty file), so
        // the copy is never readable by others, not even for a moment.
        unlink(partial)
        let descriptor = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard descriptor >= 0 else {
            throw CleanerError.runtime("backup: cannot create \(partial): \(String(cString: strerror(errno)))")
        }
        fchmod(descriptor, 0o640)
        close(descriptor)
        defer { unlink(partial) }
        try withConnection { db in
            let vacuum = try db.prepare("VACUUM INTO ?1")
            vacuum.bind(partial, at: 1)
            defer { vacuum.reset() }
            while try vacuum.step() {}
        }
        let summary = try Self.describeCopy(at: partial, destination: destination)
        try Self.sync(path: partial, directory: false)
        guard link(partial, destination) == 0 else {
            let code = errno
            throw CleanerError.runtime("backup: cannot write \(destination): \(String(cString: strerror(code)))")
        }
        try Self.sync(path: Self.directory(of: destination), directory: true)
        return summary
    }

    /// The hidden name the copy is written under, beside `destination`; refuses a destination
    /// that exists (the queue itself among them) or whose folder does not.
    private static func partialPath(for destination: String) throws -> String {
        guard !destination.isEmpty, !destination.hasSuffix("/") else {
            throw CleanerError.configuration("backup: give the path of the file to write, not a folder")
        }
        var status = stat()
        guard lstat(destination, &status) != 0 else {
            throw CleanerError.configuration("backup: \(destination) exists; a backup never replaces a file")
        }
        let folder = directory(of: destination)
        guard stat(folder, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR else {
            throw CleanerError.configuration("backup: the folder \(folder) does not exist")
        }
        let slash = destination.lastIndex(of: "/")
        let prefix = slash.map { String(destination[...$0]) } ?? ""
        let name = slash.map { String(destination[destination.index(after: $0)...]) } ?? destination
        return prefix + ".\(name).partial-\(getpid())"
    }

    private static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Opens the copy read only and describes it, or throws when it is not a whole queue.
    private static func describeCopy(at partial: String, destination: String) throws -> BackupSummary {
        do {
            let copy = try SQLiteConnection(path: partial, mode: .readOnly)
            let check = try copy.prepare("PRAGMA quick_check")
            var problems: [String] = []
            while try check.step() { problems.append(check.string(0)) }
            check.reset()
            guard problems == ["ok"] else {
                throw CleanerError.runtime("backup: the copy failed SQLite's check (\(problems.prefix(3).joined(separator: "; "))); nothing was written")
            }
            try SQLiteSchema.check(copy)
            let tasks = try copy.scalarInt("SELECT count(*) FROM export_tasks") ?? 0
            // Every row archived: the chain's head is the last checkpoint's.
            let last = try chainHead(copy).map { QueueStatus.AuditHead(id: $0.id, hash: $0.hash) }
            return BackupSummary(path: destination, bytes: fileSize(partial), tasks: tasks, auditHead: last)
        } catch let error as SQLiteError {
            throw CleanerError.runtime("backup: the copy cannot be read back (\(error.message)); nothing was written")
        }
    }

    private static func fileSize(_ path: String) -> Int {
        var status = stat()
        return stat(path, &status) == 0 ? Int(status.st_size) : 0
    }

    private static func sync(path: String, directory: Bool) throws {
        let descriptor = open(path, O_RDONLY | (directory ? O_DIRECTORY : 0))
        guard descriptor >= 0 else {
            throw CleanerError.runtime("backup: cannot open \(path) to sync it: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else {
            throw CleanerError.runtime("backup: cannot sync \(path): \(String(cString: strerror(errno)))")
        }
    }
}
