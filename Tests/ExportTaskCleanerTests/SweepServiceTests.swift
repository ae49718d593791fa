import ExportTaskCleaner
import Foundation
import IoTDASimulator
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
}
