@testable import ExportTaskCleaner
import Foundation
import IoTDASimulator
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

/// The service's own sweep (docs/configuration.md, `sweep`): its configuration, and a service
/// that finds its work and drains it with nothing fed.
@Suite("Sweep: the service's periodic sweep")
struct SweepServiceTests {
    func parse(_ sweep: String) throws -> Configuration {
        try ConfigurationLoader.parse(Array(#"{"region": "cn-north-4", "project_id": "p1", "sweep": \#(sweep)}"#.utf8),
                                      source: "config.json")
    }

    @Test("sweep: absent or null is off; every and older_than are ages in range")
    func configuration() throws {
        #expect(try ConfigurationLoader.parse(Array(#"{"region": "cn-north-4", "project_id": "p1"}"#.utf8), source: "c").sweep == nil)
        #expect(try parse("null").sweep == nil)
        #expect(try parse(#"{"every": "1h"}"#).sweep == Configuration.Sweep(every: .seconds(3_600), olderThan: "7d"))
        #expect(try parse(#"{"every": "15m", "older_than": "36h"}"#).sweep == Configuration.Sweep(every: .seconds(900), olderThan: "36h"))
        #expect(try parse(#"{"every": "30d"}"#).sweep?.every == .seconds(30 * 86_400))
    }

    @Test("sweep: refused values name the key and line", arguments: [
        (#"{}"#, "sweep.every: missing"), (#"{"every": "59s"}"#, "sweep.every: expected an age from 1m to 30d"),
        (#"{"every": "31d"}"#, "sweep.every: expected an age"), (#"{"every": 3600}"#, "sweep.every: expected a string"),
        (#"{"every": "1h", "older_than": "2026-01-01"}"#, "sweep.older_than: expected an age"),
        (#"{"every": "1h", "older_than": "36526d"}"#, "sweep.older_than: expected an age"),
        (#"{"every": "1h", "often": true}"#, "sweep.often: unknown key"), (#""1h""#, "sweep: expected an object"),
    ])
    func refused(sweep: String, message: String) {
        #expect {
            try parse(sweep)
        } throws: { error in
            ((error as? CleanerError)?.message ?? "").contains(message)
        }
    }

    @Test("with sweep configured and nothing fed, run --drain sweeps first, then deletes exactly the old finished tasks")
    func serviceSweepsAndDrains() async throws {
        let harness = try await ServiceHarness.start()
        let (tasks, expected) = SweepTests.population(300, olderThanDays: 7)
        harness.simulator.addExportTasks(tasks)
        let service = CleanerService(
            options: ServiceHarness.options(), store: harness.store.inner, transport: harness.client,
            retry: .exponentialJitter(maxAttempts: 8, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)),
            random: SeededRandomSource(seed: 1),
            sweeping: .init(schedule: .init(every: .seconds(3_600), olderThan: "7d"), queue: harness.store.inner,
                            lister: harness.client),
            logger: harness.logs.logger())
        try await service.run()
        #expect(service.outcome == .drained)
        #expect(harness.simulator.deletedIDs == expected)
        #expect(harness.simulator.counters.signatureFailures == 0)
        var queued: [AuditEntry] = []
        try await harness.store.inner.auditEntries(AuditFilter(outcome: .queued)) { queued.append($0) }
        #expect(Set(queued.map(\.exportTaskID)) == expected)
        #expect(queued.allSatisfy { ($0.errorMessage ?? "").hasPrefix("queued by the service's sweep: ") })
        #expect(harness.logs.lines.contains { $0.message == "sweep finished" && $0.metadata["queued"] == "\(expected.count)" })
        try await harness.shutdown()
    }

    @Test("a 401 on the list opens the service's credential pause, and run --drain exits as refused")
    func refusedListPausesTheService() async throws {
        let harness = try await ServiceHarness.start()
        harness.simulator.addExportTasks(SweepTests.population(20, olderThanDays: 1).tasks)
        harness.simulator.scriptList([.init(status: 401, json: #"{"error_code":"IOTDA.000002","error_msg":"refused"}"#)])
        let service = CleanerService(
            options: ServiceHarness.options(), store: harness.store.inner, transport: harness.client,
            retry: .exponentialJitter(maxAttempts: 8, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)),
            sweeping: .init(schedule: .init(every: .seconds(3_600), olderThan: "1d"), queue: harness.store.inner,
                            lister: harness.client),
            logger: harness.logs.logger())
        await #expect(throws: CleanerError.self) { try await service.run() }
        #expect(service.outcome == .credentialsRefused, "\(harness.logs.allText)")
        #expect(harness.logs.lines.contains { $0.message == "credentials refused; requests paused" })
        #expect(harness.logs.lines.contains { $0.message == "sweep stopped" })
        try await harness.shutdown()
    }

    @Test("before the credentials are verified, a list request and a delete are never in flight together: a bad key is refused once",
          arguments: 0..<3)
    func singleFlightUntilVerified(round: Int) async throws {
        let harness = try await ServiceHarness.start(
            simulator: .init(latency: .milliseconds(50)), clientKey: AccessKey(ak: ServiceHarness.key.ak, sk: "not-the-secret"))
        harness.simulator.addExportTasks(SweepTests.population(20, olderThanDays: 1).tasks)
        try await harness.enqueue((1...10).map { "fed-\($0)" })
        let service = CleanerService(
            options: ServiceHarness.options(), store: harness.store.inner, transport: harness.client,
            retry: .exponentialJitter(maxAttempts: 8, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)),
            sweeping: .init(schedule: .init(every: .seconds(3_600), olderThan: "1d"), queue: harness.store.inner,
                            lister: harness.client),
            logger: harness.logs.logger())
        await #expect(throws: CleanerError.self) { try await service.run() }
        let counters = harness.simulator.counters
        #expect(counters.maxInFlight == 1)
        #expect(counters.authFailures == 1, "\(counters.requests) requests")
        try await harness.shutdown()
    }

    /// Old finished tasks `numbers` (record IDs), ended 10 days before `now`.
    static func oldTasks(_ numbers: ClosedRange<Int>, now: Date) -> [IoTDASimulator.ExportTask] {
        numbers.map { number in
            let created = now.addingTimeInterval(-10 * 86_400)
            return .init(exportTaskID: IoTDASimulator.ExportTask.recordID(number), status: number % 2 == 0 ? "Success" : "Failed",
                         createTime: created, endTime: created.addingTimeInterval(3_600))
        }
    }

    @Test("the service sweeps at start and again sweep.every after, on its clock")
    func periodic() async throws {
        let harness = try await ServiceHarness.start()
        let clock = ManualClock()
        let first = Self.oldTasks(1...10, now: clock.now())
        harness.simulator.addExportTasks(first)
        let service = CleanerService(
            options: ServiceHarness.options(drain: false), store: harness.store, transport: harness.transport,
            retry: .exponentialJitter(maxAttempts: 8, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)), clock: clock,
            random: SeededRandomSource(seed: 1),
            sweeping: .init(schedule: .init(every: .seconds(600), olderThan: "7d"), queue: harness.store.inner, lister: harness.client),
            logger: harness.logs.logger())
        let sweeps = { harness.logs.lines.filter { $0.message == "sweep finished" }.count }
        /// Moves the clock on in small steps until `done` holds, at most `steps` of them: after
        /// each, until the service sleeps again and the simulator has answered what it was sent
        /// (a bounded watch: the simulator sends no events).
        func advance(until done: () -> Bool, step: Duration = .milliseconds(10), steps: Int = 2_000) async throws -> Bool {
            for _ in 0..<steps where !done() {
                clock.advance(by: step)
                guard await clock.waitForSleepers(atLeast: ServiceHarness.idleSleepers + 1),
                      try await eventually(timeout: .seconds(10), {
                          harness.simulator.counters.inFlight == 0 && service.requestsInFlight.load(ordering: .relaxed) == 0
                      })
                else { return false }
            }
            return done()
        }
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                let firstIDs = Set(first.map(\.exportTaskID))
                #expect(try await advance { sweeps() == 1 && harness.simulator.deletedIDs == firstIDs },
                        "sweeps \(sweeps()), deleted \(harness.simulator.deletedIDs.count), \(harness.logs.allText.suffix(3_000))")
                #expect(harness.simulator.counters.listRequests == 2)

                // New tasks wait for the next sweep, sweep.every after the first ended.
                let second = Self.oldTasks(11...15, now: clock.now())
                harness.simulator.addExportTasks(second)
                #expect(await clock.advanceAndSettle(by: .seconds(500)))
                #expect(sweeps() == 1 && harness.simulator.counters.listRequests == 2)
                let allIDs = firstIDs.union(second.map(\.exportTaskID))
                #expect(try await advance(until: { sweeps() == 2 && harness.simulator.deletedIDs == allIDs }, step: .seconds(1), steps: 200),
                        "sweeps \(sweeps()), deleted \(harness.simulator.deletedIDs.count), lists \(harness.simulator.counters.listRequests), \(harness.logs.allText.suffix(3_000))")
                #expect(harness.simulator.counters.listRequests == 4)
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        var queued = 0
        try await harness.store.inner.auditEntries(AuditFilter(outcome: .queued)) { _ in queued += 1 }
        #expect(queued == 15)
        try await harness.shutdown()
    }
}
