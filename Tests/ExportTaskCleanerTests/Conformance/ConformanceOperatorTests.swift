import Foundation
import Testing

@testable import ExportTaskCleaner

/// What feeders and operators do on every store (docs/commands.md, docs/database.md): enqueue,
/// plain SQL from other tools, requeue, status, the audit filters; and the store going away.
@Suite("Store conformance: feeding, operating, outages")
struct ConformanceOperatorTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("enqueue counts duplicates and stores invalid IDs as invalid, with an audit row each", arguments: StoreKind.available)
    func enqueueDuplicatesAndInvalid(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        let input = "  task-1  \r\n# a comment\n\ntask-2\ntask-1\n\(String(repeating: "a", count: 37))\nhas space\n../x\ntâche\nctl\u{07}x\n"
        let summary = try await store.enqueue(EnqueueList(lines: Array(input.utf8), projectID: "proj-2", instanceID: "inst-1"), now: now)
        #expect(summary.queued == 2)
        #expect(summary.alreadyQueued == 1)
        #expect(summary.invalid.map(\.line) == [6, 7, 8, 9, 10])
        #expect(summary.invalid.first?.problem.contains("36") == true)
        let again = try await store.enqueue([EnqueueItem(exportTaskID: ""), EnqueueItem(exportTaskID: "task-2")], now: now)
        #expect(again.invalid.map(\.exportTaskID) == [""])
        #expect(again.queued == 1, "task-2 of the configured project is another task than proj-2's")
        let counts = try await store.counts()
        #expect(counts[.pending] == 3)
        #expect(counts[.invalid] == 6)
        var audited: [String] = []
        try await store.auditEntries(AuditFilter(outcome: .invalid)) { audited.append($0.exportTaskID) }
        #expect(audited.count == 6)
        #expect(audited.contains("ctl\u{07}x"))
        let claimed = try await store.claim(limit: 10, leaseToken: "t", leaseUntil: now + 60, now: now)
        #expect(claimed.filter { $0.projectID == "proj-2" }.map(\.instanceID) == ["inst-1", "inst-1"])
        #expect(claimed.filter { $0.projectID == nil }.map(\.exportTaskID) == ["task-2"])
        await harness.close()
    }

    @Test("a feeder's bare INSERT of export_task_id works, a duplicate is refused, and the service claims it", arguments: StoreKind.available)
    func foreignInsertIsClaimable(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let before = try await harness.store.changeSignal()
        try await harness.execute("INSERT INTO export_tasks (export_task_id) VALUES ('from-other-tool')")
        await #expect(throws: (any Error).self) {
            try await harness.execute("INSERT INTO export_tasks (export_task_id) VALUES ('from-other-tool')")
        }
        try await harness.execute("INSERT INTO export_tasks (export_task_id, project_id, instance_id) VALUES ('other-project', 'p-2', 'i-2')")
        // The change signal moves for another writer's rows (it may take a moment to arrive).
        #expect(try await eventually(timeout: .seconds(10)) { try await harness.store.changeSignal() != before })
        #expect(try await harness.scalarInt("SELECT count(*) FROM export_tasks") == 2)
        #expect(try await harness.store.enqueue(TestSupport.items(["from-other-tool"]), now: now).alreadyQueued == 1)
        // Defaults use the database's clock; claim as of a moment safely after it.
        let claimed = try await harness.store.claim(limit: 10, leaseToken: "t1", leaseUntil: Date() + 60, now: Date() + 5)
        #expect(claimed.map(\.exportTaskID) == ["from-other-tool", "other-project"])
        #expect(claimed.map(\.attempts) == [0, 0])
        #expect(claimed.map(\.projectID) == [nil, "p-2"])
        #expect(claimed.allSatisfy { $0.problem == nil })
        #expect(try await harness.store.oldestPendingEnqueuedAt() == nil)
        await harness.close()
    }

    @Test("rows another tool wrote whose IDs would make a wrong URL or header are claimed with their problem", arguments: StoreKind.available)
    func invalidRowsFromOtherTools(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let rows: [(String, String, String)] = [
            ("dots", "project_id", "'..'"), ("empty", "project_id", "''"), ("slash", "project_id", "'a/b'"),
            ("long", "project_id", "'\(String(repeating: "p", count: 65))'"),
            ("space", "instance_id", "'i j'"), ("x/../y", "project_id", "NULL"),
        ]
        for (id, column, value) in rows {
            try await harness.execute("INSERT INTO export_tasks (export_task_id, \(column)) VALUES ('\(id)', \(value))")
        }
        let claimed = try await harness.store.claim(limit: 10, leaseToken: "t", leaseUntil: Date() + 60, now: Date() + 5)
        let problems = Dictionary(uniqueKeysWithValues: claimed.map { ($0.exportTaskID, $0.problem) })
        #expect(problems["dots"] == "project_id: only letters, digits, '_' and '-' are allowed")
        #expect(problems["empty"] == "project_id: empty")
        #expect(problems["slash"] == "project_id: only letters, digits, '_' and '-' are allowed")
        #expect(problems["long"] == "project_id: longer than 64 characters")
        #expect(problems["space"] == "instance_id: only letters, digits, '_' and '-' are allowed")
        #expect(problems["x/../y"]??.hasPrefix("export_task_id:") == true)
        await harness.close()
    }

    @Test("requeue puts finished tasks back with no attempts, once per ID, and logs it", arguments: StoreKind.available)
    func requeue(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items(["r1", "r2", "r3"]), now: now)
        let claimed = try await store.claim(limit: 2, leaseToken: "t", leaseUntil: now + 300, now: now)
        _ = try await store.apply(claimed.map {
            TaskTransition(task: $0, change: .finish(.failed), attempts: 8,
                           audit: AuditRecord(outcome: .failed, at: now, attempt: 8, httpStatus: 503, delivery: .answered))
        })
        await #expect(throws: CleanerError.self) { try await store.requeue(.state(.pending), now: now) }
        // A requeue by an operator's command (another connection) wakes the listening service.
        let before = try await store.changeSignal()
        let command = try await harness.another(runner: "operator:1")
        let byID = try await command.requeue(.exportTaskIDs(["r1", "r3", "nope", "r1", "nope"]), now: now)
        #expect(try await eventually(timeout: .seconds(10)) { try await store.changeSignal() != before })
        #expect(byID.requeued == 1)
        #expect(byID.notFinished == ["r3"])
        #expect(byID.unknown == ["nope"])
        #expect(try await store.requeue(.state(.failed), now: now).requeued == 1)
        let again = try await store.claim(limit: 10, leaseToken: "u", leaseUntil: now + 300, now: now)
        #expect(again.count == 3)
        #expect(again.allSatisfy { $0.attempts == 0 && $0.unansweredAttempts == 0 })
        var requeued: [String] = []
        try await store.auditEntries(AuditFilter(outcome: .requeued)) { requeued.append($0.exportTaskID) }
        #expect(requeued == ["r1", "r2"])
        #expect(try await store.checkConsistency().inconsistent == 0)
        await harness.close()
    }

    @Test("status reports counts, the oldest pending task, the next retry, the last outcome and error, and the holders",
          arguments: StoreKind.available)
    func status(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items(["s1", "s2"]), now: now)
        let task = try #require(try await store.claim(limit: 1, leaseToken: "t", leaseUntil: now + 300, now: now).first)
        _ = try await store.apply([TaskTransition(
            task: task, change: .retry(at: now + 30), attempts: 1,
            audit: AuditRecord(outcome: .retry, at: now + 1, attempt: 1, httpStatus: 503, errorCode: "IOTDA.000001",
                               errorMessage: "busy", delivery: .answered))])
        try await store.heartbeat(startedAt: now, status: "in flight 0", now: now + 2)
        try await store.heartbeat(startedAt: now, status: "in flight 1", now: now + 3)
        let status = try await store.status(now: now + 5)
        #expect(status.counts.keys.sorted() == TaskState.allCases.map(\.rawValue).sorted())
        #expect(status.counts["pending"] == 2)
        #expect(status.oldestPendingEnqueuedAt == Timestamp.format(now))
        #expect(status.oldestPendingAgeSeconds == 5)
        #expect(status.nextRetryAt == Timestamp.format(now + 30))
        #expect(status.lastOutcome?.outcome == "retry")
        #expect(status.lastError?.errorCode == "IOTDA.000001")
        #expect(status.lastError?.httpStatus == 503)
        #expect(status.heldBy.map(\.runner) == ["test:1"])
        #expect(status.heldBy.first?.status == "in flight 1")
        #expect(status.heldBy.first?.secondsSinceHeartbeat == 2)
        #expect(try await store.oldestPendingEnqueuedAt() == now)
        #expect(try await store.status(now: now + 60).heldBy.isEmpty)
        try await store.removeHeartbeat()
        #expect(try await store.status(now: now + 5).heldBy.isEmpty)
        await harness.close()
    }

    @Test("the audit filters: by task, by the task's state, by outcome, since a time", arguments: StoreKind.available)
    func auditFilters(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items(["f1", "f2", "bad!"]), now: now)
        let claimed = try await store.claim(limit: 2, leaseToken: "t", leaseUntil: now + 300, now: now + 10)
        _ = try await store.apply([
            TaskTransition(task: claimed[0], change: .finish(.deleted), attempts: 1,
                           audit: AuditRecord(outcome: .deleted, at: now + 20, attempt: 1, httpStatus: 204, delivery: .answered)),
            TaskTransition(task: claimed[1], change: .retry(at: now + 100), attempts: 1,
                           audit: AuditRecord(outcome: .retry, at: now + 30, attempt: 1, httpStatus: 500, delivery: .answered)),
        ])
        func ids(_ filter: AuditFilter) async throws -> [String] {
            var result: [String] = []
            try await store.auditEntries(filter) { result.append("\($0.exportTaskID):\($0.outcome)") }
            return result
        }
        #expect(try await ids(AuditFilter()) == ["bad!:invalid", "f1:deleted", "f2:retry"])
        #expect(try await ids(AuditFilter(exportTaskID: "f2")) == ["f2:retry"])
        #expect(try await ids(AuditFilter(taskState: .pending)) == ["f2:retry"])
        #expect(try await ids(AuditFilter(outcome: .deleted)) == ["f1:deleted"])
        #expect(try await ids(AuditFilter(since: now + 25)) == ["f2:retry"])
        #expect(try await ids(AuditFilter(exportTaskID: "none")) == [])
        await harness.close()
    }

    @Test("the store going away and coming back: calls fail as unavailable or wait, then work, and nothing is lost",
          arguments: StoreKind.available)
    func outage(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items(["o1", "o2"]), now: now)
        let claimed = try await store.claim(limit: 2, leaseToken: "t", leaseUntil: now + 300, now: now)
        try await harness.interrupt()
        let transition = TaskTransition(task: claimed[0], change: .finish(.deleted), attempts: 1,
                                        audit: AuditRecord(outcome: .deleted, at: now, attempt: 1, httpStatus: 204, delivery: .answered))
        // Started during the outage; the outage ends while it waits or after it failed.
        let during = Task { try await store.apply([transition]) }
        try await Task.sleep(for: .milliseconds(300))  // the outage lasts a while: not a wait for an event
        try await harness.resume()
        var written: [Bool]
        do {
            written = try await during.value
        } catch let error as StoreError {
            #expect(error.kind == .unavailable, "\(error)")
            written = []
        }
        // What the service does after a failed write: the same write again, until it is written.
        for _ in 0..<100 where written.isEmpty {
            do { written = try await store.apply([transition]) } catch let error as StoreError where error.kind == .unavailable {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(written == [true])
        #expect(try await store.counts()[.deleted] == 1)
        #expect(try await store.claim(limit: 1, leaseToken: "u", leaseUntil: now + 300, now: now).isEmpty)
        #expect(try await store.renewLeases(tokens: ["t"], until: now + 400) == [claimed[1].id])
        #expect(try await store.verifyAuditChain().rows == 1)
        await harness.close()
    }
}
