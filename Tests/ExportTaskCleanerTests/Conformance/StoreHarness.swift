import Foundation
import Testing

@testable import ExportTaskCleaner

/// The stores the conformance suite runs on: SQLite always; PostgreSQL when
/// `EXPORT_TASK_CLEANER_TEST_POSTGRES_URL` names a server to test against (CI always sets it;
/// docs/development.md, "Tests").
enum StoreKind: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case sqlite
    case postgres

    static var available: [StoreKind] {
        PostgresTestServer.configured == nil ? [.sqlite] : [.sqlite, .postgres]
    }

    var testDescription: String { self == .sqlite ? "SQLite" : "PostgreSQL" }

    /// A fresh, empty queue of this kind, for one test.
    func makeHarness(runner: String = "test:1") async throws -> any StoreHarness {
        switch self {
        case .sqlite: try SQLiteHarness(runner: runner)
        case .postgres: try await PostgresHarness.make(runner: runner)
        }
    }
}

/// One test's queue, and the ways in that other parties have: a second service on the same
/// queue, another tool's SQL, an outage.
protocol StoreHarness: Sendable {
    var kind: StoreKind { get }
    /// The store under test, as the service and the commands see it.
    var store: any QueueStore { get }
    /// The same queue opened again, as a second service (another host) would.
    func another(runner: String) async throws -> any QueueStore
    /// One statement, run as a feeding tool or a hand at a SQL prompt would run it.
    func execute(_ sql: String) async throws
    /// The first column of the first row, as an integer.
    func scalarInt(_ sql: String) async throws -> Int?
    /// Every row of text columns (nil for NULL); cast others with `CAST(x AS TEXT)`.
    func textRows(_ sql: String) async throws -> [[String?]]
    /// Runs `sql` with the audit log's append-only guards lifted, as someone who owns the
    /// database could: what `audit --verify` must notice.
    func tamper(_ sql: String) async throws
    /// Makes the store unreachable for the service until `resume` (SQLite: another process
    /// holds the write lock; PostgreSQL: the server restarts).
    func interrupt() async throws
    func resume() async throws
    func close() async
}

extension StoreHarness {
    /// The `attempts` of each task, by export task ID.
    func attempts() async throws -> [String: Int] {
        var result: [String: Int] = [:]
        for row in try await textRows("SELECT export_task_id, CAST(attempts AS TEXT) FROM export_tasks") {
            result[row[0] ?? ""] = row[1].flatMap { Int($0) }
        }
        return result
    }
}

/// A SQLite file in a temporary folder; "another tool" is a second connection to it.
struct SQLiteHarness: StoreHarness {
    let kind = StoreKind.sqlite
    let path: String
    let sqliteStore: SQLiteQueueStore
    var store: any QueueStore { sqliteStore }
    /// The connection holding the write lock during an outage.
    private let outage = OutageLock()

    init(runner: String) throws {
        let (store, path) = try TestSupport.makeStore(runner: runner)
        self.sqliteStore = store
        self.path = path
    }

    func another(runner: String) async throws -> any QueueStore {
        try SQLiteQueueStore(path: path, runner: runner)
    }

    func execute(_ sql: String) async throws {
        try SQLiteConnection(path: path).execute(sql)
    }

    func scalarInt(_ sql: String) async throws -> Int? {
        try SQLiteConnection(path: path).scalarInt(sql)
    }

    func textRows(_ sql: String) async throws -> [[String?]] {
        let db = try SQLiteConnection(path: path)
        let statement = try db.prepare(sql)
        defer { statement.reset() }
        var rows: [[String?]] = []
        while try statement.step() {
            rows.append((0..<statement.columnCount).map { statement.optionalString($0) })
        }
        return rows
    }

    func tamper(_ sql: String) async throws {
        let db = try SQLiteConnection(path: path)
        try db.execute("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; DROP TRIGGER audit_log_no_replace; DROP TRIGGER audit_log_hash_required")
        try db.execute(sql)
    }

    func interrupt() async throws {
        let db = try SQLiteConnection(path: path)
        try db.execute("BEGIN IMMEDIATE")
        outage.hold(db)
    }

    func resume() async throws {
        if let db = outage.release() { try db.execute("COMMIT") }
    }

    func close() async { try? await resume() }
}

/// The connection that holds SQLite's write lock while a test keeps the store away.
final class OutageLock: @unchecked Sendable {
    private let lock = NSLock()
    private var held: SQLiteConnection?

    func hold(_ connection: SQLiteConnection) { lock.withLock { held = connection } }
    func release() -> SQLiteConnection? { lock.withLock { defer { held = nil }; return held } }
}

/// Says so when the conformance suite runs on SQLite alone: its PostgreSQL cases are not
/// skipped one by one, they are simply not made.
@Suite("Store conformance: which stores")
struct ConformanceStoresTests {
    @Test("the conformance suite runs on PostgreSQL too", .enabled(if: PostgresTestDatabase.isConfigured, PostgresTestDatabase.skipComment))
    func runsOnPostgreSQL() {
        #expect(StoreKind.available == [.sqlite, .postgres])
    }
}
