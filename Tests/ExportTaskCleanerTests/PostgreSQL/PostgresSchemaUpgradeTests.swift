@testable import ExportTaskCleaner
import Logging
import PostgresNIO
import Testing

/// Version 2 of the PostgreSQL schema (docs/database.md): a queue of version 1 with rows in it
/// is migrated, and `queued` audit rows are allowed from then on, nothing else new.
@Suite("PostgreSQL schema: the upgrade to version 2", .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipComment),
       .timeLimit(.minutes(2)))
struct PostgresSchemaUpgradeTests {
    private let logger = PostgresTestDatabase.logger

    private func insertAudit(_ client: PostgresClient, outcome: String) async throws {
        try await client.query(PostgresQuery(unsafeSQL: """
            INSERT INTO audit_log (export_task_id, outcome, runner, hash) VALUES ('t-1', '\(outcome)', 'h:1', 'x')
            """), logger: logger)
    }

    @Test("a version 1 queue with audit rows is migrated to version 2; 'queued' is then allowed")
    func upgrade() async throws {
        try await PostgresTestDatabase.withSchema { client, _ in
            for statement in PostgresSchema.migrations[0] {
                try await client.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            try await client.query("INSERT INTO export_task_cleaner_schema (version) VALUES (1)", logger: logger)
            try await insertAudit(client, outcome: "deleted")
            await #expect(throws: (any Error).self) { try await insertAudit(client, outcome: "queued") }

            let migration = try await PostgresSchema.migrate(client, logger: logger)
            #expect(migration == .init(from: 1, to: 2))
            try await insertAudit(client, outcome: "queued")
            await #expect(throws: (any Error).self) { try await insertAudit(client, outcome: "bogus") }
            #expect(try await PostgresTestDatabase.value(client, "SELECT count(*)::bigint FROM audit_log", as: Int.self) == 2)
        }
    }
}
