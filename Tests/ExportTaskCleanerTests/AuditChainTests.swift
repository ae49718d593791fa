import Foundation
import Testing

@testable import ExportTaskCleaner

/// The audit log's hash chain (docs/database.md, "The database"): every way of editing the log with the
/// triggers dropped is named by `verifyAuditChain`, and the chain survives concurrent writers
/// and a migration from the schema before it.
@Suite("Audit chain")
struct AuditChainTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    /// A queue with a few audit rows of several kinds.
    private func makeQueue() async throws -> (SQLiteQueueStore, String) {
        let (store, path) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items(["a1", "a2", "bad id!", "a3"]), now: now)
        let claimed = try await store.claim(limit: 3, leaseToken: "lease", leaseUntil: now.addingTimeInterval(60), now: now)
        _ = try await store.apply(claimed.map {
            TaskTransition(task: $0, change: .finish(.deleted), attempts: 1,
                           audit: AuditRecord(outcome: .deleted, at: now, attempt: 1, durationMilliseconds: 12,
                                              httpStatus: 204, requestID: "r-\($0.id)", delivery: .answered))
        })
        return (store, path)
    }

    private func tamper(_ path: String, _ sql: String) throws {
        let db = try SQLiteConnection(path: path)
        try db.execute("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; DROP TRIGGER audit_log_no_replace; DROP TRIGGER audit_log_hash_required")
        try db.execute(sql)
    }

    @Test("a row changed, deleted, replaced, or added without its hash is named")
    func tampering() async throws {
        let cases: [(String, String)] = [
            ("UPDATE audit_log SET error_message = 'fine' WHERE id = 2", "row 2 does not match its hash"),
            ("UPDATE audit_log SET attempt = 2 WHERE id = 3", "row 3 does not match its hash"),
            ("DELETE FROM audit_log WHERE id = 2", "rows 2 to 2 are missing: deleted"),
            ("DELETE FROM audit_log WHERE id = 1", "rows 1 to 1 are missing: deleted"),
            ("INSERT OR REPLACE INTO audit_log(id, task_id, export_task_id, at, outcome, runner, hash) SELECT id, task_id, export_task_id, at, 'not_found', runner, hash FROM audit_log WHERE id = 3",
             "row 3 does not match its hash"),
            ("INSERT INTO audit_log(task_id, export_task_id, outcome, runner) VALUES (1, 'a1', 'deleted', 'me')",
             "row 5 has no hash"),
        ]
        for (sql, expected) in cases {
            let (store, path) = try await makeQueue()
            try tamper(path, sql)
            let result = try await store.verifyAuditChain()
            #expect(result.problem?.hasPrefix(expected) == true, "\(sql): \(result.problem ?? "none")")
        }
    }

    @Test("with the triggers in place, a row cannot be replaced in place, nor added without its hash")
    func replaceRefused() async throws {
        let (store, path) = try await makeQueue()
        let db = try SQLiteConnection(path: path)
        #expect(throws: SQLiteError.self) {
            try db.execute("INSERT OR REPLACE INTO audit_log(id, task_id, export_task_id, outcome, runner, hash) SELECT 2, 1, 'a1', 'deleted', 'me', hash FROM audit_log WHERE id = 2")
        }
        #expect(throws: SQLiteError.self) {
            try db.execute("INSERT INTO audit_log(task_id, export_task_id, outcome, runner) VALUES (1, 'a1', 'deleted', 'me')")
        }
        await #expect(try store.verifyAuditChain().problem == nil)
    }

    @Test("an ID at the end of the range is refused with a message, not a crash")
    func lastPossibleID() async throws {
        let (store, path) = try await makeQueue()
        try tamper(path, "INSERT INTO audit_log(id, task_id, export_task_id, outcome, runner) VALUES (9223372036854775807, 1, 'a1', 'deleted', 'me')")
        let error = try await #require(throws: CleanerError.self) { try await store.enqueue(TestSupport.items(["late!"]), now: now) }
        #expect(error.message.contains("leaves no room for more IDs"))
    }

    @Test("a queue of schema version 1 is migrated and its existing rows chained")
    func migrationChainsExistingRows() async throws {
        let path = try TestSupport.makeFolder().appendingPathComponent("v1.sqlite3").path
        let db = try SQLiteConnection(path: path, mode: .readWriteCreate)
        try db.execute(SQLiteSchema.migrations[0])
        try db.execute("PRAGMA user_version = 1")
        for index in 1...5 {
            try db.execute("INSERT INTO audit_log(task_id, export_task_id, attempt, outcome, delivery, runner) VALUES (\(index), 't\(index)', 1, 'deleted', 'answered', 'old:1')")
        }
        let store = try SQLiteQueueStore(path: path)
        #expect(try db.scalarInt("PRAGMA user_version") == SQLiteQueue.schemaVersion)
        _ = try await store.enqueue(TestSupport.items(["new one!"]), now: now)
        let result = try await store.verifyAuditChain()
        #expect(result.problem == nil)
        #expect(result.rows == 6)
    }
}

@Suite("Audit chain, through the command")
struct AuditVerifyCommandTests {
    @Test("audit --verify: exit 0 with the rows and head, exit 1 naming the first row broken")
    func verifyCommand() async throws {
        let world = try await World.start()
        try await world.enqueue(["v1", "v2", "not valid!"])
        let good = try world.launch(["audit", "--verify"])
        #expect(try await good.exit(within: .seconds(30)) == 0, "\(good.stderrText)")
        #expect(good.stdoutText.hasPrefix("audit chain verified: 1 rows; head row 1 hash "))
        #expect(good.stdoutText.contains("tasks consistent with the audit log: 3 tasks"))

        let db = try SQLiteConnection(path: world.database)
        try db.execute("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET outcome = 'deleted' WHERE id = 1")
        let bad = try world.launch(["audit", "--verify"])
        #expect(try await bad.exit(within: .seconds(30)) == 1)
        #expect(bad.stderrText.contains("audit chain broken after 0 good rows: row 1 does not match its hash"))
        // The invalid task now has a final row that disagrees with its state.
        #expect(bad.stderrText.contains("tasks inconsistent with the audit log: 1 of 3"))
        #expect(bad.stderrText.contains("task 3 (not valid!): invalid, but its final audit row says deleted"))
        try await world.stop()
    }
}
