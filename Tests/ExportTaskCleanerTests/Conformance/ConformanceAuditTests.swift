import Foundation
import Testing

@testable import ExportTaskCleaner

/// The audit log on every store (docs/database.md, "The database"): append-only, one hash
/// chain across every writer, and `audit --verify` meaning the same everywhere.
@Suite("Store conformance: the audit log")
struct ConformanceAuditTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    /// A queue with four audit rows: three deletes and one invalid ID.
    private func makeQueue(_ kind: StoreKind) async throws -> any StoreHarness {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items(["a1", "a2", "bad id!", "a3"]), now: now)
        let claimed = try await store.claim(limit: 3, leaseToken: "lease", leaseUntil: now + 60, now: now)
        _ = try await store.apply(claimed.map {
            TaskTransition(task: $0, change: .finish(.deleted), attempts: 1,
                           audit: AuditRecord(outcome: .deleted, at: now, attempt: 1, durationMilliseconds: 12,
                                              httpStatus: 204, requestID: "r-\($0.id)", delivery: .answered))
        })
        return harness
    }

    @Test("rows written by the service chain up; the head is what status shows", arguments: StoreKind.available)
    func intact(kind: StoreKind) async throws {
        let harness = try await makeQueue(kind)
        let result = try await harness.store.verifyAuditChain()
        #expect(result.problem == nil)
        #expect(result.rows == 4)
        #expect(result.headID == 4)
        #expect(result.headHash?.count == 64)
        #expect(try await harness.store.status(now: now).auditHead == .init(id: 4, hash: result.headHash))
        #expect(try await harness.store.auditHead() == .init(id: 4, hash: result.headHash))
        await harness.close()
    }

    @Test("the chain's hashes are the same on every store: one canonical row encoding", arguments: StoreKind.available)
    func canonicalEncoding(kind: StoreKind) async throws {
        // The rows of makeQueue, hashed by the documented encoding from their values alone.
        let harness = try await makeQueue(kind)
        var entries: [AuditEntry] = []
        try await harness.store.auditEntries(AuditFilter()) { entries.append($0) }
        var previous = AuditChain.genesis
        for entry in entries {
            func text(_ value: String?) -> AuditChain.Value { value.map { .text($0) } ?? .null }
            func number(_ value: Int?) -> AuditChain.Value { value.map { .integer($0) } ?? .null }
            var values: [AuditChain.Value] = [
                .integer(entry.id), number(entry.taskID), .text(entry.exportTaskID), text(entry.projectID),
                number(entry.attempt), .text(entry.at), number(entry.durationMilliseconds), number(entry.httpStatus),
                text(entry.errorCode), text(entry.errorMessage), text(entry.requestID), .text(entry.outcome),
                text(entry.delivery), .text(entry.runner),
            ]
            if entry.leaseLost { values.append(.integer(1)) }
            let expected = AuditChain.hash(previous: previous, values: values)
            #expect(entry.hash == expected, "row \(entry.id)")
            previous = expected
        }
        #expect(entries.map(\.at).allSatisfy { $0 == Timestamp.format(now) })
        await harness.close()
    }

    @Test("audit_log refuses UPDATE, DELETE, and a row without its hash", arguments: StoreKind.available)
    func appendOnly(kind: StoreKind) async throws {
        let harness = try await makeQueue(kind)
        for sql in [
            "UPDATE audit_log SET outcome = 'deleted' WHERE id = 3",
            "DELETE FROM audit_log WHERE id = 1",
            "INSERT INTO audit_log (task_id, export_task_id, outcome, runner) VALUES (1, 'a1', 'deleted', 'me')",
        ] {
            await #expect(throws: (any Error).self, "\(sql)") { try await harness.execute(sql) }
        }
        #expect(try await harness.scalarInt("SELECT count(*) FROM audit_log") == 4)
        #expect(try await harness.store.verifyAuditChain().problem == nil)
        await harness.close()
    }

    @Test("a row changed, deleted, or added without its hash is named by the verification", arguments: StoreKind.available)
    func tampering(kind: StoreKind) async throws {
        let cases: [(String, String)] = [
            ("UPDATE audit_log SET error_message = 'fine' WHERE id = 2", "row 2 does not match its hash"),
            ("UPDATE audit_log SET attempt = 2 WHERE id = 3", "row 3 does not match its hash"),
            ("DELETE FROM audit_log WHERE id = 2", "rows 2 to 2 are missing: deleted"),
            ("DELETE FROM audit_log WHERE id = 1", "rows 1 to 1 are missing: deleted"),
            ("INSERT INTO audit_log (id, task_id, export_task_id, outcome, runner) VALUES (5, 1, 'a1', 'deleted', 'me')",
             "row 5 has no hash"),
        ]
        for (sql, expected) in cases {
            let harness = try await makeQueue(kind)
            try await harness.tamper(sql)
            let result = try await harness.store.verifyAuditChain()
            #expect(result.problem?.hasPrefix(expected) == true, "\(sql): \(result.problem ?? "none")")
            await harness.close()
        }
    }

    @Test("two services writing at once interleave, and the chain holds", arguments: StoreKind.available)
    func concurrentWriters(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness(runner: "one:1")
        let second = try await harness.another(runner: "two:2")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (store, prefix) in [(harness.store, "x"), (second, "y")] {
                group.addTask {
                    for batch in 0..<40 {
                        _ = try await store.enqueue(TestSupport.items((0..<5).map { "\(prefix)\(batch)-\($0)!" }), now: Date())
                    }
                }
            }
            try await group.waitForAll()
        }
        let result = try await harness.store.verifyAuditChain()
        #expect(result.problem == nil)
        #expect(result.rows == 400)
        var runners: Set<String> = []
        try await second.auditEntries(AuditFilter()) { runners.insert($0.runner) }
        #expect(runners == ["one:1", "two:2"])
        await second.close()
        await harness.close()
    }

    @Test("the consistency check names tasks edited behind the audit log's back", arguments: StoreKind.available)
    func consistency(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items(["fine", "finished-by-hand", "attempts-edited", "no-lease", "huge"]), now: now)
        let claimed = try await store.claim(limit: 5, leaseToken: "t", leaseUntil: now + 30, now: now)
        _ = try await store.apply([TaskTransition(
            task: claimed[0], change: .finish(.deleted), attempts: 1,
            audit: AuditRecord(outcome: .deleted, at: now, attempt: 1, httpStatus: 204, delivery: .answered))])
        _ = try await store.apply(claimed[1...2].map { TaskTransition(task: $0, change: .release, audit: AuditRecord(outcome: .released, at: now)) })
        try await harness.execute("UPDATE export_tasks SET state = 'deleted' WHERE export_task_id = 'finished-by-hand'")
        try await harness.execute("UPDATE export_tasks SET attempts = 4 WHERE export_task_id = 'attempts-edited'")
        try await harness.execute("UPDATE export_tasks SET lease_token = NULL WHERE export_task_id = 'no-lease'")
        try await harness.execute("UPDATE export_tasks SET attempts = 9223372036854775807 WHERE export_task_id = 'huge'")
        let report = try await store.checkConsistency()
        #expect(report.tasks == 5 && report.inconsistent == 4)
        #expect(report.problems == [
            "task 2 (finished-by-hand): deleted, with 0 final audit rows since its last requeue (expected 1)",
            "task 3 (attempts-edited): attempts 4, but 0 attempts on record since its last requeue",
            "task 4 (no-lease): in_progress without a lease",
            "task 5 (huge): attempts 9223372036854775807, but 0 attempts on record (in progress: one ahead of them at most)",
        ])
        await harness.close()
    }
}
