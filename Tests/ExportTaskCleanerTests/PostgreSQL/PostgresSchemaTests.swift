@testable import ExportTaskCleaner
import Logging
import PostgresNIO
import Testing

/// The PostgreSQL schema on a real server (issue 22): migrations, the advisory lock, the
/// append-only audit log, feeding with a plain INSERT and its NOTIFY, a newer version refused.
/// Each test works in a schema of its own (``PostgresTestDatabase``). Skipped, with a message
/// saying so, when EXPORT_TASK_CLEANER_TEST_POSTGRES_URL is not set.
@Suite("PostgreSQL schema", .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipComment),
       .timeLimit(.minutes(2)))
struct PostgresSchemaTests {
    private let logger = PostgresTestDatabase.logger

    private func versionRows(_ client: PostgresClient) async throws -> Int {
        try await PostgresTestDatabase.value(client, "SELECT count(*)::bigint FROM export_task_cleaner_schema", as: Int.self) ?? -1
    }

    @Test("a new schema is migrated to the current version; migrating again changes nothing")
    func migrateTwice() async throws {
        try await PostgresTestDatabase.withSchema { client, schema in
            let first = try await PostgresSchema.migrate(client, logger: logger)
            #expect(first == .init(from: 0, to: PostgresSchema.currentVersion))
            let second = try await PostgresSchema.migrate(client, logger: logger)
            #expect(second == .init(from: PostgresSchema.currentVersion, to: PostgresSchema.currentVersion))
            #expect(try await versionRows(client) == PostgresSchema.currentVersion)
            let checked = try await client.withConnection { try await PostgresSchema.check($0, logger: logger) }
            #expect(checked == PostgresSchema.currentVersion)
            // Every table in the test's schema, none elsewhere.
            let tables = try await PostgresTestDatabase.value(client, """
                SELECT string_agg(table_name::text, ',' ORDER BY table_name) FROM information_schema.tables
                WHERE table_schema = \(schema)
                """, as: String.self)
            #expect(tables == "audit_archive,audit_archive_carry,audit_log,export_task_cleaner_schema,export_tasks,service_heartbeat")
        }
    }

    /// Both migrations are made to wait on the advisory lock (held here) before either can
    /// start, so the test does not depend on timing: when it is let go, one migrates and the
    /// other finds the work done.
    @Test("two migrations at once on a new schema: one migrates, the other waits and finds it done")
    func concurrentMigrations() async throws {
        try await PostgresTestDatabase.withSchema { client, schema in
            let key = PostgresSchema.migrationLockKey
            let results = try await client.withConnection { holder in
                try await holder.query("SELECT pg_advisory_lock(\(key))", logger: logger)
                return try await withThrowingTaskGroup(of: PostgresSchema.Migration.self) { group in
                    for _ in 0..<2 {
                        group.addTask { try await PostgresSchema.migrate(client, logger: logger) }
                    }
                    // This test's sessions (its application_name) waiting for the migration lock.
                    let waiting = try await PostgresTestDatabase.waitUntil(within: .seconds(20)) {
                        try await PostgresTestDatabase.value(client, """
                            SELECT count(*)::bigint FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a USING (pid)
                            WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = \(schema)
                                AND l.classid::bigint = \(key >> 32) AND l.objid::bigint = \(key & 0xFFFF_FFFF) AND l.objsubid = 1
                            """, as: Int.self) == 2
                    }
                    try await holder.query("SELECT pg_advisory_unlock(\(key))", logger: logger)
                    #expect(waiting, "both migrations wait for the advisory lock")
                    var results: [PostgresSchema.Migration] = []
                    for try await result in group { results.append(result) }
                    return results
                }
            }
            let current = PostgresSchema.currentVersion
            #expect(results.sorted { $0.from < $1.from } == [.init(from: 0, to: current), .init(from: current, to: current)])
            #expect(try await versionRows(client) == current)
        }
    }

    @Test("audit_log refuses UPDATE, DELETE and TRUNCATE, even for the role that owns it")
    func auditLogAppendOnly() async throws {
        try await PostgresTestDatabase.withSchema { client, _ in
            try await PostgresSchema.migrate(client, logger: logger)
            let hash = String(repeating: "a", count: 64)
            try await client.query("""
                INSERT INTO audit_log (id, task_id, export_task_id, outcome, runner, hash)
                VALUES (1, 1, 'x', 'requeued', 'host:1', \(hash))
                """, logger: logger)
            let refused: [(PostgresQuery, String)] = [
                ("UPDATE audit_log SET error_message = 'edited'", "audit_log is append-only: UPDATE refused"),
                ("DELETE FROM audit_log WHERE id = 1", "audit_log is append-only: DELETE refused"),
                ("TRUNCATE audit_log", "audit_log is append-only: TRUNCATE refused"),
                // A replace in place goes through the UPDATE trigger.
                ("""
                 INSERT INTO audit_log (id, export_task_id, outcome, runner, hash) VALUES (1, 'y', 'requeued', 'h:2', \(hash))
                 ON CONFLICT (id) DO UPDATE SET export_task_id = excluded.export_task_id
                 """, "audit_log is append-only: UPDATE refused"),
                ("INSERT INTO audit_log (id, export_task_id, outcome, runner, hash) VALUES (1, 'y', 'requeued', 'h:2', \(hash))",
                 "duplicate key value violates unique constraint \"audit_log_pkey\""),
                ("INSERT INTO audit_log (id, export_task_id, outcome, runner) VALUES (2, 'y', 'requeued', 'h:2')",
                 "null value in column \"hash\""),
            ]
            for (statement, message) in refused {
                let error = await #expect(throws: PSQLError.self) { try await client.query(statement, logger: logger) }
                #expect(error.map { PostgresTestDatabase.serverMessage($0) }?.contains(message) == true,
                        "\(error.map { PostgresTestDatabase.serverMessage($0) } ?? "accepted")")
            }
            let row = try await PostgresTestDatabase.value(client, "SELECT export_task_id || ' ' || hash FROM audit_log", as: String.self)
            #expect(row == "x " + hash)
        }
    }

    /// The feeder's whole job: `INSERT (export_task_id)`. Every other column takes its
    /// default, and a service LISTENing hears of it at once, from this schema.
    @Test("a plain INSERT of an export task ID feeds the queue and notifies a listener")
    func feedAndNotify() async throws {
        try await PostgresTestDatabase.withSchema { client, schema in
            try await PostgresSchema.migrate(client, logger: logger)
            let notification = try await client.withConnection { listener in
                try await listener.listen(on: PostgresSchema.notificationChannel) { notifications in
                    try await client.query("INSERT INTO export_tasks (export_task_id) VALUES ('x')", logger: logger)
                    return try await PostgresTestDatabase.first(of: notifications, payload: schema, within: .seconds(10))
                }
            }
            #expect(notification?.payload == schema)
            let row = try await PostgresTestDatabase.value(client, """
                SELECT concat_ws(' ', id IS NOT NULL, project_id IS NULL, instance_id IS NULL, state, attempts, unanswered_attempts,
                    enqueued_at = next_attempt_at, next_attempt_at <= now(), date_trunc('milliseconds', enqueued_at) = enqueued_at,
                    finished_at IS NULL, lease_token IS NULL, lease_expires_at IS NULL)
                FROM export_tasks WHERE export_task_id = 'x'
                """, as: String.self)
            #expect(row == "t t t pending 0 0 t t t t t t")

            // With a project and an instance; an id from another sequence; one task per
            // (project, ID), NULL standing for the configured project (so '' is the same).
            try await client.query("INSERT INTO export_tasks (export_task_id, project_id, instance_id) VALUES ('x', 'p1', 'i1')", logger: logger)
            try await client.query("INSERT INTO export_tasks (id, export_task_id) VALUES (9000000000, 'y')", logger: logger)
            try await client.query("INSERT INTO export_tasks (export_task_id) VALUES ('x') ON CONFLICT DO NOTHING", logger: logger)
            let duplicate = await #expect(throws: PSQLError.self) {
                try await client.query("INSERT INTO export_tasks (export_task_id, project_id) VALUES ('x', '')", logger: logger)
            }
            #expect(duplicate.map { PostgresTestDatabase.serverMessage($0) }?.contains("export_tasks_unique") == true)
            let count = try await PostgresTestDatabase.value(client, "SELECT count(*)::bigint FROM export_tasks", as: Int.self)
            #expect(count == 3)
            let invalid = await #expect(throws: PSQLError.self) {
                try await client.query("INSERT INTO export_tasks (export_task_id, state) VALUES ('z', 'gone')", logger: logger)
            }
            #expect(invalid.map { PostgresTestDatabase.serverMessage($0) }?.contains("check constraint") == true)
        }
    }

    @Test("a schema of a newer version is refused, untouched")
    func newerVersionRefused() async throws {
        try await PostgresTestDatabase.withSchema { client, _ in
            try await PostgresSchema.migrate(client, logger: logger)
            let newer = PostgresSchema.currentVersion + 1
            try await client.query("INSERT INTO export_task_cleaner_schema (version) VALUES (\(newer))", logger: logger)
            let error = await #expect(throws: CleanerError.self) { try await PostgresSchema.migrate(client, logger: logger) }
            #expect(error?.code == .runtime)
            #expect(error?.message.contains("has schema version \(newer), but this export-task-cleaner only knows versions up to \(newer - 1)") == true,
                    "\(error?.message ?? "")")
            let checkError = await #expect(throws: CleanerError.self) {
                try await client.withConnection { try await PostgresSchema.check($0, logger: logger) }
            }
            #expect(checkError?.message.contains("only knows versions up to") == true)
            #expect(try await versionRows(client) == newer)
            #expect(try await PostgresTestDatabase.value(client, "SELECT max(version) FROM export_task_cleaner_schema", as: Int.self) == newer)
        }
    }

    @Test("tables of the queue's names without a schema version are someone else's: nothing is created")
    func foreignTablesRefused() async throws {
        try await PostgresTestDatabase.withSchema { client, schema in
            try await client.query("CREATE TABLE export_tasks (anything integer)", logger: logger)
            let error = await #expect(throws: CleanerError.self) { try await PostgresSchema.migrate(client, logger: logger) }
            #expect(error?.code == .configuration)
            #expect(error?.message.contains("holds export_tasks but no export-task-cleaner schema version") == true, "\(error?.message ?? "")")
            let tables = try await PostgresTestDatabase.value(client, """
                SELECT string_agg(table_name::text, ',') FROM information_schema.tables WHERE table_schema = \(schema)
                """, as: String.self)
            #expect(tables == "export_tasks")
            let checkError = await #expect(throws: CleanerError.self) {
                try await client.withConnection { try await PostgresSchema.check($0, logger: logger) }
            }
            #expect(checkError?.code == .configuration)
        }
    }

    @Test("the read-only check refuses a schema with no queue, changing nothing")
    func checkWithoutQueue() async throws {
        try await PostgresTestDatabase.withSchema { client, _ in
            let error = await #expect(throws: CleanerError.self) {
                try await client.withConnection { try await PostgresSchema.check($0, logger: logger) }
            }
            #expect(error?.message.contains("no export-task-cleaner queue in the schema") == true)
            let version = try await client.withConnection { try await PostgresSchema.installedVersion($0, logger: logger) }
            #expect(version == 0)
        }
    }
}

/// A call on a server that does not answer ends at its bound (docs/database.md, "PostgreSQL"):
/// the connection is closed under it, as it would be under a server gone silent.
@Suite("PostgreSQL store: calls are bounded", .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipComment))
struct PostgresBoundedCallTests {
    @Test("a statement still running at the bound fails as unavailable, within about the bound")
    func boundedCall() async throws {
        try await PostgresTestDatabase.withSchema { client, _ in
            let start = ContinuousClock.now
            let error = await #expect(throws: (any Error).self) {
                try await PostgresQueueStore.bounded(client, .seconds(1)) { connection in
                    try await connection.query("SELECT pg_sleep(30)", logger: PostgresTestDatabase.logger)
                    return 1
                }
            }
            #expect(error != nil)
            #expect(ContinuousClock.now - start < .seconds(10))
            // The pool is still usable afterwards.
            let one = try await PostgresTestDatabase.value(client, "SELECT 1", as: Int.self)
            #expect(one == 1)
        }
    }
}
