import CSQLite
import Synchronization

/// One connection to a SQLite database file, set up the way the queue needs it: a busy timeout,
/// foreign keys on, and a cache of prepared statements (`useWAL` switches the file to WAL).
///
/// Not thread-safe by itself: `SQLiteQueue` owns one behind a mutex.
public final class SQLiteConnection {
    let handle: OpaquePointer
    public let path: String
    private var statements: [String: SQLiteStatement] = [:]

    /// How long a statement waits for another connection's write lock before failing busy.
    public static let busyTimeoutMilliseconds: Int32 = 10_000

    public enum Mode: Sendable {
        /// Create the file when missing.
        case readWriteCreate
        /// Fail when the file is missing.
        case readWrite
        /// Read only: never creates the file, never changes it (not even its journal mode).
        case readOnly
    }

    public init(path: String, mode: Mode = .readWriteCreate) throws(SQLiteError) {
        var db: OpaquePointer?
        var flags = (mode == .readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        if mode == .readWriteCreate { flags |= SQLITE_OPEN_CREATE }
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close_v2(db)
            throw SQLiteError(code: rc, message: message, context: "opening \(path)")
        }
        self.handle = db
        self.path = path
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, Self.busyTimeoutMilliseconds)
        // The first read is where a file that is not a database shows itself.
        _ = try scalarInt("PRAGMA user_version")
        try execute("PRAGMA foreign_keys = ON")
    }

    /// Switches the file to WAL (a lasting property of the file: every later connection reads
    /// it so) and syncs at commit points only, as WAL allows without risking corruption.
    public func useWAL() throws(SQLiteError) {
        try execute("PRAGMA journal_mode = WAL")
        try execute("PRAGMA synchronous = NORMAL")
    }

    deinit {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    /// Runs SQL text with no parameters (one or several statements). Only for fixed SQL.
    public func execute(_ sql: String) throws(SQLiteError) {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        guard rc == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(message)
            throw SQLiteError(code: sqlite3_extended_errcode(handle), message: text,
                              context: "running \(SQLiteStatement.summary(of: sql))")
        }
    }

    /// A cached prepared statement for `sql`, reset and ready to bind.
    public func prepare(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        if let cached = statements[sql] { return cached }
        let statement = try SQLiteStatement(connection: self, sql: sql)
        statements[sql] = statement
        return statement
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, rolling back when it throws.
    ///
    /// `IMMEDIATE` takes the write lock up front, so a busy database shows up at `BEGIN`
    /// (where the busy timeout applies) rather than as a deadlock halfway through.
    public func writeTransaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            commits.add(1, ordering: .relaxed)
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Runs `body` inside a read transaction, so all its reads see one snapshot.
    public func readTransaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN DEFERRED")
        defer { try? execute("COMMIT") }
        return try body()
    }

    /// Write transactions committed through ``writeTransaction(_:)`` so far (the benchmark's
    /// transactions per delete). Atomic: read from any thread, without the connection's lock.
    private let commits = Atomic<Int>(0)
    public var committedWriteTransactions: Int { commits.load(ordering: .relaxed) }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    public var changes: Int { Int(sqlite3_changes(handle)) }

    public var lastInsertRowID: Int { Int(sqlite3_last_insert_rowid(handle)) }

    /// Runs a one-value query such as `PRAGMA user_version`.
    public func scalarInt(_ sql: String) throws(SQLiteError) -> Int? {
        let statement = try prepare(sql)
        defer { statement.reset() }
        return try statement.step() ? statement.optionalInt(0) : nil
    }

    func error(_ rc: Int32, context: String) -> SQLiteError {
        SQLiteError(code: sqlite3_extended_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), context: context)
    }
}
