import PostgresNIO

// PostgreSQL's failures in the store-neutral terms the service acts on (``StoreError``;
// docs/operations.md, "Behaviour under failures").

extension StoreError {
    /// `error` as the store reports it: our own errors unchanged, postgres-nio's sorted by what
    /// trying again can do. postgres-nio describes its errors generically on purpose; the text
    /// here is built from the SQLSTATE and the server's message, which never hold a password.
    static func fromPostgres(_ error: any Error) -> any Error {
        switch error {
        case is StoreError, is CleanerError, is CancellationError:
            return error
        case let error as PostgresTransactionError:
            return fromPostgres(error.closureError ?? error.commitError ?? error.beginError ?? error.rollbackError
                ?? StoreError(.unavailable, "PostgreSQL: the transaction failed"))
        case let error as PSQLError:
            return fromPSQL(error)
        default:
            // The pool's own errors (no connection could be made, the pool shut down).
            return StoreError(.unavailable, "PostgreSQL: \(error)")
        }
    }

    private static func fromPSQL(_ error: PSQLError) -> StoreError {
        guard error.code == .server, let info = error.serverInfo else {
            // The connection, not the statement: closed, reset, TLS, the pool shutting down.
            return StoreError(.unavailable, "PostgreSQL: \(error.code)")
        }
        let state = info[.sqlState] ?? "?????"
        let text = "PostgreSQL error \(state): \(info[.message] ?? "")" + (info[.detail].map { " (\($0))" } ?? "")
        return StoreError(kind(sqlState: state), TextFormat.printable(text))
    }

    /// By SQLSTATE class (PostgreSQL's "Appendix A. Error Codes").
    static func kind(sqlState state: String) -> Kind {
        switch state {
        case "XX001", "XX002": return .corrupt                       // data or index corrupted
        case "40001", "40P01", "55P03", "57014": return .unavailable  // serialization, deadlock, lock or statement timeout
        default: break
        }
        switch state.prefix(2) {
        case "08", "53", "57", "58": return .unavailable  // connection, resources (a full disk), operator intervention, system
        default: return .refused
        }
    }
}
