import AsyncHTTPClient
import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("The demo: the real service against the simulator, and the simulate command")
struct DemoTests {
    static let quiet = Logger(label: "demo-test") { _ in SwiftLogNoOpLogHandler() }

    @Test("drains N tasks of the realistic mix; outcomes add up; signatures all pass; the summary names every outcome")
    func drainsRealisticMix() async throws {
        let parent = try TestSupport.makeFolder("demo")
        defer { try? FileManager.default.removeItem(at: parent) }
        let progress = EventLog<Demo.Progress>()
        let report = try await Demo.run(
            .init(tasks: 60, concurrency: 8, latency: .milliseconds(2), parentFolder: parent,
                  progressInterval: .milliseconds(50)),
            logger: Self.quiet, progress: { progress.append($0) })

        #expect(!report.interrupted)
        #expect((report.counts[.pending] ?? 0) + (report.counts[.inProgress] ?? 0) == 0)
        #expect(report.unfinished == 0)
        let outcomes: [TaskState] = [.deleted, .notFound, .forbidden, .rejected, .failed, .invalid]
        // 60 fed, and 58 swept: of the 120 the simulator lists, the finished ones older than 7 days.
        #expect(report.tasks == 118)
        #expect(report.sweep?.hasPrefix("listed 120, finished and old enough 58, queued 58, already queued 0") == true)
        #expect(outcomes.reduce(0) { $0 + (report.counts[$1] ?? 0) } == 118)
        #expect(report.finished == 118)
        #expect(report.signatureFailures == 0)
        #expect((report.counts[.deleted] ?? 0) > 0)
        // Every retry was answered by a scripted 429 or 503; every request was counted.
        #expect(report.retries == report.tooManyRequests + report.serverErrors)
        #expect(report.requests == 118 + report.retries)
        #expect(report.signing == .v11HMACSHA256)

        let summary = report.summary
        for name in ["deleted", "not_found", "forbidden", "rejected", "failed", "invalid",
                     "requests sent", "retries", "429s seen", "5xx seen", "throughput", "elapsed", "signature failures"] {
            #expect(summary.contains(name), "\(name)")
        }
        #expect(summary.contains(report.databasePath))
        #expect(summary.contains("export-task-cleaner status --config \(report.configPath)"))
        #expect(summary.contains("export-task-cleaner audit --config \(report.configPath) --format table | tail"))
        #expect(!summary.contains("in_progress"))
        // No answer was lost: no row for a 404 after one.
        #expect(!summary.contains("not_found_after_unknown"))

        // The queue is where the summary says, in the folder made for it, with the IDs of the run.
        #expect(report.databasePath.hasPrefix(parent.path + "/export-task-cleaner-demo-"))
        let store = try SQLiteQueueStore(path: report.databasePath)
        await #expect(try store.counts() == report.counts)
        var audited: Set<String> = []
        try await store.auditEntries(AuditFilter()) { audited.insert($0.exportTaskID) }
        #expect(audited.filter { $0.hasPrefix("demo-") } == Set((1...60).map(Demo.exportTaskID)))
        #expect(audited.count == 118)
        #expect(summary.contains("Sweep (finished export tasks older than 7d): listed 120"))

        // The configuration it wrote opens that database and holds no secret.
        let configuration = try ConfigurationLoader.load(path: report.configPath)
        #expect(configuration.database == report.databasePath)
        #expect(configuration.endpoint == report.endpoint)
        #expect(configuration.projectID == Demo.projectID)
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report.configPath)))
        #expect((object as? [String: String]).map { Set($0.keys) } == ["database", "endpoint", "region", "project_id"])

        // Progress went up to every task, never beyond.
        let seen = progress.events
        #expect(seen.allSatisfy { $0.done <= 118 && $0.total == 118 && $0.inFlight <= 8 })
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.done <= $1.done })
    }

    @Test("N out of range is refused as bad usage")
    func refusesOutOfRange() async throws {
        for tasks in [0, 1_000_001] {
            await #expect(throws: CleanerError.self) {
                _ = try await Demo.run(.init(tasks: tasks), logger: Self.quiet)
            }
        }
        do {
            _ = try await Demo.run(.init(tasks: 10, concurrency: 0), logger: Self.quiet)
            Issue.record("concurrency 0 was accepted")
        } catch let error as CleanerError {
            #expect(error.exitStatus == 2)
        }
    }

    @Test("IDs are demo-000001 …, at least six digits")
    func exportTaskIDs() {
        #expect(Demo.exportTaskID(1) == "demo-000001")
        #expect(Demo.exportTaskID(999_999) == "demo-999999")
        #expect(Demo.exportTaskID(1_000_000) == "demo-1000000")
        #expect(ExportTaskID.isValid(Demo.exportTaskID(1_000_000)))
    }

    // MARK: simulate

    static var binary: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/export-task-cleaner")
    }

    /// The built binary, when it is at least as new as the command's source (`swift test` may not relink it).
    static var binaryIsCurrent: Bool {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/export-task-cleaner/SimulateCommand.swift")
        let manager = FileManager.default
        guard manager.isExecutableFile(atPath: binary.path),
              let built = try? manager.attributesOfItem(atPath: binary.path)[.modificationDate] as? Date,
              let written = try? manager.attributesOfItem(atPath: source.path)[.modificationDate] as? Date
        else { return false }
        return built >= written
    }

    @Test("simulate: listens, checks signatures with the key from --sk-file, prints its counters as JSON on SIGTERM",
          .enabled(if: binaryIsCurrent, "needs a current .build/debug/export-task-cleaner"))
    func simulateCommand() async throws {
        let folder = try TestSupport.makeFolder("simulate")
        defer { try? FileManager.default.removeItem(at: folder) }
        let secret = "simulate-secret-\(UInt64.random(in: 0 ... .max))"
        let skFile = folder.appendingPathComponent("sk")
        try Data(secret.utf8).write(to: skFile)

        let process = Process()
        let stdout = Pipe()
        process.executableURL = Self.binary
        process.arguments = ["simulate", "--port", "0", "--mix", "delete", "--latency-ms", "1",
                             "--ak", "SIMULATEAK0000000001", "--sk-file", skFile.path, "--project-id", "sim-project"]
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        // The first line names the endpoint.
        let reader = stdout.fileHandleForReading
        var head = Data()
        while !head.contains(UInt8(ascii: "\n")) {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            head.append(chunk)
        }
        let firstLine = String(decoding: head, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        #expect(firstLine.hasPrefix("listening on http://127.0.0.1:"))
        let endpoint = String(firstLine.dropFirst("listening on ".count))

        let client = try IoTDAClient(
            configuration: .init(endpoint: endpoint, credentials: .accessKey(AccessKey(ak: "SIMULATEAK0000000001", sk: secret)),
                                 signing: .v11HMACSHA256, region: "cn-north-4", concurrency: 2, requestTimeout: .seconds(10)),
            logger: Self.quiet)
        let badClient = try IoTDAClient(
            configuration: .init(endpoint: endpoint, credentials: .accessKey(AccessKey(ak: "SIMULATEAK0000000001", sk: "wrong")),
                                 signing: .v11HMACSHA256, region: "cn-north-4", concurrency: 1, requestTimeout: .seconds(10)),
            logger: Self.quiet)
        let first = await client.delete(DeleteRequest(exportTaskID: "one", projectID: "sim-project"))
        let second = await client.delete(DeleteRequest(exportTaskID: "one", projectID: "sim-project"))
        let refused = await badClient.delete(DeleteRequest(exportTaskID: "two", projectID: "sim-project"))
        try await client.shutdown()
        try await badClient.shutdown()
        #expect(first.httpStatus == 204)
        #expect(second.httpStatus == 404)
        #expect(refused.httpStatus == 401)

        kill(process.processIdentifier, SIGTERM)
        let rest = reader.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
        let text = String(decoding: head + rest, as: UTF8.self)
        let lines = text.split(separator: "\n")
        #expect(lines.count == 2)
        let json = try #require(lines.last.map { Data($0.utf8) })
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(object["requests"] as? Int == 3)
        #expect(object["successful_deletes"] as? Int == 1)
        #expect(object["signature_failures"] as? Int == 1)
        #expect(object["rate_limited"] as? Int == 0)
        #expect((object["max_in_flight"] as? Int ?? 0) >= 1)
        let byStatus = try #require(object["responses_by_status"] as? [String: Int])
        #expect(byStatus == ["204": 1, "404": 1, "401": 1])
        #expect(!text.contains(secret))
    }
}
