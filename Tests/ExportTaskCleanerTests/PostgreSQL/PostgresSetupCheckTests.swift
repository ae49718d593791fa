@testable import ExportTaskCleaner
import Foundation
import Logging
import PostgresNIO
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `check` on PostgreSQL against a real server (docs/commands.md, "Details": `check`): a fresh
/// schema, a migrated one, privileges taken away, a newer or foreign schema, and every way a
/// connection fails (a wrong or missing password, refused, a timeout, TLS, no database). Each
/// test in a schema of its own (``PostgresTestDatabase``), which the check's connection names
/// as its search_path.
@Suite("PostgreSQL check", .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipComment),
       .timeLimit(.minutes(2)))
struct PostgresSetupCheckTests {
    private let logger = PostgresTestDatabase.logger
    static let marker = "S3CRETMARK"

    private var url: PostgresURL { get throws { try PostgresURL(PostgresTestDatabase.url ?? "") } }

    private var password: PostgresPassword {
        PostgresPassword(password: getenv("PGPASSWORD").map { String(cString: $0) }, source: .environment)
    }

    private func check(_ url: PostgresURL, password: PostgresPassword? = nil, schema: String = "public",
                       connectTimeout: Duration = .seconds(5)) async -> [SetupCheck.Finding] {
        await PostgresSetupCheck.findings(url: url, password: password ?? self.password, connectTimeout: connectTimeout,
                                          startupParameters: [("search_path", schema)], logger: logger)
    }

    private func finding(_ label: String, in findings: [SetupCheck.Finding]) -> SetupCheck.Finding? {
        findings.first { $0.label == label }
    }

    @Test("a fresh schema: connects, none yet, and the role may create the tables there; nothing is created")
    func freshSchema() async throws {
        let url = try url
        try await PostgresTestDatabase.withSchema { client, schema in
            let findings = await check(url, schema: schema)
            #expect(findings.map(\.label) == ["database", "password", "connects", "schema", "privileges"])
            #expect(findings.filter { !$0.ok }.isEmpty, "\(findings)")
            #expect(finding("database", in: findings)?.value == url.redacted)
            #expect(finding("password", in: findings)?.value == "PGPASSWORD")
            #expect(finding("connects", in: findings)?.value.hasPrefix("yes: PostgreSQL ") == true)
            #expect(finding("schema", in: findings)?.value == "none yet in the schema \"\(schema)\": `run` or `enqueue` creates it")
            #expect(finding("privileges", in: findings)?.value.contains("may CREATE in the schema \"\(schema)\"") == true)
            let tables = try await PostgresTestDatabase.value(client, """
                SELECT count(*)::bigint FROM information_schema.tables WHERE table_schema = \(schema)
                """, as: Int.self)
            #expect(tables == 0)
        }
    }

    @Test("a migrated schema: this release's version, and every privilege run needs")
    func migratedSchema() async throws {
        let url = try url
        try await PostgresTestDatabase.withSchema { client, schema in
            try await PostgresSchema.migrate(client, logger: logger)
            let findings = await check(url, schema: schema)
            #expect(findings.filter { !$0.ok }.isEmpty, "\(findings)")
            #expect(finding("schema", in: findings)?.value
                == "version \(PostgresSchema.currentVersion), this release's (in the schema \"\(schema)\")")
            #expect(finding("privileges", in: findings)?.value
                == "all that `run` needs: SELECT, INSERT, UPDATE on export_tasks; SELECT, INSERT on audit_log; SELECT, INSERT, UPDATE, DELETE on service_heartbeat; SELECT on export_task_cleaner_schema")
        }
    }

    /// The owner takes privileges from itself (it may): `has_table_privilege` then says no, as
    /// for any role without the grant. A grant by columns, on every column, serves as well.
    @Test("privileges taken away are named; a grant on every column counts")
    func missingPrivileges() async throws {
        let url = try url
        try await PostgresTestDatabase.withSchema { client, schema in
            try await PostgresSchema.migrate(client, logger: logger)
            try await client.query("REVOKE UPDATE ON export_tasks FROM CURRENT_USER", logger: logger)
            try await client.query("REVOKE DELETE, INSERT ON service_heartbeat FROM CURRENT_USER", logger: logger)
            var findings = await check(url, schema: schema)
            var privileges = try #require(finding("privileges", in: findings))
            #expect(!privileges.ok)
            #expect(privileges.value.contains("lacks UPDATE on export_tasks, INSERT on service_heartbeat, DELETE on service_heartbeat"),
                    "\(privileges.value)")
            #expect(finding("schema", in: findings)?.ok == true)

            try await client.query("GRANT INSERT (runner, started_at, heartbeat_at, status) ON service_heartbeat TO CURRENT_USER",
                                   logger: logger)
            findings = await check(url, schema: schema)
            privileges = try #require(finding("privileges", in: findings))
            #expect(privileges.value.contains("lacks UPDATE on export_tasks, DELETE on service_heartbeat"), "\(privileges.value)")
        }
    }

    @Test("a schema the role may not create in is named before the first run")
    func mayNotCreate() async throws {
        let url = try url
        try await PostgresTestDatabase.withSchema { client, schema in
            try await client.query("REVOKE CREATE ON SCHEMA \(unescaped: schema) FROM CURRENT_USER", logger: logger)
            let findings = await check(url, schema: schema)
            let privileges = try #require(finding("privileges", in: findings))
            #expect(!privileges.ok)
            #expect(privileges.value.contains("may not CREATE in the schema \"\(schema)\""), "\(privileges.value)")
        }
    }

    @Test("a newer release's schema and another application's tables are problems, and nothing is changed")
    func newerAndForeign() async throws {
        let url = try url
        try await PostgresTestDatabase.withSchema { client, schema in
            try await PostgresSchema.migrate(client, logger: logger)
            try await client.query("INSERT INTO export_task_cleaner_schema (version) VALUES (99)", logger: logger)
            let findings = await check(url, schema: schema)
            let found = try #require(finding("schema", in: findings))
            #expect(!found.ok)
            #expect(found.value.contains("version 99"), "\(found.value)")
            #expect(found.value.contains("newer export-task-cleaner"))
            #expect(finding("privileges", in: findings) == nil)
        }
        try await PostgresTestDatabase.withSchema { client, schema in
            try await client.query("CREATE TABLE audit_log (x integer)", logger: logger)
            let findings = await check(url, schema: schema)
            let found = try #require(finding("schema", in: findings))
            #expect(!found.ok)
            #expect(found.value.contains("not the queue's tables"), "\(found.value)")
        }
    }

    /// A table locked by another session (a long migration, a `LOCK TABLE` by hand): the check
    /// waits no longer than its lock_timeout, and says what stopped it.
    @Test("a table locked elsewhere: the check gives up after its lock timeout and says so")
    func lockedTable() async throws {
        let url = try url
        try await PostgresTestDatabase.withSchema { client, schema in
            try await PostgresSchema.migrate(client, logger: logger)
            try await client.withTransaction(logger: logger) { holder in
                try await holder.query("LOCK TABLE export_task_cleaner_schema IN ACCESS EXCLUSIVE MODE", logger: logger)
                let started = ContinuousClock.now
                let findings = await check(url, schema: schema)
                let elapsed = ContinuousClock.now - started
                let found = try #require(finding("schema", in: findings))
                #expect(!found.ok)
                #expect(found.value == "a table is locked by another session (a migration, or a LOCK TABLE by hand); waited 3 s, try again",
                        "\(found.value)")
                #expect(elapsed >= .milliseconds(2900) && elapsed < .seconds(8), "\(elapsed)")
            }
        }
    }

    // MARK: - Connections that fail

    @Test("a wrong password: authentication failed, the source named, the password never")
    func wrongPassword() async throws {
        let findings = await check(try url, password: PostgresPassword(password: "wrong-\(Self.marker)", source: .environment))
        let connects = try #require(finding("connects", in: findings))
        #expect(!connects.ok)
        #expect(connects.value.hasPrefix("authentication failed: password authentication failed for user"), "\(connects.value)")
        #expect(connects.value.contains("the password from PGPASSWORD"))
        #expect(!"\(findings)".contains(Self.marker))
        #expect(finding("schema", in: findings) == nil)
    }

    @Test("no password for a server that asks for one")
    func noPassword() async throws {
        let findings = await check(try url, password: PostgresPassword(password: nil, source: .none))
        #expect(finding("password", in: findings)?.value == "none (no password is sent)")
        let connects = try #require(finding("connects", in: findings))
        #expect(!connects.ok)
        #expect(connects.value.contains("asks for a password and none was found"), "\(connects.value)")
    }

    @Test("nothing listening: refused, at once")
    func refused() async throws {
        let url = try url
        let port = try { () throws -> Int in
            let listener = try SilentListener()
            return listener.port  // closed here, so that nothing listens on it
        }()
        let started = ContinuousClock.now
        let findings = await check(try PostgresURL("postgresql://\(url.user)@127.0.0.1:\(port)/\(url.database)?sslmode=disable"))
        let connects = try #require(finding("connects", in: findings))
        #expect(!connects.ok)
        #expect(connects.value.hasPrefix("refused: nothing listens on 127.0.0.1:\(port)"), "\(connects.value)")
        #expect(ContinuousClock.now - started < .seconds(3))
    }

    @Test("a server that never answers: a timeout, within the connect timeout")
    func timeout() async throws {
        let url = try url
        let listener = try SilentListener()
        let started = ContinuousClock.now
        let findings = await check(try PostgresURL("postgresql://\(url.user)@127.0.0.1:\(listener.port)/\(url.database)?sslmode=disable"),
                                   connectTimeout: .seconds(1))
        let elapsed = ContinuousClock.now - started
        let connects = try #require(finding("connects", in: findings))
        #expect(!connects.ok)
        #expect(connects.value.hasPrefix("timeout: no connection to 127.0.0.1:\(listener.port), or no answer to it, within 1 s"),
                "\(connects.value)")
        #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(4), "\(elapsed)")
    }

    @Test("sslmode=require against a server without TLS: named as TLS")
    func tlsRefused() async throws {
        let url = try url
        for mode in ["require", "verify-full"] {
            let findings = await check(try PostgresURL("postgresql://\(url.user)@\(url.host):\(url.port)/\(url.database)?sslmode=\(mode)"))
            let connects = try #require(finding("connects", in: findings))
            #expect(!connects.ok)
            #expect(connects.value.hasPrefix("TLS: the server does not offer TLS, which sslmode=\(mode) requires"), "\(connects.value)")
        }
    }

    @Test("a database that does not exist")
    func noSuchDatabase() async throws {
        let url = try url
        let findings = await check(try PostgresURL("postgresql://\(url.user)@\(url.host):\(url.port)/etc_no_such_database?sslmode=disable"))
        let connects = try #require(finding("connects", in: findings))
        #expect(!connects.ok)
        #expect(connects.value.contains("database \"etc_no_such_database\" does not exist"), "\(connects.value)")
    }

    // MARK: - The command

    static var binary: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/export-task-cleaner")
    }

    /// `check` as the built binary runs it: exit 0 exactly when no line is a problem, 2 for a
    /// wrong password, whose text is nowhere in the output.
    @Test("export-task-cleaner check on a PostgreSQL URL: exit 0, or 2 for a wrong password",
          .enabled(if: FileManager.default.isExecutableFile(atPath: binary.path), "needs .build/debug/export-task-cleaner"))
    func command() async throws {
        let folder = try TestSupport.makeFolder("pg-check")
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = folder.appendingPathComponent("config.json")
        let database = try url.redacted
        try Data(#"{"region": "cn-north-4", "project_id": "p1", "database": "\#(database)"}"#.utf8).write(to: config)
        let environment = ["PATH": "/usr/bin:/bin", "HUAWEICLOUD_SDK_AK": "QTWAOYTTINDUT2QVKYUC", "HUAWEICLOUD_SDK_SK": "SK"]

        let good = try run(["check", "--config", config.path], environment: environment.merging(["PGPASSWORD": password.password ?? ""]) { $1 })
        #expect(good.output.contains("database       \(database)"), "\(good.output)")
        #expect(good.output.contains("password       PGPASSWORD"))
        #expect(good.output.contains("connects       yes: PostgreSQL "))
        #expect(good.status == (good.output.contains("<- problem") ? 2 : 0), "\(good.output)")

        let wrong = try run(["check", "--config", config.path], environment: environment.merging(["PGPASSWORD": Self.marker]) { $1 })
        #expect(wrong.status == 2)
        #expect(wrong.output.contains("connects       authentication failed: "), "\(wrong.output)")
        #expect(!wrong.output.contains(Self.marker))
    }

    private func run(_ arguments: [String], environment: [String: String]) throws -> (status: Int32, output: String) {
        let process = Process()
        let output = Pipe()
        process.executableURL = Self.binary
        process.arguments = arguments
        process.environment = environment
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Findings without a server: the URL and the password are read before any connection.
@Suite("PostgreSQL check, before connecting")
struct PostgresSetupCheckInputTests {
    @Test("a URL with a password is refused without repeating it; a hostile PGPASSWORD stops the check")
    func refusedInput() async {
        let logger = PostgresTestDatabase.logger
        var findings = await PostgresSetupCheck.findings(
            database: "postgresql://u:\(PostgresSetupCheckTests.marker)@127.0.0.1/d", environment: [:], credentialsFile: nil, logger: logger)
        #expect(findings.count == 1)
        #expect(findings.first?.ok == false)
        #expect(findings.first?.value.contains("holds a password") == true)
        #expect(!"\(findings)".contains(PostgresSetupCheckTests.marker))

        findings = await PostgresSetupCheck.findings(
            database: "postgresql://u@127.0.0.1:1/d?sslmode=disable", environment: ["PGPASSWORD": "a\n\(PostgresSetupCheckTests.marker)"],
            credentialsFile: nil, logger: logger)
        #expect(findings.map(\.label) == ["database", "password"])
        #expect(findings.last?.ok == false)
        #expect(findings.last?.value == "PGPASSWORD contains a line break or another control character")
    }

    @Test("the configuration keeps a PostgreSQL URL as it is, where a path is made absolute")
    func configurationKeepsTheURL() throws {
        let folder = try TestSupport.makeFolder("pg-config")
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = folder.appendingPathComponent("config.json")
        let url = "postgres://etc@db.example:5433/queue?sslmode=require"
        try Data(#"{"region": "cn-north-4", "project_id": "p1", "database": "\#(url)"}"#.utf8).write(to: config)
        #expect(try ConfigurationLoader.load(path: config.path).database == url)
        try Data(#"{"region": "cn-north-4", "project_id": "p1", "database": "queue.sqlite3"}"#.utf8).write(to: config)
        #expect(try ConfigurationLoader.load(path: config.path).database == folder.appendingPathComponent("queue.sqlite3").path)
    }
}

/// A TCP listener on 127.0.0.1 that never accepts: the kernel completes connections into its
/// backlog, and nothing ever answers them. Closed when the value goes away.
final class SilentListener {
    let descriptor: Int32
    let port: Int

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = descriptor >= 0 && withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(descriptor, address, length) == 0 && listen(descriptor, 8) == 0 && getsockname(descriptor, address, &length) == 0
            }
        }
        guard bound else {
            if descriptor >= 0 { close(descriptor) }
            throw CleanerError.runtime("cannot listen on 127.0.0.1")
        }
        self.descriptor = descriptor
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit {
        close(descriptor)
    }
}
