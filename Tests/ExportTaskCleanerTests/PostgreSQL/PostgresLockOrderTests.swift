@testable import ExportTaskCleaner
import Foundation
import PostgresNIO
import Testing

/// The writes that wait for row locks take them in `id` order (`requeue` always did), so two
/// of them can never wait for each other. Before, an outcome batch locked its rows in the
/// batch's order and a lease renewal in the due index's: under load, after a PostgreSQL restart
/// in the PostgreSQL system test, the server found the two deadlocked (40P01) and aborted the
/// renewal. Each test holds one row of the middle locked from another session, lets the write
/// run into it, and looks, with `SKIP LOCKED`, at which rows the write holds meanwhile: every
/// row before that one, none after it. (The claim and the lease sweep skip locked rows and
/// never wait.)
@Suite("PostgreSQL lock order", .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipComment),
       .timeLimit(.minutes(2)))
struct PostgresLockOrderTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    private let logger = PostgresTestDatabase.logger

    /// 20 tasks claimed under the lease "t", their due times in the reverse of their IDs' order
    /// (the order the due index gave a renewal); returns the harness and the claimed tasks.
    private func claimedQueue() async throws -> (PostgresHarness, [ClaimedTask]) {
        let harness = try #require(try await PostgresHarness.make(runner: "lock-order:1") as? PostgresHarness)
        _ = try await harness.store.enqueue(TestSupport.items((1...20).map { "t\($0)" }), now: now)
        try await harness.execute("UPDATE export_tasks SET next_attempt_at = next_attempt_at - id * interval '1 second'")
        let claimed = try await harness.store.claim(limit: 20, leaseToken: "t", leaseUntil: now + 300, now: now)
        #expect(claimed.count == 20)
        return (harness, claimed.sorted { $0.id < $1.id })
    }

    /// Holds the row `held` locked while `write` runs into it; returns the IDs of `ids` that the
    /// write held locked while it waited, and what the write returned once let go.
    private func rowsLocked<T: Sendable>(by write: @escaping @Sendable () async throws -> T, held: Int, ids: [Int],
                                     harness: PostgresHarness) async throws -> (locked: [Int], result: T) {
        let schema = harness.schema
        return try await PostgresTestDatabase.withClient(try PostgresTestDatabase.configuration(schema: schema)) { client in
            try await client.withConnection { holder in
                try await holder.query("BEGIN", logger: logger)
                try await holder.query("SELECT id FROM export_tasks WHERE id = \(held) FOR UPDATE", logger: logger)
                let writing = Task { try await write() }
                // The write's session (the store's: its application_name is the schema) waits for a lock.
                let waiting = try await PostgresTestDatabase.waitUntil(within: .seconds(20)) {
                    try await PostgresTestDatabase.value(client, """
                        SELECT count(*)::bigint FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a USING (pid)
                        WHERE NOT l.granted AND a.application_name = \(schema)
                        """, as: Int.self) ?? 0 > 0
                }
                #expect(waiting, "the write waits for the row held")
                // The rows free now: the write's show as locked (skipped), the held one too.
                let free = try await client.withConnection { probe in
                    try await probe.query("BEGIN", logger: logger)
                    var free: [Int] = []
                    for try await id in try await probe.query(
                        "SELECT id FROM export_tasks WHERE id = ANY(\(ids)) ORDER BY id FOR UPDATE SKIP LOCKED", logger: logger
                    ).decode(Int.self) {
                        free.append(id)
                    }
                    try await probe.query("ROLLBACK", logger: logger)
                    return free
                }
                try await holder.query("COMMIT", logger: logger)
                let result = try await writing.value
                return (ids.filter { $0 != held && !free.contains($0) }, result)
            }
        }
    }

    @Test("an outcome batch locks its tasks in id order, whatever the batch's order")
    func applyLocksInIDOrder() async throws {
        let (harness, claimed) = try await claimedQueue()
        let ids = claimed.map(\.id)
        let held = ids[9]
        // The batch in the reverse order: locked as given, the rows after the held one go first.
        let transitions = claimed.reversed().map {
            TaskTransition(task: $0, change: .finish(.deleted), attempts: 1,
                           audit: AuditRecord(outcome: .deleted, at: now, attempt: 1, httpStatus: 204, delivery: .answered))
        }
        let store = harness.store
        let (locked, applied) = try await rowsLocked(by: { try await store.apply(transitions) }, held: held, ids: ids, harness: harness)
        #expect(locked == Array(ids[..<9]), "held by the batch while it waited at \(held)")
        #expect(applied == Array(repeating: true, count: 20))
        #expect(try await store.counts()[.deleted] == 20)
        await harness.close()
    }

    @Test("a lease renewal locks its tasks in id order, not in the due index's")
    func renewalLocksInIDOrder() async throws {
        let (harness, claimed) = try await claimedQueue()
        let ids = claimed.map(\.id)
        let held = ids[9]
        let store = harness.store
        let until = now + 600
        let (locked, renewed) = try await rowsLocked(by: { try await store.renewLeases(tokens: ["t"], until: until) },
                                                 held: held, ids: ids, harness: harness)
        #expect(locked == Array(ids[..<9]), "held by the renewal while it waited at \(held)")
        #expect(renewed == Set(ids))
        await harness.close()
    }
}
