import Foundation
import Logging
import PostgresNIO
import Synchronization

@testable import ExportTaskCleaner

/// The PostgreSQL server the tests may use: `EXPORT_TASK_CLEANER_TEST_POSTGRES_URL` (its
/// password in `PGPASSWORD`), as `scripts/postgres-cluster` prints it.
enum PostgresTestServer {
    static var configured: String? { PostgresTestDatabase.isConfigured ? PostgresTestDatabase.url : nil }
}

/// A queue in a schema of its own on the test server (``PostgresTestDatabase``): the store
/// connects with that schema as its `search_path`; "another tool" is a client of the same
/// role with the same `search_path`. An outage holds the tables locked and ends this test's
/// sessions, as a database restart ends them, without disturbing tests running beside it.
final class PostgresHarness: StoreHarness, @unchecked Sendable {
    let kind = StoreKind.postgres
    let schema: String
    let url: PostgresURL
    let postgresStore: PostgresQueueStore
    var store: any QueueStore { postgresStore }
    private let others = Mutex<[any QueueStore]>([])
    /// The admin client (no schema), and the task that runs it.
    private let admin: PostgresClient
    private let adminTask: Task<Void, Never>
    private let outage = Mutex<Task<Void, any Error>?>(nil)
    private let releaseOutage = AsyncStream<Void>.makeStream()

    static var password: String? { ProcessInfo.processInfo.environment["PGPASSWORD"] }
    static let logger = Logger(label: "postgres-harness") { _ in SwiftLogNoOpLogHandler() }

    private init(schema: String, url: PostgresURL, store: PostgresQueueStore, admin: PostgresClient, adminTask: Task<Void, Never>) {
        self.schema = schema
        self.url = url
        self.postgresStore = store
        self.admin = admin
        self.adminTask = adminTask
    }

    static func make(runner: String) async throws -> any StoreHarness {
        let url = try PostgresURL(PostgresTestDatabase.url ?? "")
        let schema = "etc_test_" + (0..<12).map { _ in String(UInt8.random(in: 0..<36), radix: 36) }.joined()
        let admin = PostgresClient(configuration: try PostgresTestDatabase.configuration(schema: nil), backgroundLogger: logger)
        let adminTask = Task { await admin.run() }
        try await admin.query("CREATE SCHEMA \(unescaped: schema)", logger: logger)
        let store = try await PostgresQueueStore.open(url: url, password: password, runner: runner, purpose: .service,
                                                      searchPath: schema, logger: logger)
        return PostgresHarness(schema: schema, url: url, store: store, admin: admin, adminTask: adminTask)
    }

    func another(runner: String) async throws -> any QueueStore {
        let store = try await PostgresQueueStore.open(url: url, password: Self.password, runner: runner, purpose: .service,
                                                      searchPath: schema, logger: Self.logger)
        others.withLock { $0.append(store) }
        return store
    }

    /// Runs `sql` on a connection of this test's schema.
    private func withSchemaConnection<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await admin.withConnection { connection in
            try await connection.query("SET search_path TO \(unescaped: schema)", logger: Self.logger)
            do {
                let result = try await body(connection)
                try await connection.query("RESET search_path", logger: Self.logger)
                return result
            } catch {
                _ = try? await connection.query("RESET search_path", logger: Self.logger)
                throw PostgresTestDatabase.ServerError(error)
            }
        }
    }

    func execute(_ sql: String) async throws {
        _ = try await withSchemaConnection { try await $0.query(PostgresQuery(unsafeSQL: sql), logger: Self.logger) }
    }

    func scalarInt(_ sql: String) async throws -> Int? {
        try await withSchemaConnection { connection in
            var value: Int?
            for try await found in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Self.logger).decode(Int?.self) {
                value = found
            }
            return value
        }
    }

    func textRows(_ sql: String) async throws -> [[String?]] {
        try await withSchemaConnection { connection in
            var rows: [[String?]] = []
            for try await row in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Self.logger) {
                // Text columns only: a test casts others (`CAST(x AS TEXT)` reads the same on both stores).
                rows.append(try row.map { try $0.decode(String?.self) })
            }
            return rows
        }
    }

    func tamper(_ sql: String) async throws {
        try await execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        try await execute("ALTER TABLE audit_log ALTER COLUMN hash DROP NOT NULL")
        try await execute(sql)
    }

    func interrupt() async throws {
        // Tables locked by a transaction that stays open until `resume`, and this test's
        // sessions ended: the store's statements wait for the lock or find their connection gone.
        let locked = AsyncStream<Void>.makeStream()
        let task = Task { [admin, schema, releaseOutage] in
            try await admin.withConnection { connection in
                try await connection.query("BEGIN", logger: Self.logger)
                try await connection.query("LOCK TABLE \(unescaped: schema).export_tasks, \(unescaped: schema).audit_log IN ACCESS EXCLUSIVE MODE", logger: Self.logger)
                locked.continuation.yield()
                for await _ in releaseOutage.stream { break }
                try await connection.query("COMMIT", logger: Self.logger)
            }
        }
        outage.withLock { $0 = task }
        for await _ in locked.stream { break }
        try await admin.query("""
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name = \(schema) AND pid <> pg_backend_pid()
            """, logger: Self.logger)
    }

    func resume() async throws {
        releaseOutage.continuation.yield()
        try await outage.withLock { $0 }?.value
    }

    func close() async {
        try? await resume()
        for store in others.withLock({ $0 }) { await store.close() }
        await postgresStore.close()
        _ = try? await admin.query("DROP SCHEMA \(unescaped: schema) CASCADE", logger: Self.logger)
        adminTask.cancel()
        await adminTask.value
    }
}
