import FoundationEssentials
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Moves finished tasks and their audit history out of the database into the archive folder
/// (docs/database.md, "Retention"), batch by batch, on any store: plan a batch (no write
/// lock), write its archive file and sync it and its folder, then commit the checkpoint and the
/// deletes in one short transaction. A crash at any moment leaves every row in the database,
/// in an archive, or in both.
public struct Pruner: Sendable {
    /// Audit rows per batch at most; ``BatchSizer`` halves it while commits hold the write lock
    /// longer than 100 ms (docs/database.md, "Retention", for the figures measured).
    public static let defaultBatchRows = 5_000

    public let store: any QueueOperations
    public let folder: String
    public let runner: String
    public var batchRows: Int
    private let logger: Logger

    public init(store: any QueueOperations, folder: String, runner: String = Runner.current,
                batchRows: Int = Pruner.defaultBatchRows, logger: Logger) {
        self.store = store
        self.folder = folder
        self.runner = runner
        self.batchRows = max(1, batchRows)
        self.logger = logger
    }

    public struct Busy: Error, CustomStringConvertible {
        public var description: String
    }

    /// Moves tasks finished before `cutoff`, with their history. `dryRun`: says what it would
    /// move and changes nothing, not even the folder. `now` stamps the checkpoints. Throws
    /// ``Busy`` when another prune holds the folder's lock.
    public func prune(cutoff: Date, dryRun: Bool, now: @Sendable () -> Date) async throws -> PruneSummary {
        var summary = PruneSummary()
        var position = ChainPosition(try await store.lastArchiveCheckpoint())
        if dryRun {
            while let plan = try await store.planPrune(after: position, cutoff: cutoff, targetRows: batchRows) {
                summary.heldAt = plan.heldAt
                guard let batch = plan.batch, let next = plan.next else { break }
                summary.add(batch, file: nil, lockHold: .zero)
                position = next
                if Task.isCancelled { break }
            }
            return summary
        }
        // Nothing to move: no folder is made, no lock taken (and a store without retention
        // says so here).
        guard let first = try await store.planPrune(after: position, cutoff: cutoff, targetRows: 1), first.batch != nil else {
            return summary
        }
        do { try ArchiveFiles.prepareFolder(folder) } catch { throw CleanerError.runtime(error.description) }
        let lock = try lockFolder()
        defer { close(lock) }
        // Read again under the lock: no other prune is now between writing a file and
        // committing it, so a file past the checkpoint is an interrupted prune's.
        position = ChainPosition(try await store.lastArchiveCheckpoint())
        summary.leftoversRemoved = removeLeftovers(after: position.lastID)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var sizer = BatchSizer(largest: batchRows)
        while !Task.isCancelled,
              let plan = try await store.planPrune(after: position, cutoff: cutoff, targetRows: sizer.rows) {
            summary.heldAt = plan.heldAt
            guard let batch = plan.batch, let next = plan.next else { break }
            var lines: [UInt8] = []
            for entry in plan.entries { lines += try encoder.encode(entry); lines.append(0x0A) }
            for task in plan.tasks { lines += try encoder.encode(["task": task]); lines.append(0x0A) }
            let name = ArchiveFiles.name(firstID: batch.firstID, lastID: batch.lastID)
            let sha256: String
            do {
                sha256 = try ArchiveFiles.write(try Gzip.compress(lines), folder: folder, name: name)
            } catch let error as ArchiveFiles.Failure {
                throw CleanerError.runtime("prune: \(error.description); nothing of this batch left the database")
            }
            let checkpoint = ArchiveCheckpoint(
                sequence: next.sequence, file: name, firstID: batch.firstID, lastID: batch.lastID, lastHash: next.hash,
                sha256: sha256, rows: batch.rows, tasks: batch.taskCount, archivedAt: Timestamp.format(now()), runner: runner)
            // A commit that fails leaves the file: should the failure have come after the
            // commit landed (an acknowledgement lost), the file is the archive of record; if
            // not, it lies past the checkpoint and the next prune removes it.
            let commit = try await store.commitPrune(plan, checkpoint: checkpoint)
            guard commit.committed else {
                // Surely not committed (another prune moved the checkpoint): its rows are all
                // still in the database.
                ArchiveFiles.remove(folder: folder, name: name)
                break
            }
            var moved = batch
            moved.taskCount = commit.tasksDeleted
            summary.add(moved, file: name, lockHold: commit.lockHold)
            sizer.committed(holding: commit.lockHold)
            logger.debug("prune batch committed", metadata: [
                "file": "\(name)", "audit_rows": "\(batch.rows)", "tasks": "\(commit.tasksDeleted)",
                "lock_hold_ms": "\(commit.lockHold.milliseconds)",
            ])
            position = next
        }
        return summary
    }

    /// Takes `.prune.lock` in the folder: one prune at a time writes to it.
    private func lockFolder() throws -> Int32 {
        let path = folder + "/.prune.lock"
        // Read only is enough for flock, so a lock file a hand-run prune made under a tighter
        // umask does not lock the service out; made 0660 all the same.
        let fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o660)
        guard fd >= 0 else { throw CleanerError.runtime("prune: cannot open \(path): \(String(cString: strerror(errno)))") }
        _ = fchmod(fd, 0o660)
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw Busy(description: "another prune is running on \(folder)")
        }
        return fd
    }

    /// Files no checkpoint records, past the checkpoint: usually an interrupted prune's, whose
    /// rows are all still in the database, but possibly the only copy of rows (the database
    /// restored from a backup older than the archive, or the folder another queue's). Set aside
    /// under a hidden name rather than deleted (docs/operations.md, "Retention"); an unfinished
    /// temporary file is removed. Safe under the folder's lock: no other prune is between
    /// writing a file and committing it.
    private func removeLeftovers(after lastID: Int) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        var removed: [String] = []
        for name in names.sorted() {
            if name.hasPrefix(".tmp-" + ArchiveFiles.prefix) {
                ArchiveFiles.remove(folder: folder, name: name)
                removed.append(name)
            } else if ArchiveFiles.range(ofName: name).map({ $0.first > lastID }) == true {
                removed.append(ArchiveFiles.setAside(folder: folder, name: name).map { "\(name) (kept as \($0))" } ?? name)
            }
        }
        return removed
    }
}
