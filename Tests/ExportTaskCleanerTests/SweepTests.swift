import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import Synchronization
import Testing

/// A clock that never sleeps: it records each sleep asked of it, and its instant stands still.
final class RecordingClock: ServiceClock {
    private let base = ContinuousClock.now
    private let recorded = Mutex<[Duration]>([])

    var sleeps: [Duration] { recorded.withLock { $0 } }

    func now() -> Date { Date() }
    func instant() -> ContinuousClock.Instant { base }
    func sleep(until deadline: ContinuousClock.Instant) async throws {
        try Task.checkCancellation()
        recorded.withLock { $0.append(deadline - base) }
    }
}

/// Sweeps against the simulator (docs/commands.md, "sweep"): every status over the last weeks,
/// signed requests checked by the simulator, and every hostile answer.
@Suite("Sweep: ListExportTasks into the queue")
struct SweepTests {
    static let day: TimeInterval = 86_400

    /// `count` export tasks, newest first by ID, one every 2 hours going back: statuses cycle
    /// Success, Failed, Processing, Success (without `end_time` when processing), ending an
    /// hour after they were created. Returns them and the IDs that ended more than `days` ago.
    static func population(_ count: Int, olderThanDays days: Double, now: Date = Date())
        -> (tasks: [IoTDASimulator.ExportTask], expected: Set<String>) {
        var tasks: [IoTDASimulator.ExportTask] = []
        var expected = Set<String>()
        let cutoff = now.addingTimeInterval(-days * day)
        for index in 0..<count {
            let created = now.addingTimeInterval(-Double(index) * 7_200 - 3_600 - 600)
            let status = ["Success", "Failed", "Processing", "Success"][index % 4]
            let end = status == "Processing" ? nil : created.addingTimeInterval(3_600)
            let id = IoTDASimulator.ExportTask.recordID(count - index)
            tasks.append(.init(exportTaskID: id, status: status, createTime: created, endTime: end))
            if let end, end < cutoff { expected.insert(id) }
        }
        return (tasks, expected)
    }

    static func sweep(_ client: any ExportTaskLister, olderThan: String = "7d", dryRun: Bool = false,
                      clock: any ServiceClock = RecordingClock(), maximumPages: Int = SweepPager.defaultMaximumPages,
                      project: String = testProject) -> ExportTaskSweep {
        var options = ExportTaskSweep.Options(projectID: project, instanceID: nil, olderThan: olderThan, dryRun: dryRun)
        options.maximumPages = maximumPages
        return ExportTaskSweep(options: options, lister: client,
                               retry: .exponentialJitter(maxAttempts: 5, baseDelay: .milliseconds(100), maxDelay: .seconds(2)),
                               clock: clock, random: SeededRandomSource(seed: 7), logger: quietLogger())
    }

    @Test("a few hundred tasks: the dry run queues nothing, the sweep exactly the old finished ones, again nothing twice; drained, they are deleted",
          arguments: [SigningAlgorithm.sdkHMACSHA256, .v11HMACSHA256])
    func sweepThenDrain(signing: SigningAlgorithm) async throws {
        let harness = try await ServiceHarness.start()
        let (tasks, expected) = Self.population(400, olderThanDays: 7)
        harness.simulator.addExportTasks(tasks)
        let client = try IoTDAClient(
            configuration: .init(endpoint: harness.simulator.endpoint, credentials: .accessKey(ServiceHarness.key),
                                 signing: signing, region: "cn-north-4", concurrency: 1, requestTimeout: .seconds(10)),
            logger: quietLogger())

        let dry = try await Self.sweep(client, dryRun: true, project: ServiceHarness.project).run(store: harness.store.inner)
        #expect(dry.listed == 400)
        #expect(dry.eligible == expected.count)
        #expect(dry.queued == 0)
        #expect(dry.processing == 100)
        #expect(dry.tooYoung == 300 - expected.count)
        #expect(dry.invalid == 0)
        #expect(dry.pages == 9)  // 8 of 50 and the empty one
        #expect(try harness.rows().isEmpty)

        let first = try await Self.sweep(client, project: ServiceHarness.project).run(store: harness.store.inner)
        #expect(first.queued == expected.count)
        #expect(first.alreadyQueued == 0)
        #expect(Set(try harness.rows().keys) == expected)

        let second = try await Self.sweep(client, project: ServiceHarness.project).run(store: harness.store.inner)
        #expect(second.queued == 0)
        #expect(second.alreadyQueued == expected.count)
        #expect(try harness.rows().count == expected.count)

        try await harness.service(ServiceHarness.options()).run()
        #expect(harness.simulator.deletedIDs == expected)
        #expect(try harness.rows().values.allSatisfy { $0.state == "deleted" })
        // Deleted tasks are no longer listed; the rest still are.
        #expect(harness.simulator.exportTasks.count == 400 - expected.count)
        #expect(harness.simulator.counters.signatureFailures == 0)
        #expect(harness.simulator.counters.listRequests == 27)
        try await client.shutdown()
        try await harness.shutdown()
    }

    @Test("temporary keys: the list request carries the signed security token")
    func temporaryKey() async throws {
        let key = AccessKey(ak: "TEMPAK0000000001", sk: "temp-secret", securityToken: "token-\(UInt64.random(in: 0 ... .max))")
        try await withClientSimulator(auth: .accessKey(key)) { simulator in
            simulator.addExportTasks(Self.population(60, olderThanDays: 1).tasks)
            let client = try makeClient(endpoint: simulator.endpoint, credentials: .accessKey(key), signing: .v11HMACSHA256)
            let summary = try await Self.sweep(client, olderThan: "1d", dryRun: true).run(store: nil)
            #expect(summary.listed == 60)
            #expect(simulator.counters.authFailures == 0)
            try await client.shutdown()
        }
    }

    // MARK: Hostile answers

    static let marker1 = "00000000000000000000000f"
    static let marker2 = "00000000000000000000000e"

    static func pageJSON(_ entries: [String], marker: String?) -> String {
        "{\"export_tasks\":[\(entries.joined(separator: ","))],\"page\":{\"count\":\(entries.count)"
            + (marker.map { ",\"marker\":\"\($0)\"" } ?? "") + "}}"
    }

    static func entry(_ id: String, status: String = "Success", end: String = "2020-01-01T00:00:00.000Z") -> String {
        "{\"export_task_id\":\"\(id)\",\"status\":\"\(status)\",\"end_time\":\"\(end)\"}"
    }

    static let empty = IoTDASimulator.ListAnswer(status: 200, json: pageJSON([], marker: nil))

    /// Runs a sweep against the simulator answering `answers`; returns its summary or failure
    /// and the sleeps it asked for.
    func sweep(_ answers: [IoTDASimulator.ListAnswer], maximumPages: Int = 100)
        async throws -> (Result<SweepSummary, SweepFailure>, [Duration], IoTDASimulator.Counters) {
        try await withClientSimulator { simulator in
            simulator.scriptList(answers)
            let client = try makeClient(endpoint: simulator.endpoint)
            let clock = RecordingClock()
            let (store, _) = try TestSupport.makeStore()
            let result: Result<SweepSummary, SweepFailure>
            do throws(SweepFailure) {
                result = .success(try await Self.sweep(client, clock: clock, maximumPages: maximumPages).run(store: store))
            } catch {
                result = .failure(error)
            }
            try await client.shutdown()
            return (result, clock.sleeps, simulator.counters)
        }
    }

    func failure(_ result: Result<SweepSummary, SweepFailure>) -> SweepFailure? {
        if case .failure(let failure) = result { return failure }
        return nil
    }

    @Test("invalid IDs and bad times are counted and skipped, never queued")
    func invalidEntries() async throws {
        let page = Self.pageJSON([
            Self.entry("good-1"), Self.entry("bad id"), Self.entry("../../x"), Self.entry(String(repeating: "x", count: 40)),
            Self.entry("bad-time", end: "2020-01-01 00:00:00"), Self.entry("no-day", end: "2020-02-30T00:00:00.000Z"),
            "{\"export_task_id\":7,\"status\":\"Success\"}", "{\"export_task_id\":\"typed\",\"status\":true}",
            Self.entry("good-2", status: "Failed"),
        ], marker: Self.marker1)
        let (result, _, _) = try await sweep([.init(status: 200, json: page), Self.empty])
        let summary = try result.get()
        #expect(summary.listed == 9)
        #expect(summary.queued == 2)
        #expect(summary.invalid == 7)
        #expect(summary.invalidTasks.map(\.problem).contains("end_time is not yyyy-MM-ddTHH:mm:ss.SSSZ"))
    }

    @Test("an oversized body stops the sweep")
    func oversizedBody() async throws {
        let padding = String(repeating: " ", count: ExportTaskPageParser.maximumBodyBytes)
        let (result, _, _) = try await sweep([.init(status: 200, json: Self.pageJSON([], marker: nil) + padding)])
        #expect(failure(result)?.message.contains("longer than 1048576 bytes") == true)
    }

    @Test("malformed JSON and wrong types stop the sweep", arguments: [
        "{\"export_tasks\":[", "not json", "{\"export_tasks\":{}}", "{\"export_tasks\":[],\"page\":\"x\"}",
        "{\"export_tasks\":[{\"export_task_id\":\"a\"}],\"page\":{\"marker\":15}}",
    ])
    func malformed(body: String) async throws {
        let (result, _, _) = try await sweep([.init(status: 200, json: body)])
        #expect(failure(result)?.code == .runtime)
        #expect(failure(result)?.message.hasPrefix("the list of export tasks: ") == true)
    }

    @Test("a repeated, rising or invalid marker stops the sweep after what it queued", arguments: [
        (marker1, "the server repeated page.marker"), ("00000000000000000000001f", "page.marker did not decrease"),
        ("zz", "page.marker is not 24 hexadecimal digits"),
    ])
    func badMarker(second: String, reason: String) async throws {
        let (result, _, _) = try await sweep([
            .init(status: 200, json: Self.pageJSON([Self.entry("m-1")], marker: Self.marker1)),
            .init(status: 200, json: Self.pageJSON([Self.entry("m-2")], marker: second)),
        ])
        let stopped = try #require(failure(result))
        #expect(stopped.message == "the list of export tasks: \(reason)")
        #expect(stopped.summary.queued == 2)
    }

    @Test("a server that never ends stops after the most pages")
    func endless() async throws {
        let pages = (0..<6).map { index in
            IoTDASimulator.ListAnswer(status: 200, json: Self.pageJSON(
                [Self.entry("e-\(index)")], marker: IoTDASimulator.ExportTask.recordID(1_000 - index)))
        }
        let (result, _, counters) = try await sweep(pages, maximumPages: 5)
        #expect(failure(result)?.message == "the list of export tasks: more than 5 pages: the server does not end the list")
        #expect(counters.listRequests == 5)
    }

    @Test("429 with Retry-After and 5xx are tried again with backoff, then the sweep goes on")
    func retried() async throws {
        let (result, sleeps, counters) = try await sweep([
            .init(status: 429, json: "{\"error_code\":\"IOTDA.021101\",\"error_msg\":\"limit\"}", retryAfterSeconds: 3),
            .init(status: 503, json: "{}"), .init(status: 500, json: "oops"),
            .init(status: 200, json: Self.pageJSON([Self.entry("r-1")], marker: Self.marker1)), Self.empty,
        ])
        #expect(try result.get().queued == 1)
        #expect(sleeps.count == 3)
        #expect(sleeps.first.map { $0 >= .seconds(3) } == true)
        #expect(sleeps.allSatisfy { $0 <= .seconds(3600) })
        #expect(counters.listRequests == 5)
    }

    @Test("5xx for ever: the sweep gives up after its attempts")
    func serverErrorsForEver() async throws {
        let (result, sleeps, counters) = try await sweep(Array(repeating: .init(status: 502, json: "{}"), count: 10))
        #expect(failure(result)?.message == "the list of export tasks failed 5 times")
        #expect(sleeps.count == 4)
        #expect(counters.listRequests == 5)
    }

    @Test("401: the credentials refused, exit status 3, explained")
    func unauthorized() async throws {
        let (result, sleeps, _) = try await sweep([
            .init(status: 401, json: "{\"error_code\":\"IOTDA.000002\",\"error_msg\":\"Authentication failed\"}"),
        ])
        let stopped = try #require(failure(result))
        #expect(stopped.code == .credentialsRefused)
        #expect(stopped.code.exitStatus == 3)
        #expect(stopped.description.contains("401, the credentials were refused"))
        #expect(sleeps.isEmpty)
    }

    @Test("403: names the IAM action iotda:exporttasks:queryList")
    func forbidden() async throws {
        let (result, _, _) = try await sweep([
            .init(status: 403, json: "{\"error_code\":\"IOTDA.000003\",\"error_msg\":\"Forbidden\"}"),
        ])
        let stopped = try #require(failure(result))
        #expect(stopped.code == .runtime)
        #expect(stopped.description.contains("iotda:exporttasks:queryList"))
    }

    @Test("a wrong signature gets 401 from the simulator")
    func wrongKeyRefused() async throws {
        try await withClientSimulator { simulator in
            let client = try makeClient(endpoint: simulator.endpoint,
                                        credentials: .accessKey(AccessKey(ak: testKey.ak, sk: "wrong")))
            await #expect(throws: SweepFailure.self) { try await Self.sweep(client).run(store: nil) }
            #expect(simulator.counters.signatureFailures == 1)
            try await client.shutdown()
        }
    }
}
