@testable import ExportTaskCleaner
import Foundation
import Logging
import PostgresNIO
import Testing

/// The claim's plan on a table the planner has no statistics for: what a feeder's bulk INSERT
/// leaves until autovacuum's next ANALYZE (docs/benchmarks.md, "With the PostgreSQL store").
@Suite("PostgreSQL claim plan", .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipComment),
       .timeLimit(.minutes(2)))
struct PostgresClaimPlanTests {
    private let logger = PostgresTestDatabase.logger

    /// The lines of `EXPLAIN` for the store's claim on `connection`.
    private func claimPlan(_ connection: PostgresConnection) async throws -> String {
        let claim = PostgresQueueStore.claimQuery(limit: 32, leaseToken: "plan", leaseUntil: Date() + 60, now: Date())
        var lines: [String] = []
        let rows = try await connection.query(PostgresQuery(unsafeSQL: "EXPLAIN " + claim.sql, binds: claim.binds), logger: logger)
        for try await line in rows.decode(String.self) { lines.append(line) }
        return lines.joined(separator: "\n")
    }

    @Test("20,000 rows a feeder just inserted, never analyzed: the claim reads them in order from its index, no bitmap scan and sort")
    func claimUsesItsIndexWithoutStatistics() async throws {
        try await PostgresTestDatabase.withSchema { client, schema in
            _ = try await PostgresSchema.migrate(client, logger: logger)
            // Autovacuum off for this table alone, so that no ANALYZE can come in the test's way.
            try await client.query("ALTER TABLE export_tasks SET (autovacuum_enabled = false)", logger: logger)
            try await client.query("""
                INSERT INTO export_tasks (export_task_id) SELECT 'plan-' || g FROM generate_series(1, 20000) AS g
                """, logger: logger)
            let neverAnalyzed = try await PostgresTestDatabase.value(
                client, "SELECT reltuples::bigint FROM pg_class WHERE oid = 'export_tasks'::regclass", as: Int.self)
            #expect(neverAnalyzed == -1)

            let unplanned = try await client.withConnection { try await claimPlan($0) }
            #expect(unplanned.contains("Bitmap Heap Scan") && unplanned.contains("Sort"),
                    "the premise: a session planning as by default fetches every due row and sorts them\n\(unplanned)")

            // The service's own sessions.
            let url = try PostgresURL(PostgresTestDatabase.url ?? "")
            let store = try await PostgresQueueStore.open(
                url: url, password: PostgresHarness.password, purpose: .service, searchPath: schema, logger: logger)
            let plan = try await store.read { try await claimPlan($0) }
            await store.close()
            #expect(plan.contains("Index Scan using export_tasks_due"), "\(plan)")
            #expect(!plan.contains("Bitmap") && !plan.contains("Sort"), "\(plan)")
        }
    }
}
