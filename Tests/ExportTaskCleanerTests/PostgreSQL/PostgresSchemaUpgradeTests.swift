@testable import ExportTaskCleaner
import Logging
import PostgresNIO
import Testing

/// Versions 2 and 3 of the PostgreSQL schema (docs/database.md): a queue of an older version
/// with rows in it is migrated; version 2 allows `queued` audit rows, nothing else new;
/// version 3 adds retention's checkpoints, and lets audit rows leave at or below the last one.
@Suite("PostgreSQL schema: the upgrades to versions 2 and 3", .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipComment),
       .timeLimit(.minutes(2)))
struct PostgresSchemaUpgradeTests {
    private let logger = PostgresTestDatabase.logger

    private func insertAudit(_ client: PostgresClient, outcome: String) async throws {
        try await client.query(PostgresQuery(unsafeSQL: """
            INSERT INTO audit_log (export_task_id, outcome, runner, hash) VALUES ('t-1', '\(outcome)', 'h:1', 'x')
            """), logger: logger)
    }

    @Test("a version 1 queue with audit rows is migrated to the current version; 'queued' is then allowed")
    func upgrade() async throws {
        try await PostgresTestDatabase.withSchema { client, _ in
            for statement in PostgresSchema.migrations[0] {
                try await client.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            try await client.query("INSERT INTO export_task_cleaner_schema (version) VALUES (1)", logger: logger)
            try await insertAudit(client, outcome: "deleted")
            await #expect(throws: (any Error).self) { try await insertAudit(client, outcome: "queued") }

            let migration = try await PostgresSchema.migrate(client, logger: logger)
            #expect(migration == .init(from: 1, to: PostgresSchema.currentVersion))
            try await insertAudit(client, outcome: "queued")
            await #expect(throws: (any Error).self) { try await insertAudit(client, outcome: "bogus") }
            #expect(try await PostgresTestDatabase.value(client, "SELECT count(*)::bigint FROM audit_log", as: Int.self) == 2)
        }
    }

    private func refused(_ client: PostgresClient, _ sql: String, _ message: String) async {
        do {
            try await client.query(PostgresQuery(unsafeSQL: sql), logger: logger)
            Issue.record("allowed, and should not be: \(sql)")
        } catch {
            #expect(PostgresTestDatabase.serverMessage(error) == message, "\(sql)")
        }
    }

    @Test("a version 2 queue with audit rows is migrated to version 3: rows leave only at or below a checkpoint")
    func upgradeToRetention() async throws {
        try await PostgresTestDatabase.withSchema { client, _ in
            for statement in PostgresSchema.migrations[0] + PostgresSchema.migrations[1] {
                try await client.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            try await client.query("INSERT INTO export_task_cleaner_schema (version) VALUES (1), (2)", logger: logger)
            for outcome in ["deleted", "queued", "deleted"] { try await insertAudit(client, outcome: outcome) }

            let migration = try await PostgresSchema.migrate(client, logger: logger)
            #expect(migration == .init(from: 2, to: 3))
            #expect(PostgresSchema.currentVersion == 3)
            #expect(try await PostgresTestDatabase.value(client, "SELECT count(*)::bigint FROM audit_log", as: Int.self) == 3)
            let archived = "audit_log is append-only: DELETE refused (only rows archived at a checkpoint may leave)"
            await refused(client, "DELETE FROM audit_log WHERE id = 1", archived)
            await refused(client, "UPDATE audit_log SET runner = 'x'", "audit_log is append-only: UPDATE refused")
            await refused(client, "TRUNCATE audit_log", "audit_log is append-only: TRUNCATE refused")
            let forged = "audit_archive: a checkpoint must follow the last one and end at a row of audit_log with its hash"
            func checkpoint(_ seq: Int, _ first: Int, _ last: Int, _ hash: String) -> String {
                """
                INSERT INTO audit_archive (seq, file, first_id, last_id, last_hash, sha256, rows, tasks, archived_at, runner)
                VALUES (\(seq), 'f', \(first), \(last), '\(hash)', 's', \(last - first + 1), 0, now(), 'h:1')
                """
            }
            await refused(client, checkpoint(2, 1, 2, "x"), forged)
            await refused(client, checkpoint(1, 2, 2, "x"), forged)
            await refused(client, checkpoint(1, 1, 2, "y"), forged)
            await refused(client, checkpoint(1, 1, 9, "x"), forged)
            // A checkpoint at row 2: rows 1 and 2 may leave, row 3 not; no ID at or below 2 comes back.
            try await client.query(PostgresQuery(unsafeSQL: checkpoint(1, 1, 2, "x")), logger: logger)
            try await client.query("DELETE FROM audit_log WHERE id <= 2", logger: logger)
            await refused(client, "DELETE FROM audit_log WHERE id = 3", archived)
            await refused(client, "INSERT INTO audit_log (id, export_task_id, outcome, runner, hash) VALUES (2, 't-1', 'deleted', 'h:1', 'x')",
                          "audit_log is append-only: an ID at or below the archive checkpoint is refused")
            await refused(client, "UPDATE audit_archive SET sha256 = 'x'", "audit_archive is append-only: UPDATE refused")
            await refused(client, "DELETE FROM audit_archive", "audit_archive is append-only: DELETE refused")
            await refused(client, "TRUNCATE audit_archive", "audit_archive is append-only: TRUNCATE refused")
            #expect(try await PostgresTestDatabase.value(client, "SELECT count(*)::bigint FROM audit_log", as: Int.self) == 1)
        }
    }
}
