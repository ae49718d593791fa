import Foundation
import Testing

@testable import ExportTaskCleaner

/// What a sweep writes, on every store (docs/database.md): a `queued` audit row for each task
/// it adds, saying where it came from; nothing for one already queued, nor for a fed one.
@Suite("Store conformance: swept tasks")
struct ConformanceSweepTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("a swept task gets a queued audit row with its note; an ID already queued and a fed one get none", arguments: StoreKind.available)
    func sweptTasksAreAudited(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        _ = try await store.enqueue(TestSupport.items(["fed-1", "swept-dup"]), now: now)
        let note = "queued by sweep command: Success, ended 2026-11-20T10:00:00.000Z, older than 7d"
        let items = ["swept-1", "swept-dup", "swept-2"].map { EnqueueItem(exportTaskID: $0, auditNote: note) }
            + [EnqueueItem(exportTaskID: "fed-2")]
        let summary = try await store.enqueue(items, now: now)
        #expect(summary.queued == 3)
        #expect(summary.alreadyQueued == 1)

        var queued: [AuditEntry] = []
        try await store.auditEntries(AuditFilter(outcome: .queued)) { queued.append($0) }
        #expect(queued.map(\.exportTaskID) == ["swept-1", "swept-2"])
        #expect(queued.allSatisfy { $0.errorMessage == note && $0.attempt == nil && $0.httpStatus == nil && $0.taskID != nil })
        var all = 0
        try await store.auditEntries(AuditFilter()) { _ in all += 1 }
        #expect(all == 2)

        // The chain holds, and the swept tasks are consistent (a queued row finishes nothing).
        let verification = try await store.verifyAuditChain()
        #expect(verification.problem == nil)
        #expect(verification.rows == 2)
        let report = try await store.checkConsistency()
        #expect(report.problems.isEmpty)
        let claimed = try await store.claim(limit: 10, leaseToken: "t", leaseUntil: now + 60, now: now)
        #expect(Set(claimed.map(\.exportTaskID)) == ["fed-1", "swept-dup", "swept-1", "swept-2", "fed-2"])
        await harness.close()
    }
}
