import Logging
import PostgresNIO

// Migrating and checking the PostgreSQL schema on a live database.

extension PostgresSchema {
    /// Brings the schema to ``currentVersion`` on one of the client's connections, as the
    /// overload that takes a connection does.
    @discardableResult
    public static func migrate(_ client: PostgresClient, logger: Logger) async throws -> Migration {
        try await client.withConnection { connection in
            try await migrate(connection, logger: logger)
        }
    }

    /// Brings the schema to ``currentVersion``, in one transaction under
    /// `pg_advisory_xact_lock(migrationLockKey)`: two services starting at once migrate once,
    /// the second finding the work done when the first commits. A schema whose version is
    /// newer than this release knows, tables of the queue's names without a version of ours,
    /// or no schema to create them in are refused with a `CleanerError`, and the transaction
    /// is rolled back, so nothing is changed. A failure of the server or the connection is
    /// thrown as postgres-nio reports it (rolled back too), for the store to tell transient
    /// from permanent.
    @discardableResult
    public static func migrate(_ connection: PostgresConnection, logger: Logger) async throws -> Migration {
        let migration: Migration
        do {
            migration = try await connection.withTransaction(logger: logger) { connection in
                // Bounded: a lock held elsewhere for long fails the start rather than hang it.
                try await connection.query(PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = '\(lockTimeout)'"), logger: logger)
                // A migration may take longer than the service's statements may (the store's
                // connections set a statement_timeout): bounded by the opening's deadline instead.
                try await connection.query("SET LOCAL statement_timeout = 0", logger: logger)
                try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLockKey))", logger: logger)
                // Read under the lock: another service may have migrated while this one waited.
                let found = try await installed(connection, logger: logger)
                if found.version > currentVersion { throw newer(found) }
                guard found.version < currentVersion else { return Migration(from: found.version, to: found.version) }
                for step in found.version..<currentVersion {
                    for statement in migrations[step] {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await connection.query("INSERT INTO \(unescaped: versionTable) (version) VALUES (\(step + 1))", logger: logger)
                }
                return Migration(from: found.version, to: currentVersion)
            }
        } catch let error as PostgresTransactionError {
            // What went wrong, rather than the wrapper: a refusal above, or the server's error.
            throw error.closureError ?? error.commitError ?? error.beginError ?? error
        }
        if migration.migrated {
            logger.notice("database schema migrated", metadata: ["from": "\(migration.from)", "to": "\(migration.to)"])
        }
        return migration
    }

    /// Checks, without changing anything, that the role's default schema holds a queue of the
    /// current version: for the commands that only read (`status`, `audit`, `check`), which
    /// may run as a role that cannot migrate. Returns the version.
    @discardableResult
    public static func check(_ connection: PostgresConnection, logger: Logger) async throws -> Int {
        let found = try await installed(connection, logger: logger)
        if found.version > currentVersion { throw newer(found) }
        if found.version == 0 {
            throw CleanerError.configuration(
                "database: there is no export-task-cleaner queue in the schema \(shown(found.schema)) yet (`run` or `enqueue` creates it)")
        }
        if found.version < currentVersion {
            throw CleanerError.configuration(
                "database: the schema \(shown(found.schema)) has schema version \(found.version), older than this release's \(currentVersion); `run` or `enqueue` migrates it")
        }
        return found.version
    }

    /// The version recorded in the role's default schema: 0 when there is no version table.
    public static func installedVersion(_ connection: PostgresConnection, logger: Logger) async throws -> Int {
        try await installed(connection, logger: logger).version
    }

    private struct Installed {
        var schema: String
        var version: Int
    }

    /// The default schema and its version, or a refusal: no schema to use, or the queue's
    /// tables without a version of ours (another application's, or made by hand).
    private static func installed(_ connection: PostgresConnection, logger: Logger) async throws -> Installed {
        var schema: String?
        for try await name in try await connection.query("SELECT current_schema()::text", logger: logger).decode(String?.self) {
            schema = name
        }
        guard let schema else {
            throw CleanerError.configuration(
                "database: the role's search_path names no schema that exists, so there is nowhere for the queue's tables; create the schema it names, or set one (ALTER ROLE … SET search_path)")
        }
        // By name, whatever their kind (a view or a sequence called audit_log is in the way too).
        var tables: Set<String> = []
        let names = [versionTable] + queueTables
        let rows = try await connection.query("""
            SELECT relname::text FROM pg_catalog.pg_class
            WHERE relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
                AND relname = ANY(\(names))
            """, logger: logger)
        for try await name in rows.decode(String.self) { tables.insert(name) }
        guard tables.contains(versionTable) else {
            if !tables.isEmpty {
                throw CleanerError.configuration(
                    "database: the schema \(shown(schema)) holds \(tables.sorted().joined(separator: ", ")) but no export-task-cleaner schema version: they are not the queue's tables of any release, so nothing was changed; use another schema or database")
            }
            return Installed(schema: schema, version: 0)
        }
        var version = 0
        let versions = try await connection.query("SELECT coalesce(max(version), 0) FROM \(unescaped: versionTable)", logger: logger)
        for try await found in versions.decode(Int.self) { version = found }
        return Installed(schema: schema, version: version)
    }

    private static func newer(_ found: Installed) -> CleanerError {
        .runtime(
            "database: the schema \(shown(found.schema)) has schema version \(found.version), but this export-task-cleaner only knows versions up to \(currentVersion); upgrade export-task-cleaner, or use a copy of the database made before the upgrade that wrote it; nothing was changed")
    }

    /// A schema's name as a log line may show it: quoted, control characters escaped.
    private static func shown(_ schema: String) -> String {
        "\"" + TextFormat.printable(schema) + "\""
    }
}
