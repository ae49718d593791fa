import Dispatch
import Foundation
import IoTDASimulator
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

@testable import ExportTaskCleaner

/// docs/database.md and docs/operations.md, "Behaviour under failures": every request that may have been
/// sent is on record, and no outcome the server confirmed is dropped.
@Suite("Audit trail: attempts written ahead, answers after a lost lease, outcomes never dropped")
struct AuditTrailTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("attempts another tool wrote out of range or as text are read as 0 and written ahead as 1, by either claim")
    func attemptsOutOfRange() async throws {
        for limit in [1, 40] {
            let (store, path) = try TestSupport.makeStore()
            _ = try await store.enqueue(TestSupport.items(["big", "text", "real"]), now: now)
            try SQLiteConnection(path: path).execute("""
                UPDATE export_tasks SET attempts = 9223372036854775807 WHERE export_task_id = 'big';
                UPDATE export_tasks SET attempts = 'many' WHERE export_task_id = 'text';
                UPDATE export_tasks SET attempts = 2.5 WHERE export_task_id = 'real';
                """)
            var claimed: [ClaimedTask] = []
            while claimed.count < 3 {
                await claimed += try store.claim(limit: limit, leaseToken: "t\(claimed.count)", leaseUntil: now + 30, now: now)
            }
            let byID = Dictionary(uniqueKeysWithValues: claimed.map { ($0.exportTaskID, $0.attempts) })
            #expect(byID == ["big": 1_000_000, "text": 0, "real": 0], "limit \(limit)")
            #expect(try attempts(store) == ["big": 1_000_001, "text": 1, "real": 1], "limit \(limit)")
        }
    }

    @Test("a 404 after a request whose answer was lost is not_found_after_unknown; a plain 404, or one after a requeue, stays not_found")
    func notFoundAfterUnknown() async throws {
        let harness = try await ServiceHarness.start()
        // A first attempt whose answer never came (a timeout after the request was written),
        // recorded as the service records it; the server may have acted on it.
        try await harness.enqueue(["lost-answer"])
        let now = Date()
        let first = try await #require(try harness.store.inner.claim(limit: 1, leaseToken: "t", leaseUntil: now + 60, now: now).first)
        await #expect(try harness.store.inner.apply([TaskTransition(
            task: first, change: .retry(at: now), attempts: 1,
            audit: AuditRecord(outcome: .retry, at: now, attempt: 1, errorMessage: "timed out", delivery: .unknown))]) == [true])
        try await harness.enqueue(["gone-before"])
        harness.simulator.script("gone-before", .notFound)
        harness.simulator.script("lost-answer", .notFound)
        try await harness.service(ServiceHarness.options(concurrency: 1)).run()
        #expect(try harness.rows()["gone-before"]?.state == "not_found")
        await #expect(try harness.audit("gone-before").map(\.outcome) == ["not_found"])
        let audit = try await harness.audit("lost-answer")
        #expect(audit.map(\.outcome) == ["retry", "not_found_after_unknown"])
        #expect(audit.map(\.delivery) == ["unknown", "answered"])
        #expect(audit.map(\.attempt) == [1, 2])
        #expect(try harness.rows()["lost-answer"]?.state == "not_found_after_unknown")
        #expect(try harness.rows()["lost-answer"]?.attempts == 2)
        await #expect(try harness.store.inner.status(now: Date()).counts["not_found_after_unknown"] == 1)
        await #expect(try harness.store.inner.checkConsistency().inconsistent == 0)
        // A requeue starts a new cycle: the lost answer belongs to the old one, so a 404 now
        // says the task was gone before anything of this cycle was sent.
        await #expect(try harness.store.inner.requeue(.exportTaskIDs(["lost-answer"]), now: Date()).requeued == 1)
        #expect(try SQLiteConnection(path: harness.path).scalarInt(
            "SELECT unanswered_attempts FROM export_tasks WHERE export_task_id = 'lost-answer'") == 0)
        try await harness.service(ServiceHarness.options(concurrency: 1)).run()
        #expect(try harness.rows()["lost-answer"]?.state == "not_found")
        await #expect(try harness.audit("lost-answer").map(\.outcome) == ["retry", "not_found_after_unknown", "requeued", "not_found"])
        await #expect(try harness.store.inner.checkConsistency().inconsistent == 0)
        try await harness.shutdown()
    }

    @Test("a runner stalled past its lease sends none of its claimed-ahead tasks; the answer it waited for is audited, lease lost")
    func stalledRunner() async throws {
        let harness = try await ServiceHarness.start()
        try await harness.enqueue(["warm", "held", "ahead"])
        harness.transport.gate.hold(["held"])
        // The database stays locked for the renewals: the leases lapse, and the sweep takes
        // the tasks back while "held" is in flight and "ahead" waits for its slot.
        harness.store.failingRenewals.withLock { $0 = true }
        let clock = ManualClock()
        let service = harness.service(ServiceHarness.options(concurrency: 1, lease: .seconds(30)), clock: clock)
        let done = EventLog<Bool>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await service.run()
                done.append(true)
            }
            // "warm" shows the credentials work; a second later "held" starts, and "ahead" is
            // claimed ahead for the same slot.
            #expect(await harness.transport.finished.wait { $0.contains("warm") })
            #expect(await clock.waitForSleepers(atLeast: ServiceHarness.idleSleepers))
            clock.advance(by: .seconds(1))
            #expect(await harness.transport.started.wait { $0.contains("held") })
            #expect(await clock.waitForSleepers(atLeast: ServiceHarness.idleSleepers))
            #expect(try harness.rows()["ahead"]?.state == "in_progress")
            for _ in 1...3 { #expect(await clock.advanceAndSettle(by: .seconds(16))) }
            // The sweep took "ahead" back from the stalled runner (the loop, with room to claim
            // ahead, may have claimed it again under a new lease).
            await #expect(try harness.audit("ahead").map(\.outcome) == ["lease_expired"])
            // Renewals work again: the leases taken from here on hold.
            harness.store.failingRenewals.withLock { $0 = false }
            harness.transport.gate.open()
            // The service works in real time; the clock moves on in small steps only when it
            // has not finished for a while, so that a loaded machine, slow to get a claimed task
            // to its request, never sees the lease run out under it.
            for _ in 0..<600 where done.events.isEmpty {
                if await done.wait(timeout: .milliseconds(200), until: { !$0.isEmpty }) { break }
                clock.advance(by: .milliseconds(100))
            }
            try await group.waitForAll()
        }
        #expect(harness.simulator.attempts(for: "ahead") == 1)
        let ahead = try await harness.audit("ahead")
        #expect(ahead.map(\.outcome) == ["lease_expired", "deleted"])
        #expect(ahead.map(\.attempt) == [1, 2])
        let held = try await harness.audit("held")
        #expect(held.map(\.outcome) == ["lease_expired", "deleted", "not_found_after_unknown"])
        #expect(held.map(\.leaseLost) == [false, true, false])
        #expect(held.map(\.attempt) == [1, 1, 2])
        #expect(service.statistics.lapsedLeases == 1)
        #expect(service.statistics.staleOutcomes == 1)
        #expect(harness.logs.lines.contains { $0.message == "lease lapsed before the request was sent; not sent" && $0.metadata["export_task_id"] == "ahead" })
        #expect(harness.logs.lines.contains { $0.message == "lease lost before the answer was written; recorded in the audit log only" })
        await #expect(try harness.store.inner.checkConsistency().inconsistent == 0)
        try await harness.shutdown()
    }

    @Test("writes fail from before SIGTERM to past the deadline: run() throws, each confirmed outcome is logged, one line each")
    func writesFailPastTheDeadline() async throws {
        let harness = try await ServiceHarness.start()
        let failure = await #expect(throws: CleanerError.self) {
            try await shutDownWithWritesFailing(harness, ids: ["full-1", "full-2", "full-3"], writeGrace: .milliseconds(300)) {}
        }
        #expect(failure?.description.contains("3 outcomes of requests sent could not be written") == true)
        let lines = harness.logs.lines.filter { $0.message == "outcome not written: writes kept failing past the shutdown deadline" }
        #expect(Set(lines.compactMap { $0.metadata["export_task_id"] }) == ["full-1", "full-2", "full-3"])
        #expect(lines.allSatisfy { $0.metadata["outcome"] == "deleted" && $0.metadata["request_id"] != "-" && $0.level == .critical })
        #expect(harness.simulator.counters.successfulDeletes == 3)
        try await harness.shutdown()
    }

    @Test("writes fail at SIGTERM and recover within the deadline: every outcome is written, and run() ends cleanly")
    func writesRecoverBeforeTheDeadline() async throws {
        let harness = try await ServiceHarness.start()
        try await shutDownWithWritesFailing(harness, ids: ["late-1", "late-2", "late-3"], writeGrace: .seconds(20)) {
            #expect(await harness.logs.wait(for: "cleaner stopping; no new requests"))
            harness.store.failingWrites.withLock { $0 = 0 }
        }
        #expect(try harness.rows().values.allSatisfy { $0.state == "deleted" && $0.attempts == 1 })
        #expect(!harness.logs.lines.contains { $0.message.hasPrefix("outcome not written") })
        try await harness.shutdown()
    }

    /// Runs a service over `ids` whose outcome writes all fail (a full disk), shuts it down
    /// gracefully once every request was answered, then runs `afterShutdown`.
    private func shutDownWithWritesFailing(_ harness: ServiceHarness, ids: [String], writeGrace: Duration,
                                           afterShutdown: @escaping @Sendable () async -> Void) async throws {
        try await harness.enqueue(ids)
        harness.store.failingWrites.withLock { $0 = .max }
        var options = ServiceHarness.options(concurrency: 4, drain: false, grace: .milliseconds(100))
        options.outcomeWriteGrace = writeGrace
        let service = harness.service(options)
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                #expect(await harness.transport.finished.wait { $0.count >= ids.count })
                #expect(await harness.logs.wait(for: "cannot write outcomes; retrying"))
                trigger.triggerGracefulShutdown()
                await afterShutdown()
                try await group.waitForAll()
            }
        }
    }

    @Test("cancelled with outcomes queued behind a slow write: every one is written")
    func cancellationWithASlowStore() async throws {
        let harness = try await ServiceHarness.start()
        let ids = (1...20).map { "slow-store-\($0)" }
        try await harness.enqueue(ids)
        // The first write blocks its thread until the test lets it go: a slow disk.
        let release = DispatchSemaphore(value: 0)
        let entered = EventLog<Int>()
        let first = Mutex(true)
        harness.store.beforeApply.withLock {
            $0 = Callback {
                let isFirst = first.withLock { value in
                    defer { value = false }
                    return value
                }
                guard isFirst else { return }
                entered.append(1)
                release.wait()
            }
        }
        let service = harness.service(ServiceHarness.options(concurrency: 8, drain: false))
        let run = Task { try await service.run() }
        #expect(await entered.wait { !$0.isEmpty })
        #expect(await harness.transport.finished.wait { $0.count >= ids.count })
        run.cancel()
        release.signal()
        try await run.value
        #expect(try harness.rows().values.allSatisfy { $0.state == "deleted" })
        #expect(harness.store.committed.count == ids.count)
        #expect(!harness.logs.lines.contains { $0.message.hasPrefix("outcome not written") })
        try await harness.shutdown()
    }

    @Test("the consistency check names tasks edited behind the audit log's back")
    func consistencyCheck() async throws {
        let (store, path) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items(["fine", "finished-by-hand", "attempts-edited", "no-lease", "twice"]), now: now)
        let claimed = try await store.claim(limit: 5, leaseToken: "t", leaseUntil: now + 30, now: now)
        let finish = claimed.filter { $0.exportTaskID == "fine" || $0.exportTaskID == "twice" }.map {
            TaskTransition(task: $0, change: .finish(.deleted), attempts: 1,
                           audit: AuditRecord(outcome: .deleted, at: now, attempt: 1, httpStatus: 204, delivery: .answered))
        }
        await #expect(try store.apply(finish) == [true, true])
        let release = claimed.filter { $0.exportTaskID != "fine" && $0.exportTaskID != "twice" && $0.exportTaskID != "no-lease" }.map {
            TaskTransition(task: $0, change: .release, audit: AuditRecord(outcome: .released, at: now))
        }
        _ = try await store.apply(release)
        await #expect(try store.checkConsistency() == ConsistencyReport(tasks: 5, inconsistent: 0, problems: []))
        let db = try SQLiteConnection(path: path)
        try db.execute("""
            UPDATE export_tasks SET state = 'deleted' WHERE export_task_id = 'finished-by-hand';
            UPDATE export_tasks SET attempts = 4 WHERE export_task_id = 'attempts-edited';
            UPDATE export_tasks SET lease_token = NULL WHERE export_task_id = 'no-lease';
            """)
        let twice = try #require(claimed.first { $0.exportTaskID == "twice" })
        var rows = SQLiteQueue.AuditRows(runner: "hand:1")
        rows.append(taskID: twice.id, exportTaskID: "twice", projectID: nil,
                    record: AuditRecord(outcome: .notFound, at: now, attempt: 2, httpStatus: 404, delivery: .answered))
        try db.writeTransaction { try rows.write(db) }
        let report = try await store.checkConsistency()
        #expect(report.tasks == 5 && report.inconsistent == 4)
        #expect(report.problems == [
            "task 2 (finished-by-hand): deleted, with 0 final audit rows since its last requeue (expected 1)",
            "task 3 (attempts-edited): attempts 4, but 0 attempts on record since its last requeue",
            "task 4 (no-lease): in_progress without a lease",
            "task 5 (twice): deleted, with 2 final audit rows since its last requeue (expected 1)",
        ])
    }

    @Test("run() a second time fails at once with a clear error")
    func runTwice() async throws {
        let harness = try await ServiceHarness.start()
        let service = harness.service(ServiceHarness.options())
        try await service.run()
        let error = await #expect(throws: CleanerError.self) { try await service.run() }
        #expect(error?.description.contains("already run") == true)
        try await harness.shutdown()
    }

    @Test("schema version 2 is migrated: a task in progress gets the attempt its claim may have sent; the new state is allowed")
    func migrationFromVersion2() throws {
        let path = try TestSupport.makeFolder().appendingPathComponent("v2.sqlite3").path
        let db = try SQLiteConnection(path: path, mode: .readWriteCreate)
        try db.execute(SQLiteSchema.migrations[0])
        try db.execute(SQLiteSchema.migrations[1])
        try db.execute("PRAGMA user_version = 2")
        try db.execute("""
            INSERT INTO export_tasks (export_task_id, state, attempts, lease_token, lease_expires_at)
                VALUES ('claimed', 'in_progress', 2, 'old', '2000-01-01T00:00:00.000Z'), ('waiting', 'pending', 1, NULL, NULL);
            """)
        let store = try SQLiteQueueStore(path: path)
        #expect(try db.scalarInt("PRAGMA user_version") == SQLiteQueue.schemaVersion)
        #expect(try attempts(store) == ["claimed": 3, "waiting": 1])
        try db.execute("UPDATE export_tasks SET state = 'not_found_after_unknown' WHERE export_task_id = 'waiting'")
        #expect(throws: SQLiteError.self) { try db.execute("UPDATE export_tasks SET state = 'bogus' WHERE export_task_id = 'waiting'") }
        #expect(try db.scalarInt("SELECT count(*) FROM pragma_table_info('audit_log') WHERE name = 'lease_lost'") == 1)
        let check = try db.prepare("PRAGMA quick_check")
        #expect(try check.step() && check.string(0) == "ok")
        check.reset()
    }

    private func attempts(_ store: SQLiteQueueStore) throws -> [String: Int] {
        let db = try SQLiteConnection(path: store.path)
        let statement = try db.prepare("SELECT export_task_id, attempts FROM export_tasks")
        defer { statement.reset() }
        var result: [String: Int] = [:]
        while try statement.step() { result[statement.string(0)] = statement.int(1) }
        return result
    }
}
