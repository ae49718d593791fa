@testable import ExportTaskCleaner
import Foundation
import Testing

/// `backup PATH` with the built binary, as an operator meets it (docs/operations.md, "Backup and
/// restore"): a copy taken while the service works, restored by the page's steps, verified.
@Suite("Backup and restore", .timeLimit(.minutes(3)))
struct BackupTests {
    @Test("backup while the service deletes: a whole copy; restored, audit --verify passes and run --drain finishes it")
    func backupDuringARun() async throws {
        let world = try await World.start(latency: .milliseconds(5))
        let ids = (0..<3_000).map { String(format: "backup-%05d", $0) }
        try await world.enqueue(ids)
        let run = try world.launch(["run"], config: ["max_requests_per_second": 400, "concurrency": 16,
                                                   "lease_seconds": 5, "request_timeout_ms": 2_000])
        #expect(try await world.eventually { try world.scalar("SELECT count(*) FROM export_tasks WHERE state = 'deleted'") >= 300 },
                "\(run.stderrText.suffix(2_000))")

        let copy = world.folder.appendingPathComponent("queue-backup.sqlite3").path
        let backup = try world.launch(["backup", copy])
        #expect(try await backup.exit(within: .seconds(60)) == 0, "\(backup.stderrText.suffix(2_000))")
        #expect(backup.stdoutText.contains("written to \(copy): "), "\(backup.stdoutText)")
        #expect(backup.stdoutText.contains(" 3000 tasks, audit row "), "\(backup.stdoutText)")
        let running = try world.scalar("SELECT count(*) FROM export_tasks WHERE state IN ('pending', 'in_progress')")
        #expect(running > 0, "the backup was taken while the service still had work")

        #expect(try await world.eventually(timeout: .seconds(60)) {
            try world.scalar("SELECT count(*) FROM export_tasks WHERE state = 'deleted'") == ids.count
        })
        run.signal(SIGTERM)
        #expect(try await run.exit(within: .seconds(30)) == 0)

        // Nothing beside the copy: no -wal, no half-written file under a hidden name.
        let names = try FileManager.default.contentsOfDirectory(atPath: world.folder.path)
        #expect(!names.contains { $0.hasPrefix(".queue-backup") || $0 == "queue-backup.sqlite3-wal" }, "\(names)")
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: copy)[.posixPermissions] as? Int)
        #expect(mode == 0o640)

        // The page's restore: the copy becomes the queue of a stopped service.
        let restoredFolder = world.folder.appendingPathComponent("restored")
        try FileManager.default.createDirectory(at: restoredFolder, withIntermediateDirectories: false)
        let restored = restoredFolder.appendingPathComponent("queue.sqlite3").path
        try FileManager.default.copyItem(atPath: copy, toPath: restored)
        let verify = try world.launch(["audit", "--verify"], config: ["database": restored])
        #expect(try await verify.exit(within: .seconds(60)) == 0, "\(verify.stdoutText.suffix(1_000)) \(verify.stderrText.suffix(1_000))")
        let restoredQueue = try SQLiteConnection(path: restored)
        #expect(try restoredQueue.scalarInt("SELECT count(*) FROM export_tasks") == ids.count)
        let unfinished = try restoredQueue.scalarInt("SELECT count(*) FROM export_tasks WHERE state IN ('pending', 'in_progress')") ?? 0
        #expect(unfinished > 0)

        // Restored, the service takes up where the copy stood (the leases in it, of 5 s, run
        // out): what the first service deleted after the backup is not found now, on record.
        let drain = try world.launch(["run", "--drain"], config: ["database": restored])
        #expect(try await drain.exit(within: .seconds(90)) == 0, "\(drain.stderrText.suffix(2_000))")
        #expect(try restoredQueue.scalarInt("SELECT count(*) FROM export_tasks WHERE state IN ('pending', 'in_progress')") == 0)
        let verifyAgain = try world.launch(["audit", "--verify"], config: ["database": restored])
        #expect(try await verifyAgain.exit(within: .seconds(60)) == 0, "\(verifyAgain.stdoutText.suffix(1_000))")
        try await world.stop()
    }

    @Test("backup refuses, with exit 2 and nothing written: a file that exists, a missing folder, no queue, PostgreSQL")
    func refusals() async throws {
        let world = try await World.start()
        try await world.enqueue(["refusal-1"])
        let existing = world.folder.appendingPathComponent("existing.sqlite3").path
        try Data("precious".utf8).write(to: URL(fileURLWithPath: existing))

        let cases: [(arguments: [String], config: [String: Any], message: String)] = [
            (["backup", existing], [:], "exists; a backup never replaces a file"),
            (["backup", world.database], [:], "exists; a backup never replaces a file"),
            (["backup", world.folder.appendingPathComponent("missing/copy.sqlite3").path], [:], "/missing does not exist"),
            (["backup", world.folder.path + "/"], [:], "not a folder"),
            (["backup", world.folder.appendingPathComponent("copy.sqlite3").path],
             ["database": world.folder.appendingPathComponent("no-queue.sqlite3").path], "there is no queue at"),
            (["backup", world.folder.appendingPathComponent("copy.sqlite3").path],
             ["database": "postgresql://cleaner@127.0.0.1:9/queue?sslmode=disable"], "back it up with pg_dump"),
        ]
        for (arguments, config, message) in cases {
            let backup = try world.launch(arguments, config: config)
            #expect(try await backup.exit(within: .seconds(30)) == 2, "\(arguments): \(backup.stderrText)")
            #expect(backup.stderrText.contains(message), "\(arguments): \(backup.stderrText)")
        }
        #expect(try String(contentsOfFile: existing, encoding: .utf8) == "precious")
        #expect(!FileManager.default.fileExists(atPath: world.folder.appendingPathComponent("copy.sqlite3").path))
        #expect(!FileManager.default.fileExists(atPath: world.folder.appendingPathComponent("no-queue.sqlite3").path))
        let names = try FileManager.default.contentsOfDirectory(atPath: world.folder.path)
        #expect(!names.contains { $0.contains(".partial-") }, "\(names)")
        try await world.stop()
    }
}
