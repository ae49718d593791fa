import ExportTaskCleaner
import Foundation
import Testing

@testable import ExportTaskCleaner

/// `prune`, `audit --verify --archive` and the service's own pruning, as the built binary
/// (docs/database.md, "Retention"), and `kill -9` during a prune at seeded moments: every row
/// stays in the database, in an archive, or in both, never in neither.
@Suite("Retention: the built binary", .serialized)
struct PruneEndToEndTests {
    struct Queue {
        let folder: URL
        let database: String
        let config: String
        var archive: String { folder.appendingPathComponent("archive").path }
    }

    /// A queue of `count` tasks finished an hour ago, two audit rows each, and its configuration.
    func makeQueue(count: Int, retention: String = #"{"keep_finished": "90d"}"#) async throws -> Queue {
        let folder = try TestSupport.makeFolder("prune-e2e")
        let database = folder.appendingPathComponent("queue.sqlite3").path
        try await RetentionFixture.fillAndDrain(try SQLiteQueueStore(path: database), prefix: "k", count: count, at: Date() - 3_600)
        let config = folder.appendingPathComponent("config.json").path
        try Data(#"{"database": "\#(database)", "region": "cn-north-4", "project_id": "p1", "retention": \#(retention)}"#.utf8)
            .write(to: URL(fileURLWithPath: config))
        return Queue(folder: folder, database: database, config: config)
    }

    func run(_ arguments: [String], _ queue: Queue) async throws -> (status: Int32, output: String) {
        let child = try ChildProcess.start(arguments: arguments + ["--config", queue.config], environment: [:])
        let status = try await child.exit(within: .seconds(120))
        return (status, child.stdoutText + child.stderrText)
    }

    func ids(_ database: String, _ sql: String) throws -> [Int] {
        let db = try SQLiteConnection(path: database)
        let statement = try db.prepare(sql)
        defer { statement.reset() }
        var ids: [Int] = []
        while try statement.step() { ids.append(statement.int(0)) }
        return ids
    }

    @Test("prune --dry-run, prune, audit --verify --archive, audit --task; an edited archive is named")
    func commands() async throws {
        let queue = try await makeQueue(count: 300)
        let dry = try await run(["prune", "--older-than", "30m", "--dry-run"], queue)
        #expect(dry.status == 0 && dry.output.contains("would move 600 audit rows (rows 1 to 600) and 300 tasks"), "\(dry.output)")
        #expect(!FileManager.default.fileExists(atPath: queue.archive))
        let kept = try await run(["prune"], queue)
        #expect(kept.status == 0 && kept.output.contains("nothing to move"), "\(kept.output)")
        let pruned = try await run(["prune", "--older-than", "0s", "--batch-rows", "250"], queue)
        #expect(pruned.status == 0 && pruned.output.contains("moved 600 audit rows (rows 1 to 600) and 300 tasks"), "\(pruned.output)")
        // 250 rows a batch, fewer should a commit hold the lock over 100 ms (BatchSizer).
        #expect(pruned.output.contains(" files, audit-0000000000000001-"))
        #expect(pruned.output.contains(" to audit-0000000000000"))
        #expect(pruned.output.contains("-0000000000000600.jsonl.gz; the longest batch held the write lock "))
        let files = ArchiveFiles.list(queue.archive)
        #expect(files.count >= 3 && files.first?.hasSuffix("-0000000000000250.jsonl.gz") == true)
        var info = stat()
        #expect(stat(queue.archive, &info) == 0 && info.st_mode & 0o7777 == 0o2770)

        let alone = try await run(["audit", "--verify"], queue)
        #expect(alone.status == 0 && alone.output.contains("audit chain verified: 0 rows; head row 600"), "\(alone.output)")
        let whole = try await run(["audit", "--verify", "--archive", queue.archive], queue)
        #expect(whole.status == 0, "\(whole.output)")
        #expect(whole.output.contains("archives verified: \(files.count) files, 600 audit rows, 300 tasks"))
        #expect(whole.output.contains("audit chain verified: 600 rows; head row 600"))
        let task = try await run(["audit", "--task", "k-7", "--archive", queue.archive, "--format", "json"], queue)
        // Its two rows, in the first file and the second.
        #expect(task.status == 0, "\(task.output)")
        #expect(task.output.contains("\"k-7\": 1 audit row archived at"), "\(task.output)")
        #expect(task.output.contains("audit-0000000000000001-0000000000000250.jsonl.gz"))
        #expect(task.output.components(separatedBy: "1 audit row archived at").count == 3)
        #expect(task.output.contains(#""export_task_id":"k-7""#))
        let noted = try await run(["audit", "--task", "k-7"], queue)
        #expect(noted.output.contains("audit rows 1 to 600 were archived"), "\(noted.output)")

        // Readable with zcat, JSON Lines: audit rows with their hash, and the tasks.
        let first = queue.archive + "/audit-0000000000000001-0000000000000250.jsonl.gz"
        let zcat = Process()
        zcat.executableURL = URL(fileURLWithPath: "/bin/zcat")
        zcat.arguments = [first]
        let pipe = Pipe()
        zcat.standardOutput = pipe
        try zcat.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        zcat.waitUntilExit()
        let lines = text.split(separator: "\n")
        #expect(lines.first?.contains(#""hash":""#) == true && lines.first?.contains(#""id":1,"#) == true)

        // An edit: the file is named.
        let edited = try Gzip.compress(Array(text.replacingOccurrences(of: "\"outcome\":\"retry\"", with: "\"outcome\":\"failed\"").utf8))
        chmod(first, 0o640)
        try Data(edited).write(to: URL(fileURLWithPath: first))
        let broken = try await run(["audit", "--verify", "--archive", queue.archive], queue)
        #expect(broken.status == 1)
        #expect(broken.output.contains("audit-0000000000000001-0000000000000250.jsonl.gz does not match the SHA-256"), "\(broken.output)")
    }

    @Test("kill -9 during a prune at seeded moments: every row in the database, an archive, or both")
    func killNine() async throws {
        let seed = try EndToEndTests.killSeed()
        let random = SeededRandomSource(seed: seed)
        let moments = (0..<8).map { _ in 5 + Int(random.nextUnit() * 296) }  // 5...300 ms
        print("prune kill -9 seed: \(seed) (moments \(moments) ms; replay with KILL_SEED=\(seed))")
        let replay = "replay with KILL_SEED=\(seed)"
        let queue = try await makeQueue(count: 4_000)
        let allAudit = try ids(queue.database, "SELECT id FROM audit_log")
        let allTasks = try ids(queue.database, "SELECT id FROM export_tasks")
        var kills = 0
        // Kills that came between a file's sync and its commit: its rows then in both places.
        var inBoth = 0
        for moment in moments {
            let child = try ChildProcess.start(
                arguments: ["prune", "--older-than", "0s", "--batch-rows", "20", "--config", queue.config], environment: [:])
            // The seeded moment: how long the prune runs before it is killed.
            try await Task.sleep(for: .milliseconds(moment))
            child.signal(SIGKILL)
            if try await child.exit(within: .seconds(30)) == -SIGKILL { kills += 1 }
            let (archivedAudit, archivedTasks) = try RetentionFixture.archived(queue.archive)
            let audit = Set(archivedAudit).union(try ids(queue.database, "SELECT id FROM audit_log"))
            let tasks = Set(archivedTasks).union(try ids(queue.database, "SELECT id FROM export_tasks"))
            #expect(audit == Set(allAudit), "\(replay): audit rows in neither place: \(Set(allAudit).subtracting(audit).sorted().prefix(5))")
            #expect(tasks == Set(allTasks), "\(replay): tasks in neither place: \(Set(allTasks).subtracting(tasks).sorted().prefix(5))")
            let store = try SQLiteQueueStore(path: queue.database, purpose: .inspect)
            let checkpoint = try await store.lastArchiveCheckpoint()?.lastID ?? 0
            if ArchiveFiles.list(queue.archive).contains(where: { (ArchiveFiles.range(ofName: $0)?.first ?? 0) > checkpoint }) {
                inBoth += 1
            }
            #expect(try await store.verifyAuditChain().problem == nil, "\(replay)")
            #expect(try await store.checkConsistency().inconsistent == 0, "\(replay)")
        }
        #expect(kills > 0, "\(replay): no prune was killed while it ran")
        print("prune kill -9: \(kills) of \(moments.count) kills while it ran, \(inBoth) between a file's sync and its commit")
        let rest = try await run(["prune", "--older-than", "0s"], queue)
        #expect(rest.status == 0, "\(replay): \(rest.output)")
        let whole = try await run(["audit", "--verify", "--archive", queue.archive], queue)
        #expect(whole.status == 0, "\(replay): \(whole.output)")
        #expect(whole.output.contains("audit chain verified: \(allAudit.count) rows"), "\(replay): \(whole.output)")
        #expect(try ids(queue.database, "SELECT id FROM export_tasks").isEmpty)
    }

    @Test("the service prunes by itself, at start")
    func servicePrunes() async throws {
        let world = try await World.start()
        try await RetentionFixture.fillAndDrain(try SQLiteQueueStore(path: world.database), prefix: "s", count: 100, at: Date() - 3_600)
        let run = try world.launch(["run"], config: ["retention": ["keep_finished": "30m", "every": "1h"]])
        #expect(try await world.eventually { try world.scalar("SELECT count(*) FROM export_tasks") == 0 })
        run.signal(SIGTERM)
        #expect(try await run.exit(within: .seconds(30)) == 0)
        let archive = world.folder.appendingPathComponent("archive").path
        let (audit, tasks) = try RetentionFixture.archived(archive)
        #expect(audit.count == 200 && tasks.count == 100)
        try await world.stop()
    }
}
