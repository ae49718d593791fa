import ExportTaskCleaner
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Hostile input met through the commands, as an operator or a feeding tool meets it: the built
/// binary as a child process (docs/commands.md and docs/operations.md, "Behaviour under failures").
@Suite("Hostile input, through the commands")
struct HostileCommandTests {
    private func run(_ world: World, _ arguments: [String], config: [String: Any]? = [:],
                     environment: [String: String]? = nil, stdin: URL? = nil) async throws -> (status: Int32, out: String, err: String) {
        let child = try world.launch(arguments, config: config, environment: environment, stdin: stdin)
        let status = try await child.exit(within: .seconds(60))
        return (status, child.stdoutText, child.stderrText)
    }

    @Test("server text with escape sequences and CRLF: one CSV record per row, nothing raw on the terminal")
    func escapedOutput() async throws {
        let world = try await World.start()
        try await world.enqueue(["t1"])
        let db = try SQLiteConnection(path: world.database)
        let hostile = "IOTDA.\u{1B}[31m\r\nFAKE,\"row\"\u{1B}[2J"
        // A row shaped by hand, outside the audit chain: its trigger steps aside.
        try db.execute("""
            DROP TRIGGER audit_log_hash_required;
            INSERT INTO audit_log(task_id, export_task_id, attempt, at, http_status, error_code, error_message, outcome, delivery, runner)
            VALUES (1, 't1', 1, '2026-11-29T10:00:00.000Z', 400, 'IOTDA.' || char(27) || '[31m' || char(13, 10) || 'FAKE,"row"' || char(27) || '[2J',
                    'bad' || char(13, 10) || 'line', 'rejected', 'answered', 'h:1')
            """)
        try db.execute("""
            UPDATE export_tasks SET state = 'rejected', last_error_code = 'IOTDA.' || char(27) || '[2J', last_error_message = 'x' || char(13) || 'y',
                finished_at = '2026-11-29T10:00:00.000Z'
            """)

        let csv = try await run(world, ["audit", "--format", "csv"])
        #expect(csv.status == 0)
        // Parsed as RFC 4180: the header and one record, the field intact.
        let records = Self.parseCSV(csv.out)
        #expect(records.count == 2, "\(records)")
        #expect(records.last?[10] == hostile)

        let table = try await run(world, ["audit", "--format", "table"])
        #expect(table.status == 0)
        #expect(!table.out.unicodeScalars.contains { $0.value == 0x1B || $0 == "\r" })
        #expect(table.out.split(separator: "\n").count == 2)
        #expect(table.out.contains("IOTDA.\\u{1b}[31m\\u{d}\\u{a}FAKE"))

        let status = try await run(world, ["status"])
        #expect(status.status == 0)
        #expect(!status.out.unicodeScalars.contains { $0.value == 0x1B || $0 == "\r" })
        #expect(status.out.contains("last outcome    rejected t1 at 2026-11-29T10:00:00.000Z (HTTP 400) IOTDA.\\u{1b}[31m\\u{d}\\u{a}FAKE"))
        try await world.stop()
    }

    /// RFC 4180 records (CRLF between records, quoted fields may hold anything).
    static func parseCSV(_ text: String) -> [[String]] {
        var records: [[String]] = [], record: [String] = [], field = ""
        var quoted = false, scalars = Array(text.unicodeScalars), index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            if quoted {
                if scalar == "\"" {
                    if index + 1 < scalars.count, scalars[index + 1] == "\"" { field.unicodeScalars.append("\""); index += 1 } else { quoted = false }
                } else {
                    field.unicodeScalars.append(scalar)
                }
            } else if scalar == "\"" {
                quoted = true
            } else if scalar == "," {
                record.append(field); field = ""
            } else if scalar == "\r", index + 1 < scalars.count, scalars[index + 1] == "\n" {
                record.append(field); records.append(record); record = []; field = ""; index += 1
            } else {
                field.unicodeScalars.append(scalar)
            }
            index += 1
        }
        scalars.removeAll()
        return records
    }

    @Test("one endless input line is refused after 256 bytes: nothing queued, memory bounded, nothing echoed")
    func endlessLine() async throws {
        let world = try await World.start()
        let input = world.folder.appendingPathComponent("endless.txt")
        var bytes = Data("good-1\n".utf8)
        bytes.append(Data(repeating: UInt8(ascii: "x"), count: 20_000_000))
        try bytes.write(to: input)
        let result = try await run(world, ["enqueue"], stdin: input)
        #expect(result.status == 2)
        #expect(result.err.contains("standard input, line 2: longer than 256 bytes"))
        #expect(result.err.count < 1_000)
        #expect(try world.scalar("SELECT count(*) FROM export_tasks") == 0)

        let list = world.folder.appendingPathComponent("list.txt")
        try Data(("ok-1\n" + String(repeating: "y", count: 200) + "!\nok-2\n").utf8).write(to: list)
        let mixed = try await run(world, ["enqueue"], stdin: list)
        #expect(mixed.status == 1)
        #expect(mixed.out.contains("queued 2, already queued 0, invalid 1"))
        #expect(mixed.err.contains("line 2: invalid export task ID \"\(String(repeating: "y", count: 64))... (201 bytes in all)\""))
        try await world.stop()
    }

    @Test("read-only commands never create or change a database; writers refuse another application's")
    func foreignDatabases() async throws {
        let world = try await World.start()
        let foreign = world.folder.appendingPathComponent("other-app.sqlite3").path
        let other = try SQLiteConnection(path: foreign, mode: .readWriteCreate)
        try other.execute("PRAGMA journal_mode = DELETE; CREATE TABLE invoices(id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices(total) VALUES (9.5)")
        let before = try Data(contentsOf: URL(fileURLWithPath: foreign))
        for arguments in [["status"], ["status", "--json"], ["audit"], ["enqueue", "t1"], ["run", "--drain"], ["requeue", "--state", "failed"]] {
            let result = try await run(world, arguments, config: ["database": foreign])
            #expect(result.status == 2, "\(arguments): \(result.err)")
            #expect(result.err.contains("invoices"), "\(arguments): \(result.err)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: foreign)) == before)
        #expect(!FileManager.default.fileExists(atPath: foreign + "-wal"))

        let missing = world.folder.appendingPathComponent("not-yet.sqlite3").path
        let status = try await run(world, ["status"], config: ["database": missing])
        #expect(status.status == 2)
        #expect(status.err.contains("there is no queue at \(missing) yet"))
        #expect(!FileManager.default.fileExists(atPath: missing))
        try await world.stop()
    }

    @Test("a corrupted queue stops run with exit 1 and a clear message, not an endless loop")
    func corruptedQueue() async throws {
        let world = try await World.start()
        try await world.enqueue((1...3_000).map { "task-\($0)" })
        try SQLiteConnection(path: world.database).execute("PRAGMA wal_checkpoint(TRUNCATE)")
        // Flip bytes in the middle of the file: pages of the table and its indexes.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: world.database))
        let size = try handle.seekToEnd()
        for offset in stride(from: size / 3, to: size * 2 / 3, by: 4_096) {
            try handle.seek(toOffset: offset + 100)
            handle.write(Data(repeating: 0xA5, count: 600))
        }
        try handle.close()
        let result = try await run(world, ["run", "--drain"])
        #expect(result.status == 1, "\(result.err)")
        #expect(result.err.contains("the queue is corrupt") || result.err.contains("is not a usable SQLite database"), "\(result.err)")
        #expect(!result.err.contains("cannot claim tasks; trying again"))
        // Whatever was sent and could not be recorded is in the log, one line each.
        let unwritten = result.err.components(separatedBy: "outcome not written: the queue is corrupt").count - 1
        #expect(unwritten <= world.simulator.counters.requests)
        try await world.stop()
    }

    @Test("enqueue: '#x' and blank arguments are invalid IDs, listed and recorded, not skipped (#21)")
    func enqueueCommentLikeArguments() async throws {
        let world = try await World.start()
        let result = try await run(world, ["enqueue", "#x", "ok-1", "  "])
        #expect(result.status == 1, "\(result.err)")
        #expect(result.out.contains("queued 1, already queued 0, invalid 2"), "\(result.out)")
        #expect(result.err.contains("argument 1: invalid export task ID \"#x\""), "\(result.err)")
        #expect(result.err.contains("argument 3: invalid export task ID \"\""), "\(result.err)")
        #expect(try world.scalar("SELECT count(*) FROM export_tasks WHERE state = 'invalid'") == 2)
        #expect(try world.scalar("SELECT count(*) FROM audit_log WHERE outcome = 'invalid'") == 2)
        try await world.stop()
    }

    @Test("--since: a huge age or an impossible date is a usage error, not a crash")
    func sinceBounds() async throws {
        let world = try await World.start()
        for since in ["800000d", "99999999999999h", "inf", "nan", "1e300s", "2026-02-30", "-5m", "1e9h"] {
            let result = try await run(world, ["audit", "--since", since])
            #expect(result.status == 2, "\(since): \(result.err)")
            #expect(result.err.contains("--since"), "\(since)")
        }
        // Past 100 years (36,525 days), however large: refused as too far back (#21).
        for since in ["36526d", "36600d", "99999999999999999999d", "3155760001s"] {
            let result = try await run(world, ["audit", "--since", since])
            #expect(result.status == 2, "\(since): \(result.err)")
            #expect(result.err.contains("--since: an age of at most 100 years (36525d), got \"\(since)\""), "\(since): \(result.err)")
        }
        #expect(try await run(world, ["audit", "--since", "36500d"]).status == 0)
        #expect(try await run(world, ["audit", "--since", "36525d"]).status == 0)
        try await world.stop()
    }

    @Test("the credentials file: owner, symlinks and folders are checked as OpenSSH's StrictModes does",
          .enabled(if: geteuid() == 0, "changes owners"))
    func credentialsFileOwnership() async throws {
        let world = try await World.start()
        let secrets = world.folder.appendingPathComponent("secrets")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
        chmod(secrets.path, 0o700)
        let file = secrets.appendingPathComponent("credentials")
        try Data("ak = \(EndToEndTests.key.ak)\nsk = \(EndToEndTests.key.sk)\n".utf8).write(to: file)
        chmod(file.path, 0o600)
        func attempt(_ path: String) async throws -> (status: Int32, err: String) {
            let result = try await run(world, ["run", "--drain"], config: ["auth": ["credentials_file": path]], environment: [:])
            return (result.status, result.err)
        }
        #expect(try await attempt(file.path).status == 0)

        chown(file.path, 4242, 4242)
        let foreign = try await attempt(file.path)
        #expect(foreign.status == 2)
        #expect(foreign.err.contains("belongs to uid 4242, not to this user (uid 0) or root"))
        // A symlink of ours to another user's file is that user's file.
        let link = world.folder.appendingPathComponent("link-to-credentials")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: file)
        #expect(try await attempt(link.path).err.contains("belongs to uid 4242"))
        chown(file.path, 0, 0)

        chmod(secrets.path, 0o770)
        let groupWritable = try await attempt(file.path)
        #expect(groupWritable.status == 2)
        #expect(groupWritable.err.contains("the folder \(secrets.path) is writable by group or others (mode 770)"))
        chmod(secrets.path, 0o700)
        chown(secrets.path, 4242, 0)
        #expect(try await attempt(file.path).err.contains("the folder \(secrets.path) belongs to uid 4242"))
        chown(secrets.path, 0, 0)
        #expect(try await attempt(file.path).status == 0)
        try await world.stop()
    }
}
