import Foundation
import Logging
import Testing

@testable import ExportTaskCleaner

/// Retention on every store (docs/database.md, "Retention"): what leaves the database is in an
/// archive first, the archives and the database verify as one chain, and every task left is
/// consistent with its audit rows.
@Suite("Store conformance: retention", .serialized)
struct ConformanceRetentionTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    func pruner(_ store: any QueueStore, _ folder: String, batchRows: Int = 500) -> Pruner {
        Pruner(store: store, folder: folder, runner: "test:1", batchRows: batchRows, logger: quiet)
    }

    func ids(_ harness: any StoreHarness, _ sql: String) async throws -> [Int] {
        try await harness.textRows(sql).compactMap { $0[0].flatMap { Int($0) } }
    }

    @Test("finished tasks leave with their history; nothing is lost; both chains verify", arguments: StoreKind.available)
    func pruneMovesAndVerifies(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let store = harness.store
        try await RetentionFixture.fillAndDrain(store, prefix: "old", count: 1_200, at: now)
        try await RetentionFixture.fillAndDrain(store, prefix: "new", count: 50, at: now + 7_200)
        _ = try await store.enqueue(TestSupport.items(["waiting"]), now: now)
        let allAudit = try await ids(harness, "SELECT CAST(id AS TEXT) FROM audit_log")
        let allTasks = try await ids(harness, "SELECT CAST(id AS TEXT) FROM export_tasks")
        let folder = try TestSupport.makeFolder("archive").path + "/archive"

        let dry = try await pruner(store, folder).prune(cutoff: now + 3_600, dryRun: true, now: { self.now })
        #expect(dry.auditRows == 2_400 && dry.tasks == 1_200 && dry.files.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: folder), "a dry run makes nothing")

        let summary = try await pruner(store, folder).prune(cutoff: now + 3_600, dryRun: false, now: { self.now })
        #expect(summary.auditRows == 2_400)
        #expect(summary.tasks == 1_200)
        #expect(summary.files == ArchiveFiles.list(folder))
        #expect(summary.files.count >= 4)
        #expect(summary.longestLockHold < .seconds(1))
        // The first row of a task finished after the cutoff holds the chain.
        #expect(summary.heldAt == 2_401)

        // Every row in the database or an archive, none in both, none in neither.
        let (archivedAudit, archivedTasks) = try RetentionFixture.archived(folder)
        let leftAudit = try await ids(harness, "SELECT CAST(id AS TEXT) FROM audit_log")
        let leftTasks = try await ids(harness, "SELECT CAST(id AS TEXT) FROM export_tasks")
        #expect((archivedAudit + leftAudit).sorted() == allAudit.sorted())
        #expect((archivedTasks + leftTasks).sorted() == allTasks.sorted())
        #expect(try await harness.scalarInt("SELECT count(*) FROM export_tasks WHERE export_task_id LIKE 'old-%'") == 0)

        // The database alone verifies from the checkpoint; with the archives, from row 1.
        let alone = try await store.verifyAuditChain()
        #expect(alone.problem == nil)
        #expect(alone.rows == 100)
        let archives = ArchiveVerification.verify(try await store.archiveCheckpoints(), folder: folder)
        #expect(archives.problem == nil)
        #expect(archives.rows == 2_400 && archives.tasks == 1_200 && archives.files == summary.files.count)
        let whole = try await store.verifyAuditChain(continuing: archives.walker)
        #expect(whole.problem == nil)
        #expect(whole.rows == allAudit.count)
        #expect(whole.headHash == alone.headHash)
        #expect(try await store.checkConsistency().inconsistent == 0)

        // The chain goes on after the checkpoint.
        _ = try await store.enqueue(TestSupport.items(["bad id!"]), now: now)
        #expect(try await store.verifyAuditChain().problem == nil)
        await harness.close()
    }

    @Test("every row archived: new rows continue the chain from the checkpoint", arguments: StoreKind.available)
    func everyRowArchived(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        try await RetentionFixture.fillAndDrain(harness.store, prefix: "a", count: 20, at: now)
        let folder = try TestSupport.makeFolder("archive").path + "/archive"
        let summary = try await pruner(harness.store, folder).prune(cutoff: now + 10, dryRun: false, now: { self.now })
        #expect(summary.auditRows == 40)
        #expect(try await harness.scalarInt("SELECT count(*) FROM audit_log") == 0)
        #expect(try await harness.store.auditHead()?.id == 40)
        _ = try await harness.store.enqueue(TestSupport.items(["bad id!"]), now: now)
        #expect(try await harness.store.auditHead()?.id == 41)
        let archives = ArchiveVerification.verify(try await harness.store.archiveCheckpoints(), folder: folder)
        let whole = try await harness.store.verifyAuditChain(continuing: archives.walker)
        #expect(whole.problem == nil && whole.rows == 41)
        await harness.close()
    }

    @Test("a file past the checkpoint that none records is set aside, never deleted (a database restored from an older backup)",
          arguments: StoreKind.available)
    func unrecordedFilesKept(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        try await RetentionFixture.fillAndDrain(harness.store, prefix: "a", count: 20, at: now)
        let folder = try TestSupport.makeFolder("archive").path + "/archive"
        try ArchiveFiles.prepareFolder(folder)
        // What a restore leaves: an archive of rows this database no longer has, past its
        // checkpoint (here: none yet), under the name a new batch would take; and a temporary file.
        let stranger = ArchiveFiles.name(firstID: 1, lastID: 40)
        let bytes = Array("rows only this file holds".utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: folder + "/" + stranger))
        try Data().write(to: URL(fileURLWithPath: folder + "/.tmp-" + ArchiveFiles.prefix + "x"))
        let summary = try await pruner(harness.store, folder).prune(cutoff: now + 10, dryRun: false, now: { self.now })
        #expect(summary.leftoversRemoved.contains("\(stranger) (kept as .set-aside-\(stranger))"), "\(summary.leftoversRemoved)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder + "/.set-aside-" + stranger)) == Data(bytes))
        #expect(!FileManager.default.fileExists(atPath: folder + "/.tmp-" + ArchiveFiles.prefix + "x"))
        // The prune went on, into a file of its own.
        #expect(summary.auditRows == 40)
        let archives = ArchiveVerification.verify(try await harness.store.archiveCheckpoints(), folder: folder)
        #expect(archives.problem == nil && archives.rows == 40)
        await harness.close()
    }

    @Test("between two batches, every task left is consistent: a leaving task's archived rows are carried", arguments: StoreKind.available)
    func consistentBetweenBatches(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        // Rows 1-100 retries, 101-200 deletes: a batch of 30 leaves 100 tasks half archived.
        try await RetentionFixture.fillAndDrain(harness.store, prefix: "h", count: 100, at: now)
        let folder = try TestSupport.makeFolder("archive").path + "/archive"
        var position = ChainPosition.start
        for _ in 0..<5 {
            let plan = try #require(try await harness.store.planPrune(after: position, cutoff: now + 10, targetRows: 30))
            let batch = try #require(plan.batch)
            let next = try #require(plan.next)
            let name = ArchiveFiles.name(firstID: batch.firstID, lastID: batch.lastID)
            try ArchiveFiles.prepareFolder(folder)
            let sha = try ArchiveFiles.write(try Gzip.compress([]), folder: folder, name: name)
            let commit = try await harness.store.commitPrune(plan, checkpoint: ArchiveCheckpoint(
                sequence: next.sequence, file: name, firstID: batch.firstID, lastID: batch.lastID, lastHash: next.hash,
                sha256: sha, rows: batch.rows, tasks: batch.taskCount, archivedAt: "", runner: "t"))
            #expect(commit.committed)
            let report = try await harness.store.checkConsistency()
            #expect(report.inconsistent == 0, "after rows \(batch.lastID): \(report.problems.prefix(3))")
            #expect(try await harness.store.verifyAuditChain().problem == nil)
            position = next
        }
        #expect(try await harness.scalarInt("SELECT count(*) FROM audit_archive_carry") == 50)
        let rest = try await pruner(harness.store, folder).prune(cutoff: now + 10, dryRun: false, now: { self.now })
        #expect(rest.tasks == 50)
        #expect(try await harness.scalarInt("SELECT count(*) FROM audit_archive_carry") == 0)
        #expect(try await harness.scalarInt("SELECT count(*) FROM export_tasks") == 0)
        await harness.close()
    }

    @Test("an edited, missing or stray archive file is named", arguments: StoreKind.available)
    func tamperedArchives(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        try await RetentionFixture.fillAndDrain(harness.store, prefix: "t", count: 300, at: now)
        _ = try await harness.store.enqueue(TestSupport.items(["later"]), now: now)
        let folder = try TestSupport.makeFolder("archive").path + "/archive"
        let summary = try await pruner(harness.store, folder, batchRows: 100).prune(cutoff: now + 10, dryRun: false, now: { self.now })
        #expect(summary.files.count >= 3)
        let checkpoints = try await harness.store.archiveCheckpoints()
        let second = summary.files[1]
        let path = folder + "/" + second

        // An edit, re-compressed: the checksum names the file.
        let original = try ArchiveFiles.read(path)
        let text = String(decoding: try Gzip.decompress(original, limit: 1 << 24), as: UTF8.self)
        let edited = try Gzip.compress(Array(text.replacingOccurrences(of: "\"request_id\":\"r\"", with: "\"request_id\":\"x\"").utf8))
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: path)
        try Data(edited).write(to: URL(fileURLWithPath: path))
        var found = ArchiveVerification.verify(checkpoints, folder: folder)
        #expect(found.problem?.contains("\(second) does not match the SHA-256") == true, "\(found.problem ?? "")")

        // Missing: named with its rows.
        try FileManager.default.removeItem(atPath: path)
        found = ArchiveVerification.verify(checkpoints, folder: folder)
        #expect(found.problem?.contains("\(second) (rows") == true && found.problem?.contains("is missing") == true, "\(found.problem ?? "")")

        // Put back under another name (reordered): missing, and a stray.
        try Data(original).write(to: URL(fileURLWithPath: folder + "/" + ArchiveFiles.name(firstID: 1, lastID: 1)))
        found = ArchiveVerification.verify(checkpoints, folder: folder)
        #expect(found.problem?.contains("is missing") == true)

        // A file's content changed with its checkpoint's checksum matching it (by someone who
        // dropped the triggers): the chain names the file and line.
        try Data(original).write(to: URL(fileURLWithPath: path))
        try FileManager.default.removeItem(atPath: folder + "/" + ArchiveFiles.name(firstID: 1, lastID: 1))
        #expect(ArchiveVerification.verify(checkpoints, folder: folder).problem == nil)
        var forged = checkpoints
        forged[1].sha256 = ArchiveFiles.sha256(edited)
        try Data(edited).write(to: URL(fileURLWithPath: path))
        found = ArchiveVerification.verify(forged, folder: folder)
        #expect(found.problem?.hasPrefix("\(second), line ") == true, "\(found.problem ?? "")")
        #expect(found.problem?.contains("does not match its hash") == true)
        await harness.close()
    }

    @Test("append-only still: rows above the checkpoint cannot be deleted, checkpoints cannot be forged or changed", arguments: StoreKind.available)
    func appendOnly(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        try await RetentionFixture.fillAndDrain(harness.store, prefix: "g", count: 30, at: now)
        _ = try await harness.store.enqueue(TestSupport.items(["later"]), now: now)
        let folder = try TestSupport.makeFolder("archive").path + "/archive"
        _ = try await pruner(harness.store, folder, batchRows: 10).prune(cutoff: now + 10, dryRun: false, now: { self.now })
        _ = try await harness.store.enqueue(TestSupport.items(["bad one!"]), now: now)
        let head = try #require(try await harness.store.auditHead())
        await #expect(throws: (any Error).self) { try await harness.execute("DELETE FROM audit_log WHERE id = \(head.id)") }
        await #expect(throws: (any Error).self) { try await harness.execute("UPDATE audit_archive SET sha256 = 'x'") }
        await #expect(throws: (any Error).self) { try await harness.execute("DELETE FROM audit_archive") }
        // A checkpoint that does not end at a row with its hash is refused; so is an ID below it.
        let last = try #require(try await harness.store.archiveCheckpoints().last)
        await #expect(throws: (any Error).self) {
            try await harness.execute("""
                INSERT INTO audit_archive (seq, file, first_id, last_id, last_hash, sha256, rows, tasks, archived_at, runner)
                VALUES (\(last.sequence + 1), 'f', \(last.lastID + 1), \(head.id), 'forged', 's', 1, 0, 'now', 'me')
                """)
        }
        await #expect(throws: (any Error).self) {
            try await harness.execute("""
                INSERT INTO audit_log (id, export_task_id, outcome, runner, hash) VALUES (1, 'x', 'invalid', 'me', 'h')
                """)
        }
        #expect(try await harness.store.verifyAuditChain().problem == nil)
        await harness.close()
    }

    @Test("a task requeued between a batch's plan and its commit stays, consistent", arguments: StoreKind.available)
    func requeuedMeanwhile(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        try await RetentionFixture.fillAndDrain(harness.store, prefix: "r", count: 10, at: now)
        _ = try await harness.store.enqueue(TestSupport.items(["later"]), now: now)
        let plan = try #require(try await harness.store.planPrune(after: .start, cutoff: now + 10, targetRows: 1_000))
        let batch = try #require(plan.batch)
        #expect(batch.taskCount == 10)
        _ = try await harness.store.requeue(.exportTaskIDs(["r-3"]), now: now + 20)
        let checkpoint = ArchiveCheckpoint(
            sequence: 1, file: ArchiveFiles.name(firstID: batch.firstID, lastID: batch.lastID), firstID: batch.firstID,
            lastID: batch.lastID, lastHash: try #require(plan.entries.last?.hash), sha256: "test", rows: batch.rows,
            tasks: batch.taskCount, archivedAt: Timestamp.format(now), runner: "test:1")
        let commit = try await harness.store.commitPrune(plan, checkpoint: checkpoint)
        #expect(commit.committed && commit.tasksDeleted == 9)
        #expect(try await harness.scalarInt("SELECT count(*) FROM export_tasks WHERE export_task_id = 'r-3' AND state = 'pending'") == 1)
        #expect(try await harness.store.checkConsistency().inconsistent == 0)
        // A second commit of the same plan changes nothing: the checkpoint has moved.
        #expect(try await harness.store.commitPrune(plan, checkpoint: checkpoint).committed == false)
        await harness.close()
    }

    @Test("PostgreSQL: two hosts prune at once while a service appends; the chain and the archives stay whole",
          arguments: StoreKind.available.filter { $0 == .postgres })
    func concurrentPrunes(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        try await RetentionFixture.fillAndDrain(harness.store, prefix: "old", count: 600, at: now)
        // Host A's store also appends, as its service would: one more pool is enough.
        let other = try await harness.another(runner: "host-b:1")
        let folders = try (0..<2).map { try TestSupport.makeFolder("archive-\($0)").path + "/archive" }
        async let first = pruner(harness.store, folders[0], batchRows: 100).prune(cutoff: now + 10, dryRun: false, now: { self.now })
        async let second = pruner(other, folders[1], batchRows: 100).prune(cutoff: now + 10, dryRun: false, now: { self.now })
        async let appended: Void = RetentionFixture.fillAndDrain(harness.store, prefix: "new", count: 200, at: now + 7_200, batch: 20)
        let (a, b) = (try await first, try await second)
        try await appended
        print("two hosts pruning: \(a.files.count) and \(b.files.count) files committed")
        #expect(a.auditRows + b.auditRows == 1_200 && a.tasks + b.tasks == 600)
        // Each host holds the batches it committed: together, one archive that verifies.
        let whole = try TestSupport.makeFolder("archive-whole").path
        for folder in folders {
            for name in ArchiveFiles.list(folder) {
                try FileManager.default.copyItem(atPath: folder + "/" + name, toPath: whole + "/" + name)
            }
        }
        let archives = ArchiveVerification.verify(try await harness.store.archiveCheckpoints(), folder: whole)
        #expect(archives.problem == nil)
        #expect(archives.rows == 1_200)
        let chain = try await harness.store.verifyAuditChain(continuing: archives.walker)
        #expect(chain.problem == nil)
        #expect(chain.rows == 1_600)
        #expect(try await harness.store.checkConsistency().inconsistent == 0)
        await harness.close()
    }

    @Test("fill and prune, three times: the file stops growing", arguments: StoreKind.available)
    func sizeBounded(kind: StoreKind) async throws {
        let harness = try await kind.makeHarness()
        let folder = try TestSupport.makeFolder("archive").path + "/archive"
        var sizes: [Int] = []
        for cycle in 0..<3 {
            let at = now + Double(cycle) * 86_400
            try await RetentionFixture.fillAndDrain(harness.store, prefix: "c\(cycle)", count: 3_000, at: at)
            sizes.append(try #require(try await harness.store.databaseSize()))
            let pruned = try await pruner(harness.store, folder, batchRows: 2_000).prune(cutoff: at + 10, dryRun: false, now: { at })
            #expect(pruned.auditRows == 6_000 && pruned.tasks == 3_000)
            // PostgreSQL reuses the space of deleted rows once they are vacuumed, as
            // autovacuum does after a prune (docs/database.md, "Retention"); here at once.
            if kind == .postgres { try await harness.execute("VACUUM export_tasks, audit_log, audit_archive_carry") }
        }
        let archives = ArchiveVerification.verify(try await harness.store.archiveCheckpoints(), folder: folder)
        #expect(archives.problem == nil)
        #expect(try await harness.store.verifyAuditChain(continuing: archives.walker).problem == nil)
        #expect(try await harness.store.checkConsistency().inconsistent == 0)
        // No row lost: every audit row and task ever written is in the archives.
        let (audit, tasks) = try RetentionFixture.archived(folder)
        #expect(audit.sorted() == Array(1...18_000))
        // (9,000 task rows; SQLite gave a fully pruned queue's IDs again: docs/database.md, "Retention".)
        #expect(tasks.count == 9_000)
        #expect(try await harness.scalarInt("SELECT count(*) FROM audit_log") == 0)
        print("retention sizes after each fill (bytes): \(sizes)")
        // SQLite's promise. PostgreSQL's depends on vacuum, which cannot reclaim rows while any
        // transaction in the cluster may still see them (other tests' snapshots, running beside
        // this one): its sizes are shown, not held (docs/database.md, "Retention").
        if kind == .sqlite {
            for size in sizes.dropFirst() {
                #expect(Double(size) <= Double(sizes[0]) * 1.25, "sizes \(sizes)")
            }
        }
        await harness.close()
    }
}
