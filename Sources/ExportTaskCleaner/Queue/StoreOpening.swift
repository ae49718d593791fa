import FoundationEssentials
import Logging

/// What a command opens the queue for.
public enum StorePurpose: Sendable, Equatable {
    /// `status`, `audit`: read only. The queue must exist and be of this release; it is never
    /// created or migrated, and nothing is written to it.
    case inspect
    /// `run`, `enqueue`, `requeue`: created when missing and migrated; another application's
    /// database is refused untouched.
    case write
}

/// Opens the store the configuration's `database` names (docs/configuration.md): a path is a
/// SQLite file, the embedded default.
public enum StoreOpening {
    public static func open(database: String, purpose: StorePurpose, logger: Logger? = nil) async throws -> any QueueStore {
        let store = try SQLiteQueueStore(path: database, purpose: purpose)
        for repair in store.repairs {
            logger?.notice("queue file permissions set", metadata: ["file": "\(repair.path)", "change": "\(repair.change)"])
        }
        return store
    }
}
