import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Testing

@Suite("Cleaner service: leases of long requests, outcomes in large batches")
struct LeaseAndBatchTests {
    @Test("a request that outlives lease/3 has its lease renewed while in flight: never expired, never taken over")
    func leaseRenewedInFlight() async throws {
        let harness = try await ServiceHarness.start()
        try await harness.enqueue(["slow"])
        // Held after it started, until the test lets it go: four renewal periods and past the
        // end of the lease it was claimed with.
        harness.transport.gate.hold(["slow"])
        let clock = ManualClock()
        let leaseSeconds: TimeInterval = 30
        // Renewed every 10 s (lease/3); dead leases looked for every 15 s (lease/2).
        let service = harness.service(ServiceHarness.options(lease: .seconds(30)), clock: clock)
        let claimedAt = clock.now()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            #expect(await harness.transport.started.wait { $0.contains("slow") })
            #expect(await clock.waitForSleepers(atLeast: ServiceHarness.idleSleepers))
            #expect(try lease(of: "slow", in: harness.path) == .init(state: "in_progress", expiresAt: Timestamp.format(claimedAt.addingTimeInterval(leaseSeconds))))
            for _ in 1...4 {
                // Each housekeeping pass renews it to a full lease from now, before any sweep.
                #expect(await clock.advanceAndSettle(by: .seconds(10)))
                let expected = Timestamp.format(clock.now().addingTimeInterval(leaseSeconds))
                #expect(try lease(of: "slow", in: harness.path) == .init(state: "in_progress", expiresAt: expected))
            }
            // 40 s in: the lease it was claimed with ended 10 s ago, and a sweep has run since.
            #expect(clock.now().timeIntervalSince(claimedAt) > leaseSeconds)
            await #expect(try harness.audit("slow").isEmpty)
            harness.transport.gate.open()
            try await group.waitForAll()
        }
        #expect(try harness.rows()["slow"]?.state == "deleted")
        #expect(try harness.rows()["slow"]?.attempts == 1)
        await #expect(try harness.audit("slow").map(\.outcome) == ["deleted"])
        #expect(try SQLiteConnection(path: harness.path).scalarInt("SELECT count(*) FROM audit_log WHERE outcome = 'lease_expired'") == 0)
        #expect(!harness.logs.lines.contains { $0.message.hasPrefix("lease expired") })
        #expect(service.statistics.staleOutcomes == 0)
        #expect(harness.simulator.attempts(for: "slow") == 1)
        try await harness.shutdown()
    }

    @Test("outcomes pile up while writes fail: written 512 to a transaction, every one committed")
    func recorderBatchesOver512() async throws {
        let tasks = 1_300
        let harness = try await ServiceHarness.start(concurrency: 64)
        let ids = (1...tasks).map { String(format: "batch-%04d", $0) }
        try await harness.enqueue(ids)
        // The database refuses every write until the last request has started: the outcomes
        // wait in the recorder, which retries with backoff.
        harness.store.failingWrites.withLock { $0 = .max }
        let service = harness.service(ServiceHarness.options(concurrency: 64, rate: 100_000))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            #expect(await harness.transport.started.wait(timeout: .seconds(60)) { $0.count >= tasks })
            // At most 64 requests are still in flight: well over 512 outcomes wait.
            harness.store.failingWrites.withLock { $0 = 0 }
            try await group.waitForAll()
        }
        let batches = harness.store.applied.events.map(\.count)
        #expect(batches.contains(512), "batches: \(batches)")
        #expect(batches.allSatisfy { $0 <= 512 }, "batches: \(batches)")
        #expect(batches.reduce(0, +) == tasks)
        let committed = harness.store.committed
        #expect(committed.allSatisfy { $0.held && $0.outcome == .deleted })
        #expect(Set(committed.map(\.id)) == Set(ids))
        #expect(try harness.rows().values.filter { $0.state == "deleted" && $0.attempts == 1 }.count == tasks)
        #expect(harness.simulator.counters.requests == tasks)
        #expect(harness.simulator.counters.successfulDeletes == tasks)
        #expect(harness.logs.lines.contains { $0.message == "cannot write outcomes; retrying" })
        #expect(harness.logs.lines.contains { $0.message == "outcomes written after retrying" })
        #expect(service.statistics[.deleted] == tasks)
        try await harness.shutdown()
    }

    struct Lease: Equatable {
        var state: String
        var expiresAt: String?
    }

    private func lease(of id: String, in path: String) throws -> Lease? {
        let db = try SQLiteConnection(path: path)
        let statement = try db.prepare("SELECT state, lease_expires_at FROM export_tasks WHERE export_task_id = ?1")
        defer { statement.reset() }
        statement.bind(id, at: 1)
        guard try statement.step() else { return nil }
        return Lease(state: statement.string(0), expiresAt: statement.optionalString(1))
    }
}
