import CSQLite

/// A failed SQLite call, carrying SQLite's own code and message.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    /// The extended result code (`sqlite3_extended_errcode`).
    public var code: Int32
    public var message: String
    /// What we were doing, e.g. "opening /var/lib/…/queue.sqlite3" or the statement's first words.
    public var context: String

    public init(code: Int32, message: String, context: String) {
        self.code = code
        self.message = message
        self.context = context
    }

    /// The primary result code (`SQLITE_BUSY`, `SQLITE_CONSTRAINT`, ...).
    public var primaryCode: Int32 { code & 0xFF }

    /// True for the transient failures a writer may retry: the database was busy or locked.
    public var isBusy: Bool { primaryCode == SQLITE_BUSY || primaryCode == SQLITE_LOCKED }

    /// The file is damaged (or not a database at all): trying again cannot help.
    public var isCorruption: Bool { primaryCode == SQLITE_CORRUPT || primaryCode == SQLITE_NOTADB }

    public var description: String {
        "SQLite error \(code) (\(String(cString: sqlite3_errstr(code)))) while \(context): \(message)"
    }
}

extension SQLiteError {
    /// The store-neutral error the service acts on (``StoreError``).
    package var storeError: StoreError {
        switch primaryCode {
        case SQLITE_CORRUPT, SQLITE_NOTADB:
            return StoreError(.corrupt, description)
        case SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOMEM,
             SQLITE_PROTOCOL, SQLITE_INTERRUPT:
            return StoreError(.unavailable, description)
        default:
            return StoreError(.refused, description)
        }
    }
}
