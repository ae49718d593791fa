import CSQLite
import FoundationEssentials
import Logging
import Synchronization

/// The SQLite store's synchronous core: the queue in one SQLite file (WAL), shared with the
/// tools that feed it. ``SQLiteQueueStore`` puts it behind the store protocols.
///
/// One connection, serialized by a mutex; every call blocks its thread (up to the busy
/// timeout while another process writes). Every write runs in `BEGIN IMMEDIATE`; every
/// statement is prepared once and bound, never built from data.
///
/// `@unchecked Sendable`: the connection is only ever touched inside `lock.withLock`.
package final class SQLiteQueue: @unchecked Sendable {
    private let lock = Mutex(())
    private let db: SQLiteConnection
    /// Who writes: `host:pid`, recorded in every audit row.
    package let runner: String
    package let path: String
    /// What opening changed in the files' modes and groups (``QueueFiles``), for the log.
    package let repairs: [QueueFiles.Repair]

    /// The schema version this release writes (docs/database.md, "The database").
    package static var schemaVersion: Int { SQLiteSchema.currentVersion }

    /// What a command opens the queue for (``SQLiteQueueStore/Purpose``).
    package enum Purpose: Sendable {
        case inspect
        /// (A full integrity check, `PRAGMA quick_check`, would take 9 to 10 s at a million
        /// tasks: too slow for every start. Corruption shows itself as `SQLITE_CORRUPT`
        /// instead, which stops the service.)
        case write
    }

    /// Opens the database at `path` for `purpose`.
    ///
    /// Throws `CleanerError.configuration` when the path cannot be used (missing directory,
    /// no permission, another application's file, no queue yet to inspect),
    /// `CleanerError.runtime` when the file is not a usable queue (corrupt, or written by a
    /// newer release) or a feeding tool's `-wal`/`-shm` is not writable here.
    package init(path: String, runner: String = Runner.current, purpose: Purpose = .write) throws {
        self.path = path
        self.runner = runner
        let db: SQLiteConnection
        var repairs: [QueueFiles.Repair] = []
        if purpose == .inspect {
            guard FileManager.default.fileExists(atPath: path) else {
                throw CleanerError.configuration("database: there is no queue at \(path) yet (`run` or `enqueue` creates it)")
            }
        } else {
            if QueueFiles.createIfMissing(path) { repairs.append(.init(path: path, change: "created with mode 0660")) }
            try QueueFiles.checkAccess(databasePath: path)
        }
        do {
            db = try purpose == .inspect ? Self.openForReading(path) : SQLiteConnection(path: path, mode: .readWriteCreate)
            if purpose == .inspect {
                try SQLiteSchema.check(db)
            } else {
                // Nothing is changed in another application's file: not even its modes.
                try SQLiteSchema.refuseForeign(db)
                repairs += QueueFiles.repair(databasePath: path)
                try SQLiteSchema.migrate(db)
                try db.useWAL()
            }
        } catch let error as SQLiteError {
            throw Self.openingError(error, path: path, writing: purpose != .inspect)
        }
        self.db = db
        self.repairs = repairs
    }

    /// A connection that changes nothing: read-write without create when this user may write
    /// (so that, as the last one out, it tidies away `-wal` and `-shm` as SQLite does), else
    /// read only (an auditor with read access alone). No statement it runs writes.
    private static func openForReading(_ path: String) throws(SQLiteError) -> SQLiteConnection {
        do {
            return try SQLiteConnection(path: path, mode: .readWrite)
        } catch where [SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_PERM].contains(error.primaryCode) {
            return try SQLiteConnection(path: path, mode: .readOnly)
        }
    }

    private static func openingError(_ error: SQLiteError, path: String, writing: Bool) -> CleanerError {
        switch error.primaryCode {
        case SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH:
            let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? ""
            let hint = FileManager.default.fileExists(atPath: directory.isEmpty ? "." : directory)
                ? "check that this user may read and write it and its directory"
                : "the directory \(directory) does not exist"
            return .configuration("database: cannot open \(path)\(writing ? " for writing" : "") (\(error.message)); \(hint)")
        case SQLITE_NOTADB, SQLITE_CORRUPT:
            return .runtime("database: \(path) is not a usable SQLite database (\(error.message)); it was left untouched")
        default:
            return .runtime("database: cannot open \(path): \(error)")
        }
    }

    /// Write transactions committed on this store's connection so far: an atomic count, read
    /// without waiting for the connection.
    package var writeTransactions: Int { db.committedWriteTransactions }

    func withConnection<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try lock.withLock { _ in try body(db) }
    }
}
