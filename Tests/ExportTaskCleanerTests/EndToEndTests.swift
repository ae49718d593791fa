import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The built binary, run as a child process the way systemd runs it, against the simulator
/// hosted by the test on 127.0.0.1.
@Suite("End to end: the built binary against the simulator", .serialized)
struct EndToEndTests {
    static let project = "e2e-project"
    static let key = AccessKey(ak: "E2EACCESSKEY00000001", sk: "e2e-secret-\(UInt64.random(in: 0 ... .max))")

    // MARK: Scenarios

    @Test("10,000 tasks of mixed behaviour end exactly as scripted; no ID gets a second 204")
    func mixedBehaviour() async throws {
        let world = try await World.start()
        var expected: [String: String] = [:]
        var ids: [String] = []
        for index in 0..<10_000 {
            let id = String(format: "mix-%05d", index)
            ids.append(id)
            switch index % 20 {
            case 0: world.simulator.script(id, .notFound); expected[id] = "not_found"
            case 1: world.simulator.script(id, .forbidden); expected[id] = "forbidden"
            case 2: world.simulator.script(id, .badRequest); expected[id] = "rejected"
            case 3: world.simulator.script(id, .serverError(status: 503, times: 2)); expected[id] = "deleted"
            case 4: world.simulator.script(id, .tooManyRequests(retryAfterSeconds: 0, times: 1)); expected[id] = "deleted"
            case 5 where index % 100 == 5: world.simulator.script(id, .serverError(status: 500, times: 1_000)); expected[id] = "failed"
            case 6 where index % 200 == 6: world.simulator.script(id, .dropConnection(times: 1)); expected[id] = "deleted"
            default: expected[id] = "deleted"
            }
        }
        ids.append("bad id!")
        expected["bad id!"] = "invalid"
        try await world.enqueue(ids)

        let run = try world.launch(["run", "--drain"], config: ["concurrency": 32, "retry": ["max_attempts": 3, "base_delay_ms": 1, "max_delay_ms": 10]])
        let status = try await run.exit(within: .seconds(240))
        #expect(status == 0, "stderr: \(run.stderrText.suffix(2_000))")

        let states = try world.states()
        #expect(states.count == expected.count)
        let wrong = expected.filter { states[$0.key] != $0.value }
        #expect(wrong.isEmpty, "first differences: \(wrong.prefix(5).map { "\($0.key): \(states[$0.key] ?? "missing") not \($0.value)" })")
        let counters = world.simulator.counters
        #expect(counters.deleteCountByID.values.allSatisfy { $0 == 1 })
        #expect(counters.signatureFailures == 0)
        // One audit row with a status for each request the simulator answered.
        let answered = try world.scalar("SELECT count(*) FROM audit_log WHERE http_status IS NOT NULL")
        #expect(answered == counters.requests - counters.droppedConnections)
        try await world.stop()
    }

    @Test("kill -9 at eight moments, restart, drain: every task finished, nothing deleted twice")
    func killNineAndRestart() async throws {
        let world = try await World.start(latency: .milliseconds(5))
        let ids = (0..<3_000).map { String(format: "kill-%04d", $0) }
        try await world.enqueue(ids)
        // Random moments, from before the first request to well into the work, drawn from a
        // seed that is printed: KILL_SEED=N swift test --filter killNineAndRestart kills at the
        // same moments again (the machine's own timing around them is not replayed).
        let seed = try Self.killSeed()
        let random = SeededRandomSource(seed: seed)
        let moments = (0..<8).map { _ in 20 + Int(random.nextUnit() * 381) }  // 20...400 ms
        print("kill -9 seed: \(seed) (moments \(moments) ms; replay with KILL_SEED=\(seed))")
        let replay = Comment(rawValue: "kill -9 seed \(seed)")
        for moment in moments {
            let run = try world.launch(["run"], config: ["concurrency": 16, "lease_seconds": 5, "request_timeout_ms": 1_000])
            try await Task.sleep(for: .milliseconds(moment))
            run.signal(SIGKILL)
            _ = try await run.exit(within: .seconds(10))
        }
        let drain = try world.launch(["run", "--drain"], config: ["concurrency": 16, "lease_seconds": 5, "request_timeout_ms": 1_000])
        #expect(try await drain.exit(within: .seconds(120)) == 0, "\(replay); stderr: \(drain.stderrText.suffix(2_000))")

        let states = try world.states()
        // A 404 can only follow a request whose answer was lost, and says so.
        #expect(states.values.allSatisfy { $0 == "deleted" || $0 == "not_found_after_unknown" }, replay)
        let counters = world.simulator.counters
        #expect(counters.deleteCountByID.values.allSatisfy { $0 == 1 }, replay)
        #expect(counters.successfulDeletes == ids.count, replay)
        for (id, state) in states where state == "not_found_after_unknown" {
            #expect(counters.deleteCount(for: id) == 1, replay)
        }
        // Every request the server received is on record: per task, at least as many audit
        // rows that may stand for a request (answered or unknown), and as many attempts.
        let records = try world.requestRecords()
        var short: [String] = []
        for id in ids {
            let received = counters.attempts(for: id)
            let record = records[id] ?? (rows: 0, attempts: 0)
            if record.rows < received || record.attempts < received {
                short.append("\(id): \(received) received, \(record.rows) rows, attempts \(record.attempts)")
            }
        }
        #expect(short.isEmpty, "\(replay); \(short.count) tasks short, first: \(short.prefix(5))")
        #expect(try world.scalar("SELECT count(*) FROM audit_log WHERE outcome = 'lease_expired'") > 0, replay)
        // The log's chain and the tasks' consistency with it hold.
        let verify = try world.launch(["audit", "--verify"])
        #expect(try await verify.exit(within: .seconds(30)) == 0, "\(replay); \(verify.stdoutText) \(verify.stderrText)")
        try await world.stop()
    }

    /// The seed of `killNineAndRestart`'s moments: `KILL_SEED` when set, else a fresh one.
    static func killSeed() throws -> UInt64 {
        guard let text = ProcessInfo.processInfo.environment["KILL_SEED"] else { return UInt64.random(in: .min ... .max) }
        guard let seed = UInt64(text.trimmingCharacters(in: .whitespaces)) else {
            throw CleanerError.configuration("KILL_SEED=\(text): expected an unsigned 64-bit integer")
        }
        return seed
    }

    @Test("SIGTERM with requests in flight: exit 0 within the grace, nothing left in progress, no 204 lost")
    func sigtermInFlight() async throws {
        let world = try await World.start(behaviour: .delay(.milliseconds(600), then: .deleteOnce))
        try await world.enqueue((0..<200).map { "term-\($0)" })
        let grace = 2_000
        let run = try world.launch(["run"], config: ["concurrency": 8, "shutdown_grace_ms": grace])
        #expect(try await world.eventually { world.simulator.counters.inFlight >= 4 })
        let sent = ContinuousClock.now
        run.signal(SIGTERM)
        #expect(try await run.exit(within: .seconds(30)) == 0, "stderr: \(run.stderrText.suffix(2_000))")
        #expect(ContinuousClock.now - sent < .milliseconds(grace + 2_000), "the grace is \(grace) ms")
        let states = try world.states()
        #expect(!states.values.contains("in_progress"))
        for id in world.simulator.counters.deletedIDs {
            #expect(states[id] == "deleted", "\(id) got a 204 that was not recorded")
        }
        #expect(states.values.contains("pending"))
        try await world.stop()
    }

    @Test("another process feeds 10,000 IDs in small transactions while the service runs: no SQLITE_BUSY, all processed")
    func feedingWhileRunning() async throws {
        let world = try await World.start()
        let run = try world.launch(["run"], config: ["concurrency": 32, "poll_interval_ms": 50])
        let feeder = try SQLiteConnection(path: world.database)
        for batch in 0..<1_000 {
            try feeder.writeTransaction {
                for index in 0..<10 {
                    try feeder.execute("INSERT OR IGNORE INTO export_tasks(export_task_id) VALUES ('fed-\(batch)-\(index)')")
                }
            }
            if batch % 50 == 0 { await Task.yield() }
        }
        #expect(try await world.eventually(timeout: .seconds(180)) {
            try world.scalar("SELECT count(*) FROM export_tasks WHERE state = 'deleted'") == 10_000
        })
        run.signal(SIGTERM)
        #expect(try await run.exit(within: .seconds(30)) == 0)
        #expect(!run.stderrText.contains("SQLite error"), "\(run.stderrText.suffix(2_000))")
        #expect(!run.stderrText.contains("database is locked"))
        #expect(world.simulator.counters.successfulDeletes == 10_000)
        try await world.stop()
    }

    @Test("run --drain with a key the server refuses: exit 3 naming the key's source, every task left pending")
    func drainRefused() async throws {
        let world = try await World.start()
        try await world.enqueue(["refused-1", "refused-2", "refused-3"])
        let run = try world.launch(["run", "--drain"], environment: [
            "HUAWEICLOUD_SDK_AK": Self.key.ak, "HUAWEICLOUD_SDK_SK": "not-the-secret-the-server-knows",
        ])
        #expect(try await run.exit(within: .seconds(30)) == 3, "\(run.stderrText.suffix(2_000))")
        #expect(run.stderrText.contains("the service refused our credentials (access key E2EA… from environment, signed "), "\(run.stderrText.suffix(2_000))")
        #expect(try world.states().values.allSatisfy { $0 == "pending" })
        #expect(world.simulator.counters.signatureFailures == 1)
        #expect(!run.stderrText.contains("not-the-secret-the-server-knows"))
        try await world.stop()
    }

    @Test("bad environments: each a clear message and its exit status; the queue untouched")
    func badEnvironments() async throws {
        let world = try await World.start()
        try await world.enqueue(["keep-1", "keep-2"])
        let before = try Data(contentsOf: URL(fileURLWithPath: world.database))

        func expectFailure(_ arguments: [String], config: [String: Any] = [:], environment: [String: String]? = nil,
                           status: Int32, mentions: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let run = try world.launch(arguments, config: config, environment: environment)
            let exit = try await run.exit(within: .seconds(30))
            #expect(exit == status, "\(arguments) \(config): \(run.stderrText)", sourceLocation: sourceLocation)
            #expect(run.stderrText.contains(mentions), "\(run.stderrText) should mention \(mentions)", sourceLocation: sourceLocation)
        }
        try await expectFailure(["run", "--drain"], config: ["database": world.folder.appendingPathComponent("missing/q.sqlite3").path],
                                status: 2, mentions: "does not exist")
        try await expectFailure(["status"], config: ["database": "/proc/export-task-cleaner/q.sqlite3"], status: 2, mentions: "database:")

        let corrupt = world.folder.appendingPathComponent("corrupt.sqlite3")
        try Data(repeating: 0x5A, count: 8_192).write(to: corrupt)
        try await expectFailure(["run", "--drain"], config: ["database": corrupt.path], status: 1, mentions: "not a usable SQLite database")
        #expect(try Data(contentsOf: corrupt) == Data(repeating: 0x5A, count: 8_192))

        let newer = world.folder.appendingPathComponent("newer.sqlite3")
        _ = try SQLiteQueueStore(path: newer.path)
        try SQLiteConnection(path: newer.path).execute("PRAGMA user_version = 7")
        try await expectFailure(["run", "--drain"], config: ["database": newer.path], status: 1, mentions: "schema version 7")

        try await expectFailure(["run", "--drain"], environment: [:], status: 2, mentions: "HUAWEICLOUD_SDK_AK")

        let malformed: [(String, String)] = [
            ("{", "not valid JSON"), ("[]", "expected an object"), (#"{"region": "r-1"}"#, "project_id"),
            (#"{"project_id": "p"}"#, "region"), (#"{"region": "r-1", "project_id": "p", "x": 1}"#, "x: unknown key"),
            (#"{"region": "r-1", "project_id": "p", "concurrency": 0}"#, "concurrency"),
            (#"{"region": "r-1", "project_id": "p", "concurrency": "4"}"#, "concurrency"),
            (#"{"region": "r-1", "project_id": "p", "max_requests_per_second": -1}"#, "max_requests_per_second"),
            (#"{"region": "r-1", "project_id": "p", "retry": {"max_attempts": 1000}}"#, "retry.max_attempts"),
            (#"{"region": "r-1", "project_id": "p", "retry": {"base_delay_ms": "1s"}}"#, "retry.base_delay_ms"),
            (#"{"region": "r-1", "project_id": "p", "retry": {"max_delay_ms": 0}}"#, "retry.max_delay_ms"),
            (#"{"region": "r-1", "project_id": "p", "request_timeout_ms": 1}"#, "request_timeout_ms"),
            (#"{"region": "r-1", "project_id": "p", "lease_seconds": 1}"#, "lease_seconds"),
            (#"{"region": "r-1", "project_id": "p", "shutdown_grace_ms": -5}"#, "shutdown_grace_ms"),
            (#"{"region": "r-1", "project_id": "p", "poll_interval_ms": 0}"#, "poll_interval_ms"),
            (#"{"region": "r-1", "project_id": "p", "log_level": "chatty"}"#, "log_level"),
            (#"{"region": "r-1", "project_id": "p", "endpoint": "http://10.0.0.1"}"#, "endpoint"),
            (#"{"region": "r-1", "project_id": "p", "auth": {"method": "basic"}}"#, "auth.method"),
            (#"{"region": "r-1", "project_id": "p", "auth": {"signing": "v4"}}"#, "auth.signing"),
            (#"{"region": "r-1", "project_id": "p", "auth": {"sk": "secret"}}"#, "auth.sk"),
        ]
        #expect(malformed.count == 20)
        for (text, key) in malformed {
            let path = world.folder.appendingPathComponent("bad-\(UUID().uuidString).json").path
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            let run = try world.launch(["run", "--drain", "--config", path], config: nil)
            #expect(try await run.exit(within: .seconds(30)) == 2, "\(text)")
            #expect(run.stderrText.contains(key), "\(text): \(run.stderrText)")
            #expect(!run.stderrText.contains("secret\""), "a value was echoed")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: world.database)) == before)
        #expect(try world.states() == ["keep-1": "pending", "keep-2": "pending"])
        try await world.stop()
    }
}

// MARK: - The world: a simulator, a queue, a configuration, and the binary

struct World {
    let simulator: IoTDASimulator
    let folder: URL
    let database: String

    static func start(latency: Duration = .zero, behaviour: Behaviour = .deleteOnce) async throws -> World {
        let simulator = try await IoTDASimulator.start(
            .init(projectID: EndToEndTests.project, auth: .accessKey(EndToEndTests.key), region: "cn-north-4",
                  defaultBehaviour: behaviour, latency: latency),
            logger: Logger(label: "e2e-sim") { _ in SwiftLogNoOpLogHandler() })
        let folder = try TestSupport.makeFolder("e2e")
        let database = folder.appendingPathComponent("queue.sqlite3").path
        _ = try SQLiteQueueStore(path: database)
        return World(simulator: simulator, folder: folder, database: database)
    }

    func enqueue(_ ids: [String]) async throws {
        _ = try await SQLiteQueueStore(path: database).enqueue(TestSupport.items(ids), now: Date())
    }

    func stop() async throws {
        try await simulator.shutdown()
    }

    /// Writes a configuration (the defaults of a test, overridden by `overrides`) and
    /// starts the binary with it. `config: nil` passes none (the arguments name one).
    func launch(_ arguments: [String], config overrides: [String: Any]? = [:], environment: [String: String]? = nil,
                stdin: URL? = nil) throws -> ChildProcess {
        var arguments = arguments
        if let overrides {
            var config: [String: Any] = [
                "database": database, "endpoint": simulator.endpoint, "region": "cn-north-4",
                "project_id": EndToEndTests.project, "max_requests_per_second": 100_000, "concurrency": 16,
                "retry": ["max_attempts": 8, "base_delay_ms": 5, "max_delay_ms": 50],
                "request_timeout_ms": 5_000, "lease_seconds": 30, "shutdown_grace_ms": 5_000,
                "poll_interval_ms": 100, "log_level": "notice",
            ]
            config.merge(overrides) { $1 }
            let path = folder.appendingPathComponent("config-\(UUID().uuidString).json")
            try JSONSerialization.data(withJSONObject: config).write(to: path)
            arguments += ["--config", path.path]
        }
        let credentials = environment ?? ["HUAWEICLOUD_SDK_AK": EndToEndTests.key.ak, "HUAWEICLOUD_SDK_SK": EndToEndTests.key.sk]
        return try ChildProcess.start(arguments: arguments, environment: credentials, stdin: stdin)
    }

    func states() throws -> [String: String] {
        let db = try SQLiteConnection(path: database)
        let statement = try db.prepare("SELECT export_task_id, state FROM export_tasks")
        var states: [String: String] = [:]
        while try statement.step() { states[statement.string(0)] = statement.string(1) }
        statement.reset()
        return states
    }

    func scalar(_ sql: String) throws -> Int {
        try SQLiteConnection(path: database).scalarInt(sql) ?? 0
    }

    /// Checks `condition` every 20 ms until it holds or `timeout` passes: a bounded watch on
    /// another process, which sends no events of its own.
    func eventually(timeout: Duration = .seconds(30), _ condition: () throws -> Bool) async throws -> Bool {
        try await ExportTaskCleanerTests.eventually(timeout: timeout, condition)
    }
}

/// The binary as a child process, its output collected.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    private let stderrPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let lock = NSLock()
    private var stderrData = Data()
    private var stdoutData = Data()

    static var binary: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/export-task-cleaner")
    }

    static func start(arguments: [String], environment: [String: String], stdin: URL? = nil) throws -> ChildProcess {
        let binary = Self.binary
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw CleanerError.runtime("\(binary.path) is missing: build it first (swift build)")
        }
        let child = ChildProcess()
        child.process.executableURL = binary
        child.process.arguments = arguments
        child.process.environment = environment.merging(["PATH": "/usr/bin:/bin"]) { $1 }
        child.process.standardError = child.stderrPipe
        child.process.standardOutput = child.stdoutPipe
        child.stderrPipe.fileHandleForReading.readabilityHandler = { [weak child] handle in
            let data = handle.availableData
            guard let child else { return }
            child.lock.withLock { child.stderrData.append(data) }
        }
        child.stdoutPipe.fileHandleForReading.readabilityHandler = { [weak child] handle in
            let data = handle.availableData
            guard let child else { return }
            child.lock.withLock { child.stdoutData.append(data) }
        }
        // Input from a file, not a pipe: a child that stops reading early cannot raise SIGPIPE here.
        if let stdin { child.process.standardInput = try FileHandle(forReadingFrom: stdin) }
        try child.process.run()
        return child
    }

    var stderrText: String {
        lock.withLock { String(decoding: stderrData, as: UTF8.self) }
    }

    /// Standard output; complete once `exit(within:)` has returned.
    var stdoutText: String {
        lock.withLock { String(decoding: stdoutData, as: UTF8.self) }
    }

    func signal(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for the exit status; kills the child if it takes longer than `limit`.
    func exit(within limit: Duration) async throws -> Int32 {
        let deadline = ContinuousClock.now.advanced(by: limit)
        while process.isRunning {
            if ContinuousClock.now > deadline {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                Issue.record("the child did not exit within \(limit)")
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        process.waitUntilExit()
        // Take over from the reader and drain what is left.
        stderrPipe.fileHandleForReading.readabilityHandler = nil
        stdoutPipe.fileHandleForReading.readabilityHandler = nil
        let rest = stderrPipe.fileHandleForReading.readDataToEndOfFile()
        let restOut = stdoutPipe.fileHandleForReading.readDataToEndOfFile()
        lock.withLock {
            stderrData.append(rest)
            stdoutData.append(restOut)
        }
        return process.terminationReason == .uncaughtSignal ? -process.terminationStatus : process.terminationStatus
    }
}
