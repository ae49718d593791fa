import Foundation
import Testing

@testable import ExportTaskCleaner

/// The store seam (docs/database.md): claims, leases and the token-guarded writes, the same
/// on every store.
@Suite("Store conformance: claims and leases")
struct ConformanceClaimTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("a claim takes due tasks in order, at most the limit, and skips scheduled ones", arguments: StoreKind.available)
    func claimOrderAndLimit(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items((1...5).map { "t\($0)" }), now: now)
        let first = try await store.claim(limit: 2, leaseToken: "a", leaseUntil: now + 300, now: now)
        #expect(first.map(\.exportTaskID) == ["t1", "t2"])
        let retry = TaskTransition(task: first[0], change: .retry(at: now + 60), attempts: 1,
                                   audit: AuditRecord(outcome: .retry, at: now, attempt: 1, httpStatus: 503, delivery: .answered))
        #expect(try await store.apply([retry]) == [true])
        let rest = try await store.claim(limit: 10, leaseToken: "b", leaseUntil: now + 300, now: now)
        #expect(rest.map(\.exportTaskID) == ["t3", "t4", "t5"])
        #expect(try await store.nextDue() == now + 60)
        #expect(try await store.hasUnfinishedTasks())
        let later = try await store.claim(limit: 10, leaseToken: "c", leaseUntil: now + 400, now: now + 61)
        #expect(later.map(\.exportTaskID) == ["t1"])
        #expect(later.first?.attempts == 1)
        #expect(try await store.counts()[.inProgress] == 5)
        await harness.close()
    }

    @Test("the claim writes the attempt ahead; a task given back unsent gets it back; the sweep records it as maybe sent",
          arguments: StoreKind.available)
    func attemptsWrittenAhead(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items(["a", "b"]), now: now)
        let claimed = try await store.claim(limit: 2, leaseToken: "t", leaseUntil: now + 30, now: now)
        #expect(claimed.map(\.attempts) == [0, 0])
        #expect(try await harness.attempts() == ["a": 1, "b": 1])
        let a = try #require(claimed.first)
        let release = TaskTransition(task: a, change: .release,
                                     audit: AuditRecord(outcome: .released, at: now, errorMessage: "not sent: shutting down"))
        #expect(try await store.apply([release]) == [true])
        #expect(try await harness.attempts() == ["a": 0, "b": 1])
        #expect(try await store.expireLeases(now: now + 31).map(\.exportTaskID) == ["b"])
        var rows: [AuditEntry] = []
        try await store.auditEntries(AuditFilter(exportTaskID: "b")) { rows.append($0) }
        #expect(rows.map(\.outcome) == ["lease_expired"])
        #expect(rows.first?.attempt == 1 && rows.first?.delivery == "unknown")
        let again = try #require(try await store.claim(limit: 2, leaseToken: "u", leaseUntil: now + 90, now: now + 32)
            .first { $0.exportTaskID == "b" })
        #expect(again.attempts == 1 && again.unansweredAttempts == 1)
        #expect(try await store.checkConsistency().inconsistent == 0)
        await harness.close()
    }

    @Test("a finish with a stale lease token changes nothing; its answer is on record, lease lost", arguments: StoreKind.available)
    func staleFinishChangesNothing(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items(["x1"]), now: now)
        let original = try #require(try await store.claim(limit: 1, leaseToken: "old", leaseUntil: now + 10, now: now).first)
        #expect(try await store.expireLeases(now: now + 11).map(\.exportTaskID) == ["x1"])
        let takeover = try #require(try await store.claim(limit: 1, leaseToken: "new", leaseUntil: now + 400, now: now + 11).first)
        let late = TaskTransition(task: original, change: .finish(.deleted), attempts: 1,
                                  audit: AuditRecord(outcome: .deleted, at: now + 12, attempt: 1, httpStatus: 204, delivery: .answered))
        #expect(try await store.apply([late]) == [false])
        #expect(try await store.counts()[.inProgress] == 1)
        let current = TaskTransition(task: takeover, change: .finish(.notFound), attempts: 1,
                                     audit: AuditRecord(outcome: .notFound, at: now + 13, attempt: 1, httpStatus: 404,
                                                        errorCode: "IOTDA.014016", requestID: "req-1", delivery: .answered))
        #expect(try await store.apply([current, current]) == [true, false])
        #expect(try await store.counts()[.notFound] == 1)
        var rows: [AuditEntry] = []
        try await store.auditEntries(AuditFilter(exportTaskID: "x1")) { rows.append($0) }
        #expect(rows.map(\.outcome) == ["lease_expired", "deleted", "not_found", "not_found"])
        #expect(rows.map(\.leaseLost) == [false, true, false, true])
        #expect(rows.map(\.attempt) == [1, 1, 1, 1])
        #expect(rows.map(\.runner) == ["test:1", "test:1", "test:1", "test:1"])
        #expect(rows[2].requestID == "req-1" && rows[2].errorCode == "IOTDA.014016" && rows[2].httpStatus == 404)
        #expect(try await store.verifyAuditChain().problem == nil)
        await harness.close()
    }

    @Test("renewal extends live leases only; expiry returns the rest with a lease_expired row", arguments: StoreKind.available)
    func renewalAndExpiry(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items(["e1", "e2"]), now: now)
        let dead = try await store.claim(limit: 1, leaseToken: "dead", leaseUntil: now + 5, now: now)
        let live = try await store.claim(limit: 1, leaseToken: "live", leaseUntil: now + 500, now: now)
        #expect(try await store.renewLeases(tokens: ["live", "unknown"], until: now + 600) == Set(live.map(\.id)))
        #expect(try await store.expireLeases(now: now + 6).map(\.exportTaskID) == dead.map(\.exportTaskID))
        #expect(try await store.renewLeases(tokens: ["dead"], until: now + 600).isEmpty)
        #expect(try await store.counts()[.pending] == 1)
        #expect(try await store.expireLeases(now: now + 599).isEmpty)
        #expect(try await store.expireLeases(now: now + 601).map(\.exportTaskID) == live.map(\.exportTaskID))
        var rows: [AuditEntry] = []
        try await store.auditEntries(AuditFilter(outcome: .leaseExpired)) { rows.append($0) }
        #expect(rows.map(\.exportTaskID) == ["e1", "e2"])
        #expect(rows.allSatisfy { $0.delivery == "unknown" && $0.attempt == 1 })
        #expect(try await store.checkConsistency().inconsistent == 0)
        await harness.close()
    }

    @Test("counts another tool set to the largest integer stop neither the claim nor the lease sweep", arguments: StoreKind.available)
    func hostileCounts(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items(["h1"]), now: now)
        try await harness.execute("UPDATE export_tasks SET attempts = 9223372036854775807, unanswered_attempts = 9223372036854775807")
        let claimed = try await store.claim(limit: 1, leaseToken: "t", leaseUntil: now + 5, now: now)
        #expect(claimed.map(\.attempts) == [QueueLimits.maximumAttempts])
        #expect(claimed.map(\.unansweredAttempts) == [QueueLimits.maximumAttempts])
        #expect(try await store.expireLeases(now: now + 6).map(\.exportTaskID) == ["h1"])
        #expect(try await harness.attempts() == ["h1": QueueLimits.maximumAttempts + 1])
        await harness.close()
    }

    @Test("every outcome finishes its task in its state, with its audit row", arguments: StoreKind.available)
    func everyOutcome(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        let finals: [(TaskState, AuditOutcome, Int?)] = [
            (.deleted, .deleted, 204), (.notFound, .notFound, 404), (.notFoundAfterUnknown, .notFoundAfterUnknown, 404),
            (.forbidden, .forbidden, 403), (.rejected, .rejected, 400), (.failed, .failed, 503), (.invalid, .invalid, nil),
        ]
        _ = try await store.enqueue(TestSupport.items(finals.map { "o-\($0.0.rawValue)" }), now: now)
        let claimed = try await store.claim(limit: 10, leaseToken: "t", leaseUntil: now + 60, now: now)
        let transitions = zip(claimed, finals).map { task, final in
            TaskTransition(task: task, change: .finish(final.0), attempts: final.2 == nil ? 0 : 1,
                           audit: AuditRecord(outcome: final.1, at: now + 1, attempt: final.2 == nil ? nil : 1,
                                              durationMilliseconds: 7, httpStatus: final.2,
                                              delivery: final.2 == nil ? nil : .answered))
        }
        #expect(try await store.apply(transitions) == Array(repeating: true, count: finals.count))
        let counts = try await store.counts()
        for (state, _, _) in finals { #expect(counts[state] == 1, "\(state)") }
        #expect(try await store.hasUnfinishedTasks() == false)
        #expect(try await store.nextDue() == nil)
        var outcomes: [String] = []
        try await store.auditEntries(AuditFilter()) { outcomes.append($0.outcome) }
        #expect(outcomes == finals.map(\.1.rawValue))
        #expect(try await store.checkConsistency().inconsistent == 0)
        #expect(try await store.verifyAuditChain().rows == finals.count)
        await harness.close()
    }

    @Test("two services on one queue never claim the same task", arguments: StoreKind.available)
    func concurrentClaimersAreDisjoint(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let second = try await harness.another(runner: "test:2")
        _ = try await harness.store.enqueue(TestSupport.items((1...2_000).map { "task-\($0)" }), now: now)
        let now = self.now
        @Sendable func drain(_ store: any QueueStore, _ name: String) async throws -> [Int] {
            var ids: [Int] = []
            for round in 0..<10_000 {
                let batch = try await store.claim(limit: 7, leaseToken: "\(name)-\(round)", leaseUntil: now + 300, now: now)
                if batch.isEmpty { break }
                ids += batch.map(\.id)
            }
            return ids
        }
        async let a = drain(harness.store, "a")
        async let b = drain(second, "b")
        let (left, right) = try await (a, b)
        #expect(left.count + right.count == 2_000)
        #expect(Set(left).isDisjoint(with: Set(right)))
        await second.close()
        await harness.close()
    }
}

extension Date {
    static func + (date: Date, seconds: Int) -> Date { date.addingTimeInterval(TimeInterval(seconds)) }
}
