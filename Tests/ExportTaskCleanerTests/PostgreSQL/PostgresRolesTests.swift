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

/// The roles of docs/database.md, "PostgreSQL: roles", as the page gives them: its SQL blocks
/// are read from the page and run against a real server as the superuser, so that the page
/// stays true. Needs the superuser (roles and databases are made):
/// `EXPORT_TASK_CLEANER_TEST_POSTGRES_SUPERUSER_URL` and `…_SUPERUSER_PASSWORD`
/// (docs/development.md, "Tests and CI"); skipped, saying so, without them.
///
/// Roles are the cluster's, not a database's: two runs on one cluster (a developer's and CI's,
/// or two work trees) would meet on `export_task_cleaner`. Serializing the suite would not
/// help across processes, so each run renames the page's three roles, its database and its
/// schema alike, with a random suffix (`export_task_cleaner_t1a2b3c4`): the statements are the
/// page's, the names the run's own. Everything is dropped after, failed or not.
@Suite("PostgreSQL roles (docs/database.md)",
       .enabled(if: PostgresSuperuser.isConfigured, PostgresSuperuser.skipComment), .timeLimit(.minutes(2)))
struct PostgresRolesTests {
    static var superuserURL: String? { PostgresSuperuser.url }
    static var superuserPassword: String? { PostgresSuperuser.password }

    static let roleNames = ["export_task_cleaner", "export_task_feeder", "export_task_auditor"]
    private let logger = PostgresTestDatabase.logger

    @Test("the page's SQL makes a service that owns its tables, a feeder that may only insert, an auditor that may only read")
    func rolesAsDocumented() async throws {
        let suffix = "_t" + String(UInt32.random(in: .min ... .max), radix: 16)
        let names = Dictionary(uniqueKeysWithValues: Self.roleNames.map { ($0, $0 + suffix) })
        let blocks = try Self.sqlBlocks().map { Self.renamed($0, names) }
        try #require(blocks.count == 3, "the section has its setup, its grants and the feeder's INSERT")
        let superuser = try PostgresURL(Self.superuserURL ?? "")
        let database = names["export_task_cleaner"]!
        var passwords: [String: String] = [:]
        do {
            // Before the first start, as the superuser; then the service creates its tables.
            try await run(blocks[0], as: superuser, passwords: &passwords)
            let service = Login(role: names["export_task_cleaner"]!, password: passwords[names["export_task_cleaner"]!])
            let feeder = Login(role: names["export_task_feeder"]!, password: passwords[names["export_task_feeder"]!])
            let auditor = Login(role: names["export_task_auditor"]!, password: passwords[names["export_task_auditor"]!])
            try #require(service.password != nil && feeder.password != nil && auditor.password != nil, "\\password for each role")
            let migration = try await connected(superuser, service, database) { try await PostgresSchema.migrate($0, logger: logger) }
            #expect(migration.to == PostgresSchema.currentVersion)
            let owner = try await connected(superuser, service, database) { connection in
                try await value(connection, "SELECT tableowner::text FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'audit_log'")
            }
            #expect(owner == service.role, "the tables are in the role's own schema, and its")

            // The grants, then each role does what it may and nothing else.
            try await run(blocks[1], as: superuser, passwords: &passwords)
            try await proveFeeder(superuser, feeder, database, example: blocks[2])
            try await proveAuditor(superuser, auditor, database)
            try await proveService(superuser, service, database)
            try await proveCheck(superuser, [service, feeder, auditor], database)
        } catch {
            await drop(superuser, database: database, roles: Array(names.values))
            throw PostgresTestDatabase.ServerError(error)
        }
        await drop(superuser, database: database, roles: Array(names.values))
    }

    // MARK: - What each role may do

    private func proveFeeder(_ superuser: PostgresURL, _ feeder: Login, _ database: String, example: String) async throws {
        try await connected(superuser, feeder, database) { connection in
            // No search_path of its own: the page's ALTER ROLE … SET search_path names the tables.
            try await connection.query("INSERT INTO export_tasks (export_task_id) VALUES ('feed-1')", logger: logger)
            try await connection.query("""
                INSERT INTO export_tasks (export_task_id, project_id, instance_id) VALUES ('feed-2', 'project-2', 'instance-2')
                """, logger: logger)
            // The page's own INSERT, twice: the second is skipped, without SELECT.
            try await connection.query(PostgresQuery(unsafeSQL: Self.statements(example)[0]), logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: Self.statements(example)[0]), logger: logger)
            try await connection.query("INSERT INTO export_tasks (export_task_id) VALUES ('feed-1') ON CONFLICT DO NOTHING", logger: logger)
            for statement in [
                "SELECT count(*) FROM export_tasks",
                "UPDATE export_tasks SET state = 'deleted'",
                "DELETE FROM export_tasks",
                "TRUNCATE export_tasks",
                "INSERT INTO export_tasks (export_task_id, state) VALUES ('feed-3', 'deleted')",
                "INSERT INTO export_tasks (export_task_id) VALUES ('feed-4') RETURNING id",
                "INSERT INTO export_tasks (export_task_id) VALUES ('feed-1') ON CONFLICT ((coalesce(project_id, '')), export_task_id) DO NOTHING",
                "SELECT count(*) FROM audit_log",
                "INSERT INTO audit_log (export_task_id, outcome, runner, hash) VALUES ('x', 'deleted', 'feeder', 'x')",
                "SELECT count(*) FROM service_heartbeat",
                "SELECT count(*) FROM audit_archive",
                "SELECT count(*) FROM audit_archive_carry",
                "INSERT INTO audit_archive (seq, file, first_id, last_id, last_hash, sha256, rows, tasks, archived_at, runner) VALUES (1, 'f', 1, 1, 'x', 'x', 1, 0, now(), 'feeder')",
            ] {
                try await expectDenied(connection, statement)
            }
        }
        // What it fed, as the superuser sees it: every other column from its default. (The
        // service's schema is named like its role and the database, all three renamed alike.)
        let fed = try await connected(superuser, Login(role: superuser.user, password: Self.superuserPassword), database) { connection in
            try await value(connection, PostgresQuery(unsafeSQL: """
                SELECT string_agg(export_task_id || ':' || coalesce(project_id, '-') || ':' || state || ':' || attempts, ',' ORDER BY id)
                FROM \(database).export_tasks
                """))
        }
        #expect(fed == "feed-1:-:pending:0,feed-2:project-2:pending:0,your-export-task-id:-:pending:0")
    }

    private func proveAuditor(_ superuser: PostgresURL, _ auditor: Login, _ database: String) async throws {
        try await connected(superuser, auditor, database) { connection in
            for table in ["export_tasks", "audit_log", "service_heartbeat", PostgresSchema.versionTable,
                          "audit_archive", "audit_archive_carry"] {
                for try await _ in try await connection.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(table)"), logger: logger) {}
            }
            for statement in [
                "INSERT INTO export_tasks (export_task_id) VALUES ('audit-1')",
                "UPDATE export_tasks SET state = 'pending'",
                "DELETE FROM export_tasks",
                "INSERT INTO audit_log (export_task_id, outcome, runner, hash) VALUES ('x', 'deleted', 'auditor', 'x')",
                "UPDATE audit_log SET runner = 'auditor'",
                "DELETE FROM audit_log",
                "TRUNCATE audit_log",
                "DELETE FROM service_heartbeat",
                "INSERT INTO audit_archive (seq, file, first_id, last_id, last_hash, sha256, rows, tasks, archived_at, runner) VALUES (1, 'f', 1, 1, 'x', 'x', 1, 0, now(), 'auditor')",
                "DELETE FROM audit_archive",
                "DELETE FROM audit_archive_carry",
            ] {
                try await expectDenied(connection, statement)
            }
        }
    }

    /// The owner may write its tables, and append to the audit log, but the triggers refuse it
    /// the rest of the log.
    private func proveService(_ superuser: PostgresURL, _ service: Login, _ database: String) async throws {
        try await connected(superuser, service, database) { connection in
            try await connection.query("UPDATE export_tasks SET attempts = 0 WHERE export_task_id = 'feed-1'", logger: logger)
            try await connection.query("""
                INSERT INTO audit_log (export_task_id, outcome, runner, hash) VALUES ('feed-1', 'requeued', 'roles-test', 'x')
                """, logger: logger)
            for operation in ["UPDATE", "DELETE", "TRUNCATE"] {
                let statement = switch operation {
                case "UPDATE": "UPDATE audit_log SET runner = 'edited'"
                case "DELETE": "DELETE FROM audit_log"
                default: "TRUNCATE audit_log"
                }
                do {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    Issue.record("the owner could \(operation) audit_log")
                } catch {
                    // DELETE: of rows above the archive's last checkpoint (none yet: every row).
                    let expected = operation == "DELETE"
                        ? "audit_log is append-only: DELETE refused (only rows archived at a checkpoint may leave)"
                        : "audit_log is append-only: \(operation) refused"
                    #expect(PostgresTestDatabase.serverMessage(error) == expected)
                }
            }
        }
    }

    /// `check`'s privileges line agrees: all for the service, problems for the two others.
    private func proveCheck(_ superuser: PostgresURL, _ logins: [Login], _ database: String) async throws {
        for login in logins {
            let url = try PostgresURL("postgresql://\(login.role)@\(superuser.host):\(superuser.port)/\(database)?sslmode=\(superuser.sslMode.rawValue)")
            let findings = await PostgresSetupCheck.findings(
                url: url, password: PostgresPassword(password: login.password, source: .environment),
                connectTimeout: .seconds(5), startupParameters: [], logger: logger)
            let problems = findings.filter { !$0.ok }
            if login.role.hasPrefix("export_task_cleaner") {
                #expect(problems.isEmpty, "\(findings)")
            } else {
                #expect(!problems.isEmpty, "\(login.role): \(findings)")
            }
        }
    }

    // MARK: - Running the page's SQL

    /// The ```sql blocks of the section, in order.
    static func sqlBlocks() throws -> [String] {
        let page = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("docs/database.md")
        let lines = try String(contentsOf: page, encoding: .utf8).components(separatedBy: "\n")
        guard let start = lines.firstIndex(of: "## PostgreSQL: roles") else {
            throw CleanerError.runtime("docs/database.md has no section \"PostgreSQL: roles\"")
        }
        let end = lines[(start + 1)...].firstIndex { $0.hasPrefix("## ") } ?? lines.endIndex
        var blocks: [String] = []
        var current: [String]?
        for line in lines[start..<end] {
            if current == nil, line == "```sql" {
                current = []
            } else if current != nil, line == "```" {
                blocks.append(current!.joined(separator: "\n"))
                current = nil
            } else {
                current?.append(line)
            }
        }
        return blocks
    }

    /// The page's identifiers with the run's suffix: whole identifiers only, so that
    /// `export_task_cleaner_schema` and `export_tasks` stay as they are.
    static func renamed(_ sql: String, _ names: [String: String]) -> String {
        var result = ""
        var word = ""
        func flush() {
            result += names[word] ?? word
            word = ""
        }
        for character in sql {
            if character.isASCII, character.isLetter || character.isNumber || character == "_" {
                word.append(character)
            } else {
                flush()
                result.append(character)
            }
        }
        flush()
        return result
    }

    /// SQL statements, each ending with `;` at the end of a line, and psql's commands, each a
    /// line starting with a backslash.
    static func statements(_ block: String) -> [String] {
        var statements: [String] = []
        var pending: [String] = []
        for line in block.components(separatedBy: "\n") where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            if line.hasPrefix("\\") {
                statements.append(line)
                continue
            }
            pending.append(line)
            if line.hasSuffix(";") {
                statements.append(String(pending.joined(separator: "\n").dropLast()))
                pending = []
            }
        }
        if !pending.isEmpty { statements.append(pending.joined(separator: "\n")) }
        return statements
    }

    /// Runs a block as the superuser, as psql would: `\connect DB` moves to that database;
    /// `\password ROLE` (which asks a person) sets a random password, kept for the test.
    private func run(_ block: String, as superuser: PostgresURL, passwords: inout [String: String]) async throws {
        var database = superuser.database
        var connection = try await connect(superuser, Login(role: superuser.user, password: Self.superuserPassword), database)
        do {
            for statement in Self.statements(block) {
                let words = statement.split(separator: " ").map(String.init)
                switch words.first {
                case "\\connect" where words.count == 2:
                    try await connection.close()
                    database = words[1]
                    connection = try await connect(superuser, Login(role: superuser.user, password: Self.superuserPassword), database)
                case "\\password" where words.count == 2:
                    // 32 hex digits: nothing to quote.
                    let password = (0..<4).map { _ in String(format: "%08x", UInt32.random(in: .min ... .max)) }.joined()
                    passwords[words[1]] = password
                    try await connection.query(PostgresQuery(unsafeSQL: "ALTER ROLE \(words[1]) PASSWORD '\(password)'"), logger: logger)
                case let command? where command.hasPrefix("\\"):
                    throw CleanerError.runtime("the section uses a psql command the test does not know: \(command)")
                default:
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
            }
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }

    private struct Login {
        var role: String
        var password: String?
    }

    private func connect(_ server: PostgresURL, _ login: Login, _ database: String) async throws -> PostgresConnection {
        let tls: PostgresConnection.Configuration.TLS = try server.tlsConfiguration.map { .require(try NIOSSLContext(configuration: $0)) } ?? .disable
        var configuration = PostgresConnection.Configuration(
            host: server.host, port: server.port, username: login.role, password: login.password, database: database, tls: tls)
        configuration.options.connectTimeout = .seconds(10)
        return try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
    }

    private func connected<T>(_ server: PostgresURL, _ login: Login, _ database: String,
                              _ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await connect(server, login, database)
        do {
            let result = try await body(connection)
            try await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    private func value(_ connection: PostgresConnection, _ query: PostgresQuery) async throws -> String? {
        var found: String?
        for try await value in try await connection.query(query, logger: logger).decode(String?.self) { found = value }
        return found
    }

    private func expectDenied(_ connection: PostgresConnection, _ statement: String) async throws {
        do {
            // Rows read to the end: a statement that returns rows reports its error there.
            for try await _ in try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) {}
            Issue.record("allowed, and should not be: \(statement)")
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "42501" {
            // insufficient_privilege: as it should be.
        }
    }

    /// Drops what the run made; a failure here is reported, not thrown over the test's own.
    private func drop(_ superuser: PostgresURL, database: String, roles: [String]) async {
        do {
            try await connected(superuser, Login(role: superuser.user, password: Self.superuserPassword), superuser.database) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(database) WITH (FORCE)"), logger: logger)
                for role in roles {
                    try await connection.query(PostgresQuery(unsafeSQL: "DROP ROLE IF EXISTS \(role)"), logger: logger)
                }
            }
        } catch {
            Issue.record("could not drop \(database) and its roles: \(PostgresTestDatabase.ServerError(error))")
        }
    }
}

/// The test server's superuser, for the tests that make roles and databases.
enum PostgresSuperuser {
    static let urlVariable = "EXPORT_TASK_CLEANER_TEST_POSTGRES_SUPERUSER_URL"
    static let passwordVariable = "EXPORT_TASK_CLEANER_TEST_POSTGRES_SUPERUSER_PASSWORD"
    static var url: String? { getenv(urlVariable).map { String(cString: $0) } }
    static var password: String? { getenv(passwordVariable).map { String(cString: $0) } }
    static var isConfigured: Bool { !(url ?? "").isEmpty }
    static let skipComment: Comment =
        "PostgreSQL roles tests skipped: set EXPORT_TASK_CLEANER_TEST_POSTGRES_SUPERUSER_URL and EXPORT_TASK_CLEANER_TEST_POSTGRES_SUPERUSER_PASSWORD (scripts/postgres-cluster start DIR writes DIR/superuser-url and DIR/superuser-password)"
}
