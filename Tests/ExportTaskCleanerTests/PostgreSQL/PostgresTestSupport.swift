import ExportTaskCleaner
import Logging
import PostgresNIO
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The PostgreSQL the tests run against: `EXPORT_TASK_CLEANER_TEST_POSTGRES_URL` (a URL as
/// `scripts/postgres-cluster start` prints it) with the password in `PGPASSWORD`. Unset, the
/// PostgreSQL suites are skipped, and Swift Testing's output says so with the comment below.
///
/// Each test gets a schema of its own, made for it and dropped after it: cheaper than a
/// database (`CREATE DATABASE` copies a template and needs CREATEDB, which the test role has
/// not), and enough, since the queue's tables live in the role's default schema. A test's
/// connections name that schema alone as their `search_path` (a startup parameter), and it
/// as their `application_name`, so a test can find its own sessions in `pg_stat_activity`.
/// What a schema does not separate: NOTIFY channels and advisory locks are per database, so
/// the tests look at a notification's payload (the schema it came from) and at the waiters
/// of their own sessions only.
enum PostgresTestDatabase {
    static let urlVariable = "EXPORT_TASK_CLEANER_TEST_POSTGRES_URL"

    static var url: String? { environment(urlVariable) }

    static var isConfigured: Bool { url.map { !$0.isEmpty } ?? false }

    static let skipComment: Comment =
        "PostgreSQL tests skipped: set EXPORT_TASK_CLEANER_TEST_POSTGRES_URL (and PGPASSWORD) to run them, e.g. with scripts/postgres-cluster start DIR"

    static let logger = Logger(label: "postgres-tests") { _ in SwiftLogNoOpLogHandler() }

    private static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// A configuration for the test database, its connections in `schema` when given.
    static func configuration(schema: String?) throws -> PostgresClient.Configuration {
        let url = try PostgresURL(url ?? "")
        var configuration = url.clientConfiguration(password: environment("PGPASSWORD"))
        configuration.options.connectTimeout = .seconds(10)
        if let schema {
            configuration.options.additionalStartupParameters = [("search_path", schema), ("application_name", schema)]
        }
        return configuration
    }

    /// Runs `body` with a running client whose connections use a new schema of their own, then
    /// drops the schema (with what the test left in it).
    static func withSchema<T: Sendable>(_ body: (_ client: PostgresClient, _ schema: String) async throws -> T) async throws -> T {
        // Lower-case letters and digits: an identifier that needs no quoting anywhere.
        let schema = "etc_test_" + (0..<12).map { _ in String(UInt8.random(in: 0..<36), radix: 36) }.joined()
        return try await withClient(try configuration(schema: nil)) { admin in
            try await admin.query("CREATE SCHEMA \(unescaped: schema)", logger: logger)
            do {
                let result = try await withClient(try configuration(schema: schema)) { client in
                    try await body(client, schema)
                }
                try await admin.query("DROP SCHEMA \(unescaped: schema) CASCADE", logger: logger)
                return result
            } catch {
                _ = try? await admin.query("DROP SCHEMA \(unescaped: schema) CASCADE", logger: logger)
                throw ServerError(error)
            }
        }
    }

    /// A client running for the time of `body` (postgres-nio's clients serve only while `run()` runs).
    static func withClient<T: Sendable>(_ configuration: PostgresClient.Configuration,
                                        _ body: (PostgresClient) async throws -> T) async throws -> T {
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    /// The first of `notifications` within `limit` whose payload is `payload` (when given: the
    /// channel is the database's, and tests in other schemas notify on it too), or nil.
    static func first(of notifications: PostgresNotificationSequence, payload: String? = nil,
                      within limit: Duration) async throws -> PostgresNotification? {
        try await withThrowingTaskGroup(of: PostgresNotification?.self) { group in
            group.addTask {
                for try await notification in notifications where payload == nil || notification.payload == payload {
                    return notification
                }
                return nil
            }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }

    /// Polls `condition` until it holds or `limit` has passed: for states another session
    /// reaches (a lock waited for) that nothing announces.
    static func waitUntil(within limit: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return try await condition()
    }

    /// An error that left a test, described in full: postgres-nio's `description` of its
    /// errors is a fixed text (it may hold a query's binds), useless in a failed test's report.
    struct ServerError: Error, CustomStringConvertible {
        var error: any Error
        init(_ error: any Error) { self.error = error }
        var description: String { error is PSQLError ? String(reflecting: error) : "\(error)" }
    }

    /// The server's message of a refused statement (postgres-nio hides it from `description`).
    static func serverMessage(_ error: any Error) -> String {
        (error as? PSQLError)?.serverInfo?[.message] ?? "\(error)"
    }

    /// The single value of a one-row, one-column query.
    static func value<T: PostgresDecodable & Sendable>(_ client: PostgresClient, _ query: PostgresQuery, as type: T.Type) async throws -> T? {
        var found: T?
        for try await value in try await client.query(query, logger: logger).decode(T.self) { found = value }
        return found
    }
}
