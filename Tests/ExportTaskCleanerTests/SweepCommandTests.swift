import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import Testing

/// `sweep` and `check --probe`'s list request through the built binary (docs/commands.md):
/// what an operator sees, and the exit statuses.
@Suite("Sweep: the command, through the binary", .serialized)
struct SweepCommandTests {
    private func run(_ world: World, _ arguments: [String], config: [String: Any]? = [:],
                     environment: [String: String]? = nil) async throws -> (status: Int32, out: String, err: String) {
        let child = try world.launch(arguments, config: config, environment: environment)
        let status = try await child.exit(within: .seconds(120))
        return (status, child.stdoutText, child.stderrText)
    }

    @Test("dry run counts, sweep queues the old finished ones, again queues nothing, run --drain deletes them")
    func sweepThenDrain() async throws {
        let world = try await World.start()
        let (tasks, expected) = SweepTests.population(300, olderThanDays: 7)
        world.simulator.addExportTasks(tasks)

        // A dry run opens no queue: pointed at a file that does not exist, it creates none.
        let missing = world.folder.appendingPathComponent("never.sqlite3").path
        let untouched = try await run(world, ["sweep", "--dry-run"], config: ["database": missing])
        #expect(untouched.status == 0, "\(untouched.err)")
        #expect(!FileManager.default.fileExists(atPath: missing))

        let dry = try await run(world, ["sweep", "--dry-run"])
        #expect(dry.status == 0, "\(dry.err)")
        #expect(dry.out == "listed 300, finished and old enough \(expected.count), queued 0, already queued 0, skipped \(300 - expected.count) (processing 75, too young \(225 - expected.count), invalid 0)\n")
        #expect(try world.states().isEmpty)

        let first = try await run(world, ["sweep"])
        #expect(first.status == 0, "\(first.err)")
        #expect(first.out.hasPrefix("listed 300, finished and old enough \(expected.count), queued \(expected.count), already queued 0,"))
        #expect(Set(try world.states().keys) == expected)
        #expect(try world.scalar("SELECT count(*) FROM audit_log WHERE outcome = 'queued' AND error_message LIKE 'queued by sweep command: %'") == expected.count)

        let second = try await run(world, ["sweep", "--older-than", "168h"])
        #expect(second.status == 0)
        #expect(second.out.contains("queued 0, already queued \(expected.count),"))

        let drain = try await run(world, ["run", "--drain"])
        #expect(drain.status == 0, "\(drain.err.suffix(2_000))")
        #expect(world.simulator.deletedIDs == expected)
        #expect(try world.states().values.allSatisfy { $0 == "deleted" })
        #expect(world.simulator.counters.signatureFailures == 0)
        let verify = try await run(world, ["audit", "--verify"])
        #expect(verify.status == 0, "\(verify.out)\(verify.err)")
        try await world.stop()
    }

    @Test("temporary credentials that expire mid-sweep are renewed: 7 pages of a second each, keys of 4 s")
    func temporaryCredentialsRenewed() async throws {
        let simulator = try await IoTDASimulator.start(
            .init(projectID: EndToEndTests.project, auth: .metadataCredentials, region: "cn-north-4",
                  latency: .seconds(1), metadata: .init(credentialLifetime: .seconds(4))),
            logger: Logger(label: "sweep-sim") { _ in SwiftLogNoOpLogHandler() })
        let folder = try TestSupport.makeFolder("sweep-metadata")
        let world = World(simulator: simulator, folder: folder, database: folder.appendingPathComponent("queue.sqlite3").path)
        let (tasks, expected) = SweepTests.population(300, olderThanDays: 7)
        simulator.addExportTasks(tasks)
        let swept = try await run(world, ["sweep"], config: ["auth": ["method": "metadata", "metadata_endpoint": simulator.endpoint]],
                                  environment: [:])
        #expect(swept.status == 0, "\(swept.err)")
        #expect(swept.out.hasPrefix("listed 300, finished and old enough \(expected.count), queued \(expected.count),"), "\(swept.out)")
        #expect(simulator.counters.metadataCredentialRequests >= 2, "renewed at least once")
        #expect(simulator.counters.expiredCredentialRequests == 0)
        try await world.stop()
    }

    @Test("run --drain with sweep configured and nothing fed: the service sweeps and deletes exactly the old finished tasks")
    func serviceSweeps() async throws {
        let world = try await World.start()
        let (tasks, expected) = SweepTests.population(200, olderThanDays: 7)
        world.simulator.addExportTasks(tasks)
        let drain = try await run(world, ["run", "--drain"], config: ["sweep": ["every": "1h", "older_than": "7d"]])
        #expect(drain.status == 0, "\(drain.err.suffix(2_000))")
        #expect(world.simulator.deletedIDs == expected)
        #expect(try world.scalar("SELECT count(*) FROM audit_log WHERE outcome = 'queued' AND error_message LIKE 'queued by the service''s sweep: %'") == expected.count)
        #expect(world.simulator.counters.signatureFailures == 0)
        try await world.stop()
    }

    @Test("an invalid listed task: named on stderr, escaped; exit 1; the others queued")
    func invalidTask() async throws {
        let world = try await World.start()
        world.simulator.scriptList([
            .init(status: 200, json: SweepTests.pageJSON(
                [SweepTests.entry("ok-1"), SweepTests.entry("bad\\u001b[2Jid")], marker: SweepTests.marker1)),
            SweepTests.empty,
        ])
        let result = try await run(world, ["sweep"])
        #expect(result.status == 1)
        #expect(result.out.contains("queued 1,") && result.out.contains("invalid 1)"))
        #expect(result.err.contains(#"invalid export task "bad\u{1b}[2Jid": export_task_id: only letters"#), "\(result.err)")
        #expect(!result.err.contains("\u{1B}"))
        try await world.stop()
    }

    @Test("bad usage exits 2; refused credentials exit 3, explained; a 403 names iotda:exporttasks:queryList")
    func exitStatuses() async throws {
        let world = try await World.start()
        let usage = try await run(world, ["sweep", "--older-than", "soon"])
        #expect(usage.status == 2 && usage.err.contains("--older-than: expected an ISO 8601 time"), "\(usage.err)")

        let wrongKey = ["HUAWEICLOUD_SDK_AK": EndToEndTests.key.ak, "HUAWEICLOUD_SDK_SK": "not-the-secret"]
        let refused = try await run(world, ["sweep"], environment: wrongKey)
        #expect(refused.status == 3, "\(refused.err)")
        #expect(refused.err.contains("401, the credentials were refused"), "\(refused.err)")
        #expect(refused.out.hasPrefix("listed 0,"))

        world.simulator.scriptList([.init(status: 403, json: #"{"error_code":"IOTDA.000003","error_msg":"Forbidden"}"#)])
        let forbidden = try await run(world, ["sweep"])
        #expect(forbidden.status == 1)
        #expect(forbidden.err.contains("iotda:exporttasks:queryList"), "\(forbidden.err)")

        world.simulator.scriptList([.init(status: 403, json: #"{"error_code":"IOTDA.000003","error_msg":"Forbidden"}"#)])
        let probe = try await run(world, ["check", "--probe"])
        #expect(probe.status == 1)
        #expect(probe.out.contains("GET export tasks (limit 1): 403") && probe.out.contains("iotda:exporttasks:queryList"), "\(probe.out)")

        let fine = try await run(world, ["check", "--probe"])
        #expect(fine.out.contains("GET export tasks (limit 1): 200: the credentials and the permission to list export tasks work"),
                "\(fine.out)")
        #expect(try world.states().isEmpty)
        try await world.stop()
    }
}
