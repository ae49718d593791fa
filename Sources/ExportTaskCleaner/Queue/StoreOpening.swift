import FoundationEssentials
import Logging

/// What a command opens the queue for.
public enum StorePurpose: Sendable, Equatable {
    /// `status`, `audit`: read only. The queue must exist and be of this release; it is never
    /// created or migrated, and nothing is written to it.
    case inspect
    /// `enqueue`, `requeue`: created when missing and migrated; another application's
    /// database is refused untouched.
    case write
    /// `run`: as `write`, and the store prepares what the service needs (PostgreSQL: a
    /// connection that listens for new tasks, a pool sized for the service).
    case service
}

/// Opens the store the configuration's `database` names (docs/configuration.md): a
/// `postgresql://` URL is a PostgreSQL database, anything else a SQLite file, the embedded
/// default.
public enum StoreOpening {
    /// The store `configuration.database` names, opened for `purpose`. `concurrency` sizes a
    /// PostgreSQL pool for the service; its password is found as docs/credentials.md, "The
    /// database password", says (``PostgresPassword``), and logged by its source only.
    public static func open(configuration: Configuration, purpose: StorePurpose,
                            environment: [String: String], logger: Logger? = nil) async throws -> any QueueStore {
        let database = configuration.database
        // A URL mistyped (`postgres:/…`, `postgresql//…`) would be taken for a path and shown
        // in messages, a password in it too: refused, and not shown.
        if PostgresURL.looksMistyped(database) { throw PostgresURL.mistyped }
        guard PostgresURL.isPostgres(database) else {
            let store = try SQLiteQueueStore(path: database, purpose: purpose)
            for repair in store.repairs {
                logger?.notice("queue file permissions set", metadata: ["file": "\(repair.path)", "change": "\(repair.change)"])
            }
            return store
        }
        let url = try PostgresURL(database)
        let password = try PostgresPassword.resolve(environment: environment, credentialsFile: configuration.auth.credentialsFile)
        logger?.info("database password", metadata: ["source": "\(password.source)"])
        // A statement or two at a time per runner: claims, one group commit, renewals.
        let connections = purpose == .service ? min(16, 2 + configuration.concurrency / 16) : 2
        return try await PostgresQueueStore.open(
            url: url, password: password.password, passwordSource: password.source, purpose: purpose, connections: connections,
            logger: logger ?? Logger(label: "export-task-cleaner") { _ in SwiftLogNoOpLogHandler() })
    }
}
