import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Testing

/// The built binary on PostgreSQL, as operators meet it (issue 22, "Done when"): two services
/// on one database, `kill -9` of one, a PostgreSQL restart mid-run, a feeding role inserting
/// with `psql` meanwhile. The test starts a cluster of its own (`scripts/postgres-cluster`),
/// so that restarting it disturbs no other test; it runs where the PostgreSQL tests run.
@Suite("End to end on PostgreSQL: the built binary, two services, kill -9, a restart",
       .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipComment))
struct PostgresEndToEndTests {
    @Test("two services, kill -9 of one, a PostgreSQL restart and a psql feeder: every task deleted once, all on record, the survivor never exits")
    func twoServicesKillAndRestart() async throws {
        let cluster = try PrivateCluster.start()
        defer { cluster.stop() }
        let world = try await World.start(latency: .milliseconds(10))
        let environment = ["HUAWEICLOUD_SDK_AK": EndToEndTests.key.ak, "HUAWEICLOUD_SDK_SK": EndToEndTests.key.sk,
                           "PGPASSWORD": cluster.password]
        let config: [String: Any] = ["database": cluster.url, "concurrency": 8, "max_requests_per_second": 150,
                                     "lease_seconds": 5, "request_timeout_ms": 2_000]
        // The feeder's role: INSERT of the identifying columns, nothing else (docs/database.md,
        // "PostgreSQL: roles"), once the first command has created the tables.
        let list = world.folder.appendingPathComponent("ids.txt")
        let ids = (0..<900).map { String(format: "pg-%04d", $0) }
        try Data((ids.joined(separator: "\n") + "\n").utf8).write(to: list)
        let enqueue = try world.launch(["enqueue"], config: config, environment: environment, stdin: list)
        #expect(try await enqueue.exit(within: .seconds(60)) == 0, "\(enqueue.stderrText)")
        try cluster.superuser("""
            CREATE ROLE etc_feeder LOGIN PASSWORD 'feeder-secret';
            GRANT USAGE ON SCHEMA public TO etc_feeder;
            GRANT INSERT (export_task_id, project_id, instance_id) ON export_tasks TO etc_feeder;
            """)

        let first = try world.launch(["run"], config: config, environment: environment)
        let second = try world.launch(["run"], config: config, environment: environment)
        #expect(try await world.eventually(timeout: .seconds(60)) { world.simulator.counters.successfulDeletes >= 150 })
        first.signal(SIGKILL)
        _ = try await first.exit(within: .seconds(10))
        let fed = (0..<100).map { "fed-\($0)" }
        try cluster.psql(role: "etc_feeder", password: "feeder-secret",
                         "INSERT INTO export_tasks (export_task_id) SELECT 'fed-' || g FROM generate_series(0, 99) g ON CONFLICT DO NOTHING")
        #expect(try await world.eventually(timeout: .seconds(60)) { world.simulator.counters.successfulDeletes >= 450 })
        try cluster.restart()
        // Everything finishes: the survivor reconnects, and sweeps the killed one's leases.
        let everything = ids.count + fed.count
        #expect(try await world.eventually(timeout: .seconds(120)) {
            (try? cluster.count("SELECT count(*) FROM export_tasks WHERE state IN ('deleted', 'not_found_after_unknown')")) == everything
        })
        #expect(second.process.isRunning, "the survivor exited: \(second.stderrText.suffix(3_000))")
        second.signal(SIGTERM)
        #expect(try await second.exit(within: .seconds(60)) == 0, "\(second.stderrText.suffix(3_000))")
        #expect(second.stderrText.contains("database notifications lost"), "the restart was not noticed: \(second.stderrText.suffix(2_000))")

        let counters = world.simulator.counters
        #expect(counters.successfulDeletes == everything)
        #expect(counters.deleteCountByID.values.allSatisfy { $0 == 1 })
        // Every request the server received is on record, by attempt (written ahead at the claim).
        let recorded = try cluster.rows("SELECT export_task_id, attempts FROM export_tasks")
        var short: [String] = []
        for row in recorded where counters.attempts(for: row[0]) > Int(row[1]) ?? 0 {
            short.append("\(row[0]): \(counters.attempts(for: row[0])) received, attempts \(row[1])")
        }
        #expect(short.isEmpty, "\(short.prefix(5))")
        let runners = try cluster.count("SELECT count(DISTINCT runner) FROM audit_log")
        #expect(runners == 2, "the killed service and the survivor (enqueue wrote no audit row: no invalid ID)")
        let verify = try world.launch(["audit", "--verify"], config: config, environment: environment)
        #expect(try await verify.exit(within: .seconds(60)) == 0, "\(verify.stdoutText) \(verify.stderrText)")
        let status = try world.launch(["status", "--json"], config: config, environment: environment)
        #expect(try await status.exit(within: .seconds(60)) == 0, "\(status.stderrText)")
        #expect(!status.stdoutText.contains(cluster.password) && !second.stderrText.contains(cluster.password))
        try await world.stop()
    }
}

/// A PostgreSQL cluster for one test (`scripts/postgres-cluster`), its `psql` at hand.
struct PrivateCluster {
    let folder: String
    let url: String
    let password: String
    let superuserURL: String
    let superuserPassword: String

    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/postgres-cluster").path
    }

    static func start() throws -> PrivateCluster {
        // A short path (the socket lives in it), searchable by the server's user.
        let folder = "/tmp/etc-pg-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o755])
        _ = try run([script, "start", folder + "/c"], timeout: 120)
        func read(_ name: String) throws -> String {
            try String(contentsOfFile: folder + "/c/" + name, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return PrivateCluster(folder: folder, url: try read("url"), password: try read("password"),
                              superuserURL: try read("superuser-url"), superuserPassword: try read("superuser-password"))
    }

    func restart() throws { _ = try Self.run([Self.script, "restart", folder + "/c"], timeout: 120) }

    func stop() {
        _ = try? Self.run([Self.script, "stop", folder + "/c"], timeout: 60)
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// `sql` through psql, as `role` (default: the test role); its unaligned output.
    @discardableResult
    func psql(role: String? = nil, password: String? = nil, _ sql: String, url: String? = nil) throws -> String {
        var target = url ?? self.url
        if let role { target = target.replacingOccurrences(of: "cleaner_test@", with: "\(role)@") }
        return try Self.run(["/usr/bin/psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", target, "-c", sql],
                            environment: ["PGPASSWORD": password ?? self.password], timeout: 60)
    }

    func superuser(_ sql: String) throws {
        // The superuser's own database differs: its URL, with the test database's name.
        let target = superuserURL.replacingOccurrences(of: "/postgres?", with: "/cleaner_test?")
        _ = try psql(sql, url: target, password: superuserPassword)
    }

    private func psql(_ sql: String, url: String, password: String) throws -> String {
        try psql(role: nil, password: password, sql, url: url)
    }

    func count(_ sql: String) throws -> Int { Int(try psql(sql).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1 }

    func rows(_ sql: String) throws -> [[String]] {
        try psql(sql).split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
    }

    /// Runs a program to its end (killed after `timeout` seconds); its output, or an error
    /// with its status and output. posix_spawn and waitpid, not Foundation's Process: a
    /// `Process` whose child had exited was seen never to notice (the child left a zombie,
    /// `isRunning` stayed true), here where the child starts a server that outlives it.
    @discardableResult
    static func run(_ arguments: [String], environment: [String: String] = [:], timeout: Int) throws -> String {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("etc-run-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let argv = ["/usr/bin/timeout", String(timeout)] + arguments
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var pid: pid_t = 0
        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = env.map { strdup($0) } + [nil]
        defer { (cArguments + cEnvironment).forEach { free($0) } }
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArguments, cEnvironment)
        guard spawned == 0 else { throw CleanerError.runtime("cannot start \(argv[2]): error \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // WIFEXITED and WEXITSTATUS, spelled out (macros Swift does not import).
        let exited = status & 0x7f == 0
        let code = (status >> 8) & 0xff
        guard exited, code == 0 else {
            throw CleanerError.runtime("\(arguments.prefix(3).joined(separator: " ")) ended with status \(status): \(text.suffix(2_000))")
        }
        return text
    }
}
