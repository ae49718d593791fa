import Foundation
import IoTDASimulator
import Testing

@testable import ExportTaskCleaner

/// docs/operations.md, "Behaviour under failures", with the built binary: every request the server
/// received is on record, even when a runner stalls past its lease beside another.
@Suite("End to end: the audit trail under stalls")
struct EndToEndAuditTests {
    @Test("a runner stopped past its lease beside another: no request off the record, nothing sent on a lapsed lease")
    func pausedRunner() async throws {
        let world = try await World.start(latency: .milliseconds(20))
        let ids = (0..<300).map { String(format: "pause-%04d", $0) }
        try await world.enqueue(ids)
        let config: [String: Any] = ["concurrency": 8, "lease_seconds": 5, "request_timeout_ms": 1_000, "max_requests_per_second": 100]
        let stalled = try world.launch(["run", "--drain"], config: config)
        #expect(try await world.eventually { try world.scalar("SELECT count(*) FROM audit_log") >= 20 })
        // Stopped with requests in flight and tasks claimed ahead, until the other runner has
        // swept its leases, and two seconds more. Stopped outside a write transaction: one
        // stopped while it holds SQLite's write lock blocks every writer, the sweep included,
        // which is not the stall this test is about (a CI run met it once).
        for _ in 0..<100 {
            stalled.signal(SIGSTOP)
            if try world.writeLockIsFree() { break }
            stalled.signal(SIGCONT)
            try await Task.sleep(for: .milliseconds(Int.random(in: 1...20)))
        }
        #expect(try world.writeLockIsFree())
        let other = try world.launch(["run", "--drain"], config: config)
        #expect(try await world.eventually { try world.scalar("SELECT count(*) FROM audit_log WHERE outcome = 'lease_expired'") > 0 })
        let sweptAt = ContinuousClock.now
        #expect(try await world.eventually { ContinuousClock.now - sweptAt > .seconds(2) })
        stalled.signal(SIGCONT)
        #expect(try await other.exit(within: .seconds(60)) == 0, "\(other.stderrText.suffix(2_000))")
        #expect(try await stalled.exit(within: .seconds(60)) == 0, "\(stalled.stderrText.suffix(2_000))")

        let states = try world.states()
        #expect(states.values.allSatisfy { $0 == "deleted" || $0 == "not_found_after_unknown" })
        let counters = world.simulator.counters
        #expect(counters.successfulDeletes == ids.count)
        let records = try world.requestRecords()
        let short = ids.filter { id in
            let received = counters.attempts(for: id), record = records[id] ?? (0, 0)
            return record.rows < received || record.attempts < received
        }
        #expect(short.isEmpty, "tasks with requests off the record: \(short.prefix(5))")
        #expect(!stalled.stderrText.contains("outcome not written"))
        // What the stall left: tasks claimed ahead not sent, answers after the lease recorded.
        #expect(stalled.stderrText.contains("lease lapsed before the request was sent; not sent"), "\(stalled.stderrText.suffix(2_000))")
        #expect(try world.scalar("SELECT count(*) FROM audit_log WHERE lease_lost IS NOT NULL") > 0)
        let verify = try world.launch(["audit", "--verify"])
        #expect(try await verify.exit(within: .seconds(30)) == 0, "\(verify.stdoutText) \(verify.stderrText)")
        try await world.stop()
    }
}

extension World {
    /// Whether no process holds the database's write lock now (tried at once, not waited for).
    func writeLockIsFree() throws -> Bool {
        let db = try SQLiteConnection(path: database)
        try db.execute("PRAGMA busy_timeout = 0")
        do {
            try db.execute("BEGIN IMMEDIATE")
        } catch {
            return false
        }
        try db.execute("ROLLBACK")
        return true
    }

    /// Per export task ID: its audit rows that may stand for a request (delivery `answered` or
    /// `unknown`), and its `attempts`.
    func requestRecords() throws -> [String: (rows: Int, attempts: Int)] {
        let db = try SQLiteConnection(path: database)
        let statement = try db.prepare("""
            SELECT t.export_task_id, t.attempts, ifnull(r.rows, 0) FROM export_tasks t
            LEFT JOIN (SELECT task_id, count(*) AS rows FROM audit_log WHERE delivery IN ('answered', 'unknown') GROUP BY task_id) r
                ON r.task_id = t.id
            """)
        var records: [String: (rows: Int, attempts: Int)] = [:]
        while try statement.step() { records[statement.string(0)] = (statement.int(2), statement.int(1)) }
        statement.reset()
        return records
    }

}
