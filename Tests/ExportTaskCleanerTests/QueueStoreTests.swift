import ExportTaskCleaner
import Foundation
import Testing

/// What only the SQLite store has: its file, its migrations, SQLite's own SQL. What every
/// store does is in the conformance suite (Conformance/).
@Suite("SQLite store")
struct QueueStoreTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("a new file is migrated to the current version, and opening it again changes nothing")
    func migrationFromEmptyIsIdempotent() async throws {
        let (store, path) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items(["a1"]), now: now)
        let again = try SQLiteQueueStore(path: path)
        await #expect(try again.counts()[.pending] == 1)
        let db = try SQLiteConnection(path: path)
        #expect(try db.scalarInt("PRAGMA user_version") == SQLiteQueue.schemaVersion)
        #expect(try db.scalarInt("SELECT count(*) FROM sqlite_master WHERE name IN ('export_tasks', 'audit_log')") == 2)
        #expect(try db.scalarInt("SELECT count(*) FROM export_tasks") == 1)
    }

    @Test("a database of a newer schema is refused untouched")
    func newerSchemaRefused() throws {
        let (_, path) = try TestSupport.makeStore()
        try SQLiteConnection(path: path).execute("PRAGMA user_version = 99")
        let error = try #require(throws: CleanerError.self) { try SQLiteQueueStore(path: path) }
        #expect(error.message.contains("schema version 99"))
        #expect(error.message.contains("upgrade export-task-cleaner"))
        #expect(try SQLiteConnection(path: path).scalarInt("PRAGMA user_version") == 99)
    }

    @Test("a file that is not a database, and a missing folder, give clear errors")
    func unusableFiles() throws {
        let folder = try TestSupport.makeFolder()
        let junk = folder.appendingPathComponent("junk.sqlite3")
        try Data(repeating: 0x41, count: 4096).write(to: junk)
        let corrupt = try #require(throws: CleanerError.self) { try SQLiteQueueStore(path: junk.path) }
        #expect(corrupt.code == .runtime)
        #expect(corrupt.message.contains("not a usable SQLite database"))
        #expect(try Data(contentsOf: junk) == Data(repeating: 0x41, count: 4096))

        let missing = try #require(throws: CleanerError.self) {
            try SQLiteQueueStore(path: folder.appendingPathComponent("nope/queue.sqlite3").path)
        }
        #expect(missing.code == .configuration)
        #expect(missing.message.contains("database:"))
        #expect(missing.message.contains("does not exist"))
    }

    @Test("another tool's bare INSERT OR IGNORE works, is deduplicated, and can be claimed")
    func foreignInsertIsClaimable() async throws {
        let (store, path) = try TestSupport.makeStore()
        let other = try SQLiteConnection(path: path)
        try other.execute("INSERT OR IGNORE INTO export_tasks(export_task_id) VALUES ('from-other-tool')")
        try other.execute("INSERT OR IGNORE INTO export_tasks(export_task_id) VALUES ('from-other-tool')")
        #expect(try other.scalarInt("SELECT count(*) FROM export_tasks") == 1)
        let summary = try await store.enqueue(TestSupport.items(["from-other-tool"]), now: now)
        #expect(summary.alreadyQueued == 1)

        // Defaults use SQLite's clock; claim as of a moment safely after it.
        let claimed = try await store.claim(limit: 10, leaseToken: "t1", leaseUntil: Date().addingTimeInterval(60),
                                      now: Date().addingTimeInterval(1))
        #expect(claimed.map(\.exportTaskID) == ["from-other-tool"])
        #expect(claimed.first?.attempts == 0)
        #expect(claimed.first?.projectID == nil)
    }

    @Test("audit_log refuses UPDATE and DELETE")
    func auditLogIsAppendOnly() async throws {
        let (store, path) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items(["bad id"]), now: now)
        let db = try SQLiteConnection(path: path)
        let update = #expect(throws: SQLiteError.self) { try db.execute("UPDATE audit_log SET outcome = 'deleted'") }
        #expect(update?.message.contains("append-only") == true)
        #expect(throws: SQLiteError.self) { try db.execute("DELETE FROM audit_log") }
        #expect(try db.scalarInt("SELECT count(*) FROM audit_log") == 1)
    }

    @Test("timestamps use SQLite's own format and parse back")
    func timestamps() {
        let date = Date(timeIntervalSince1970: 1_764_431_323.123)
        #expect(Timestamp.format(date) == "2025-11-29T15:48:43.123Z")
        #expect(Timestamp.parse("2025-11-29T15:48:43.123Z") == date)
        #expect(Timestamp.parse("2025-11-29") == Date(timeIntervalSince1970: 1_764_374_400))
        #expect(Timestamp.parse("2025-11-29 15:48") == Date(timeIntervalSince1970: 1_764_431_280))
        #expect(Timestamp.parse("yesterday") == nil)
        #expect(Timestamp.parse("2025-13-01") == nil)
    }
}

