import ExportTaskCleaner
import Foundation
import Testing

@Suite("Queue store")
struct QueueStoreTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("a new file is migrated to the current version, and opening it again changes nothing")
    func migrationFromEmptyIsIdempotent() async throws {
        let (store, path) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items(["a1"]), now: now)
        let again = try SQLiteQueueStore(path: path)
        await #expect(try again.counts()[.pending] == 1)
        let db = try SQLiteConnection(path: path)
        #expect(try db.scalarInt("PRAGMA user_version") == 3)
        #expect(try db.scalarInt("SELECT count(*) FROM sqlite_master WHERE name IN ('export_tasks', 'audit_log')") == 2)
        #expect(try db.scalarInt("SELECT count(*) FROM export_tasks") == 1)
    }

    @Test("a database of a newer schema is refused untouched")
    func newerSchemaRefused() throws {
        let (_, path) = try TestSupport.makeStore()
        try SQLiteConnection(path: path).execute("PRAGMA user_version = 99")
        let error = try #require(throws: CleanerError.self) { try SQLiteQueueStore(path: path) }
        #expect(error.message.contains("schema version 99"))
        #expect(error.message.contains("upgrade export-task-cleaner"))
        #expect(try SQLiteConnection(path: path).scalarInt("PRAGMA user_version") == 99)
    }

    @Test("a file that is not a database, and a missing folder, give clear errors")
    func unusableFiles() throws {
        let folder = try TestSupport.makeFolder()
        let junk = folder.appendingPathComponent("junk.sqlite3")
        try Data(repeating: 0x41, count: 4096).write(to: junk)
        let corrupt = try #require(throws: CleanerError.self) { try SQLiteQueueStore(path: junk.path) }
        #expect(corrupt.code == .runtime)
        #expect(corrupt.message.contains("not a usable SQLite database"))
        #expect(try Data(contentsOf: junk) == Data(repeating: 0x41, count: 4096))

        let missing = try #require(throws: CleanerError.self) {
            try SQLiteQueueStore(path: folder.appendingPathComponent("nope/queue.sqlite3").path)
        }
        #expect(missing.code == .configuration)
        #expect(missing.message.contains("database:"))
        #expect(missing.message.contains("does not exist"))
    }

    @Test("enqueue counts duplicates and stores invalid IDs as invalid, with an audit row each")
    func enqueueDuplicatesAndInvalid() async throws {
        let (store, _) = try TestSupport.makeStore()
        let input = """
              task-1  \r
            # a comment

            task-2
            task-1
            \(String(repeating: "a", count: 37))
            has space
            ../x
            tâche
            ctl\u{07}x
            \(String(repeating: "b", count: 36))
            """
        let lines = IDList.parse(Array(input.utf8))
        #expect(lines.map(\.line) == [1, 4, 5, 6, 7, 8, 9, 10, 11])
        #expect(lines.first?.id == "task-1")
        let summary = try await store.enqueue(lines.map { EnqueueItem(exportTaskID: $0.id, line: $0.line) }, now: now)
        #expect(summary.queued == 3)
        #expect(summary.alreadyQueued == 1)
        #expect(summary.invalid.map(\.line) == [6, 7, 8, 9, 10])
        #expect(summary.invalid.first?.problem.contains("36") == true)

        let again = try await store.enqueue([EnqueueItem(exportTaskID: ""), EnqueueItem(exportTaskID: "task-2")], now: now)
        #expect(again.invalid.map(\.exportTaskID) == [""])
        #expect(again.alreadyQueued == 1)

        let counts = try await store.counts()
        #expect(counts[.pending] == 3)
        #expect(counts[.invalid] == 6)
        var audited: [String] = []
        try await store.auditEntries(AuditFilter(outcome: .invalid)) { audited.append($0.exportTaskID) }
        #expect(audited.count == 6)
        #expect(audited.contains("ctl\u{07}x"))
    }

    @Test("another tool's bare INSERT OR IGNORE works, is deduplicated, and can be claimed")
    func foreignInsertIsClaimable() async throws {
        let (store, path) = try TestSupport.makeStore()
        let other = try SQLiteConnection(path: path)
        try other.execute("INSERT OR IGNORE INTO export_tasks(export_task_id) VALUES ('from-other-tool')")
        try other.execute("INSERT OR IGNORE INTO export_tasks(export_task_id) VALUES ('from-other-tool')")
        #expect(try other.scalarInt("SELECT count(*) FROM export_tasks") == 1)
        let summary = try await store.enqueue(TestSupport.items(["from-other-tool"]), now: now)
        #expect(summary.alreadyQueued == 1)

        // Defaults use SQLite's clock; claim as of a moment safely after it.
        let claimed = try await store.claim(limit: 10, leaseToken: "t1", leaseUntil: Date().addingTimeInterval(60),
                                      now: Date().addingTimeInterval(1))
        #expect(claimed.map(\.exportTaskID) == ["from-other-tool"])
        #expect(claimed.first?.attempts == 0)
        #expect(claimed.first?.projectID == nil)
    }

    @Test("a claim takes due tasks in order, at most the limit, and skips scheduled ones")
    func claimOrderAndLimit() async throws {
        let (store, _) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items((1...5).map { "t\($0)" }), now: now)
        let first = try await store.claim(limit: 2, leaseToken: "a", leaseUntil: now + 300, now: now)
        #expect(first.map(\.exportTaskID) == ["t1", "t2"])
        // Reschedule t1 into the future: not claimable until then.
        let retry = TaskTransition(task: first[0], change: .retry(at: now + 60), attempts: 1,
                                   audit: AuditRecord(outcome: .retry, at: now, attempt: 1, httpStatus: 503, delivery: .answered))
        await #expect(try store.apply([retry]) == [true])
        let rest = try await store.claim(limit: 10, leaseToken: "b", leaseUntil: now + 300, now: now)
        #expect(rest.map(\.exportTaskID) == ["t3", "t4", "t5"])
        await #expect(try store.nextDue() == now + 60)
        let later = try await store.claim(limit: 10, leaseToken: "c", leaseUntil: now + 400, now: now + 61)
        #expect(later.map(\.exportTaskID) == ["t1"])
        #expect(later.first?.attempts == 1)
    }

    @Test("two claimers on two connections never get the same task")
    func concurrentClaimersAreDisjoint() async throws {
        let (first, path) = try TestSupport.makeStore()
        let second = try SQLiteQueueStore(path: path, runner: "test:2")
        _ = try await first.enqueue(TestSupport.items((1...2_000).map { "task-\($0)" }), now: now)
        let now = self.now
        func drain(_ store: SQLiteQueueStore, _ name: String) async throws -> [Int] {
            var ids: [Int] = []
            for round in 0..<10_000 {
                let batch = try await store.claim(limit: 7, leaseToken: "\(name)-\(round)", leaseUntil: now + 300, now: now)
                if batch.isEmpty { break }
                ids += batch.map(\.id)
                await Task.yield()
            }
            return ids
        }
        async let a = drain(first, "a")
        async let b = drain(second, "b")
        let (left, right) = try await (a, b)
        #expect(left.count + right.count == 2_000)
        #expect(Set(left).isDisjoint(with: Set(right)))
        #expect(Set(left + right).count == 2_000)
    }

    @Test("a finish with a stale lease token changes nothing and writes no audit row")
    func staleFinishChangesNothing() async throws {
        let (store, _) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items(["x1"]), now: now)
        let original = try await #require(try store.claim(limit: 1, leaseToken: "old", leaseUntil: now + 10, now: now).first)
        // The lease runs out and another runner takes the task over.
        await #expect(try store.expireLeases(now: now + 11).map(\.exportTaskID) == ["x1"])
        let takeover = try await #require(try store.claim(limit: 1, leaseToken: "new", leaseUntil: now + 400, now: now + 11).first)

        let late = TaskTransition(task: original, change: .finish(.deleted), attempts: 1,
                                  audit: AuditRecord(outcome: .deleted, at: now + 12, attempt: 1, httpStatus: 204, delivery: .answered))
        await #expect(try store.apply([late]) == [false])
        await #expect(try store.counts()[.inProgress] == 1)

        let current = TaskTransition(task: takeover, change: .finish(.notFound), attempts: 1,
                                     audit: AuditRecord(outcome: .notFound, at: now + 13, attempt: 1, httpStatus: 404,
                                                        errorCode: "IOTDA.014016", requestID: "req-1", delivery: .answered))
        // The same finish twice: the second is a duplicate writer and changes nothing.
        await #expect(try store.apply([current, current]) == [true, false])
        await #expect(try store.counts()[.notFound] == 1)
        var rows: [AuditEntry] = []
        try await store.auditEntries(AuditFilter(exportTaskID: "x1")) { rows.append($0) }
        // Every answer is on record; those that came after the lease was lost say so, and
        // changed nothing in the task row.
        #expect(rows.map(\.outcome) == ["lease_expired", "deleted", "not_found", "not_found"])
        #expect(rows.map(\.leaseLost) == [false, true, false, true])
        #expect(rows.map(\.attempt) == [1, 1, 1, 1])
    }

    @Test("expired leases return to pending with a lease_expired row; live ones stay")
    func expiredLeases() async throws {
        let (store, _) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items(["e1", "e2"]), now: now)
        let claimed = try await store.claim(limit: 1, leaseToken: "dead", leaseUntil: now + 5, now: now)
        _ = try await store.claim(limit: 1, leaseToken: "live", leaseUntil: now + 500, now: now)
        _ = try await store.renewLeases(tokens: ["live"], until: now + 600)
        await #expect(try store.expireLeases(now: now + 6).map(\.exportTaskID) == claimed.map(\.exportTaskID))
        await #expect(try store.counts()[.pending] == 1)
        await #expect(try store.counts()[.inProgress] == 1)
        await #expect(try store.expireLeases(now: now + 599).isEmpty)
        var rows: [AuditEntry] = []
        try await store.auditEntries(AuditFilter(outcome: .leaseExpired)) { rows.append($0) }
        #expect(rows.map(\.exportTaskID) == ["e1"])
        // The claim wrote attempt 1 ahead: it may have been sent.
        #expect(rows.first?.delivery == "unknown")
        #expect(rows.first?.attempt == 1)
        #expect(rows.first?.runner == "test:1")
    }

    @Test("audit_log refuses UPDATE and DELETE")
    func auditLogIsAppendOnly() async throws {
        let (store, path) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items(["bad id"]), now: now)
        let db = try SQLiteConnection(path: path)
        let update = #expect(throws: SQLiteError.self) { try db.execute("UPDATE audit_log SET outcome = 'deleted'") }
        #expect(update?.message.contains("append-only") == true)
        #expect(throws: SQLiteError.self) { try db.execute("DELETE FROM audit_log") }
        #expect(try db.scalarInt("SELECT count(*) FROM audit_log") == 1)
    }

    @Test("requeue puts finished tasks back with no attempts and logs it")
    func requeue() async throws {
        let (store, _) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items(["r1", "r2", "r3"]), now: now)
        let claimed = try await store.claim(limit: 2, leaseToken: "t", leaseUntil: now + 300, now: now)
        _ = try await store.apply(claimed.map {
            TaskTransition(task: $0, change: .finish(.failed), attempts: 8,
                           audit: AuditRecord(outcome: .failed, at: now, attempt: 8, httpStatus: 503, delivery: .answered))
        })
        await #expect(throws: CleanerError.self) { try await store.requeue(.state(.pending), now: now) }
        let byID = try await store.requeue(.exportTaskIDs(["r1", "r3", "nope"]), now: now)
        #expect(byID.requeued == 1)
        #expect(byID.notFinished == ["r3"])
        #expect(byID.unknown == ["nope"])
        let byState = try await store.requeue(.state(.failed), now: now)
        #expect(byState.requeued == 1)
        let again = try await store.claim(limit: 10, leaseToken: "u", leaseUntil: now + 300, now: now)
        #expect(again.count == 3)
        #expect(again.allSatisfy { $0.attempts == 0 })
        var requeued = 0
        try await store.auditEntries(AuditFilter(outcome: .requeued)) { _ in requeued += 1 }
        #expect(requeued == 2)
    }

    @Test("requeue of one ID named three times requeues it once, with one audit row (#21)")
    func requeueDuplicateIDs() async throws {
        let (store, _) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items(["k", "m"]), now: now)
        let claimed = try await store.claim(limit: 2, leaseToken: "t", leaseUntil: now + 300, now: now)
        _ = try await store.apply(claimed.map {
            TaskTransition(task: $0, change: .finish(.failed), attempts: 8,
                           audit: AuditRecord(outcome: .failed, at: now, attempt: 8, httpStatus: 503, delivery: .answered))
        })
        let summary = try await store.requeue(.exportTaskIDs(["k", "k", "nope", "k", "nope"]), now: now)
        #expect(summary.requeued == 1)
        #expect(summary.unknown == ["nope"])
        var rows: [String] = []
        try await store.auditEntries(AuditFilter(outcome: .requeued)) { rows.append($0.exportTaskID) }
        #expect(rows == ["k"])
    }

    @Test("status reports counts, the oldest pending task, the next retry and the holder")
    func status() async throws {
        let (store, _) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items(["s1", "s2"]), now: now)
        let task = try await #require(try store.claim(limit: 1, leaseToken: "t", leaseUntil: now + 300, now: now).first)
        _ = try await store.apply([TaskTransition(
            task: task, change: .retry(at: now + 30), attempts: 1,
            audit: AuditRecord(outcome: .retry, at: now + 1, attempt: 1, httpStatus: 503, errorCode: "IOTDA.000001",
                               errorMessage: "busy", delivery: .answered))])
        try await store.heartbeat(startedAt: now, status: "in flight 0", now: now + 2)
        let status = try await store.status(now: now + 5)
        #expect(status.counts.keys.sorted() == TaskState.allCases.map(\.rawValue).sorted())
        #expect(status.counts["pending"] == 2)
        #expect(status.oldestPendingAgeSeconds == 5)
        #expect(status.nextRetryAt == Timestamp.format(now + 30))
        #expect(status.lastError?.errorCode == "IOTDA.000001")
        #expect(status.heldBy.map(\.runner) == ["test:1"])
        await #expect(try store.status(now: now + 60).heldBy.isEmpty)
        try await store.removeHeartbeat()
        await #expect(try store.status(now: now + 5).heldBy.isEmpty)
    }

    @Test("timestamps use SQLite's own format and parse back")
    func timestamps() {
        let date = Date(timeIntervalSince1970: 1_764_431_323.123)
        #expect(Timestamp.format(date) == "2025-11-29T15:48:43.123Z")
        #expect(Timestamp.parse("2025-11-29T15:48:43.123Z") == date)
        #expect(Timestamp.parse("2025-11-29") == Date(timeIntervalSince1970: 1_764_374_400))
        #expect(Timestamp.parse("2025-11-29 15:48") == Date(timeIntervalSince1970: 1_764_431_280))
        #expect(Timestamp.parse("yesterday") == nil)
        #expect(Timestamp.parse("2025-13-01") == nil)
    }
}

extension Date {
    static func + (date: Date, seconds: Int) -> Date { date.addingTimeInterval(TimeInterval(seconds)) }
}
