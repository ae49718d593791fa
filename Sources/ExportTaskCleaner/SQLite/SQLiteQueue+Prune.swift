import CSQLite
import FoundationEssentials

// Retention on SQLite (docs/database.md, "Retention"): the checkpoints, a batch planned by
// ``PruneCut`` in a read transaction, and its commit in a short write transaction.

extension SQLiteQueue {
    static let lastCheckpointSQL = "SELECT seq, file, first_id, last_id, last_hash, sha256, rows, tasks, archived_at, runner FROM audit_archive"

    static func checkpoint(from statement: SQLiteStatement) -> ArchiveCheckpoint {
        ArchiveCheckpoint(
            sequence: statement.int(0), file: statement.string(1), firstID: statement.int(2), lastID: statement.int(3),
            lastHash: statement.string(4), sha256: statement.string(5), rows: statement.int(6), tasks: statement.int(7),
            archivedAt: statement.string(8), runner: statement.string(9))
    }

    /// The last checkpoint, or nil before any prune.
    static func lastCheckpoint(_ db: SQLiteConnection) throws -> ArchiveCheckpoint? {
        let statement = try db.prepare(lastCheckpointSQL + " ORDER BY seq DESC LIMIT 1")
        defer { statement.reset() }
        return try statement.step() ? checkpoint(from: statement) : nil
    }

    /// The chain's head: the last audit row, else the last checkpoint's (every row archived).
    static func chainHead(_ db: SQLiteConnection) throws -> (id: Int, hash: String?)? {
        let head = try db.prepare("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        defer { head.reset() }
        if try head.step() { return (head.int(0), head.optionalString(1)) }
        return try lastCheckpoint(db).map { ($0.lastID, $0.lastHash) }
    }

    package func archiveCheckpoints() throws -> [ArchiveCheckpoint] {
        try withConnection { db in
            try db.readTransaction {
                let statement = try db.prepare(Self.lastCheckpointSQL + " ORDER BY seq")
                defer { statement.reset() }
                var result: [ArchiveCheckpoint] = []
                while try statement.step() { result.append(Self.checkpoint(from: statement)) }
                return result
            }
        }
    }

    package func lastArchiveCheckpoint() throws -> ArchiveCheckpoint? {
        try withConnection { db in try Self.lastCheckpoint(db) }
    }

    /// The next batch after `position`: audit rows in ID order up to a ``PruneCut``, each
    /// checked against the chain as the archive will hold it, and the tasks that leave with
    /// them. One read transaction; nil when nothing can move.
    package func planPrune(after position: ChainPosition, cutoff: Date, targetRows: Int) throws -> PrunePlan? {
        let cutoffText = Timestamp.format(cutoff)
        let finished = TaskState.finished.map { "'\($0.rawValue)'" }.joined(separator: ", ")
        return try withConnection { db in
            try db.readTransaction {
                var walk = PruneWalk(after: position, targetRows: targetRows)
                let rows = try db.prepare("""
                    SELECT id, task_id, export_task_id, project_id, attempt, at, duration_ms, http_status,
                        error_code, error_message, request_id, outcome, delivery, runner, lease_lost IS NOT NULL, hash
                    FROM audit_log WHERE id > ?1 ORDER BY id LIMIT ?2
                    """)
                defer { rows.reset() }
                let taskRow = try db.prepare("""
                    SELECT export_task_id, state IN (\(finished)) AND typeof(finished_at) = 'text' AND finished_at < ?2
                    FROM export_tasks WHERE id = ?1
                    """)
                let lastRow = try db.prepare("SELECT max(id) FROM audit_log WHERE export_task_id = ?1 AND task_id = ?2")
                let cycleStart = try db.prepare(
                    "SELECT max(id) FROM audit_log WHERE export_task_id = ?1 AND task_id = ?2 AND outcome = 'requeued'")
                rows.bind(position.lastID, at: 1)
                rows.bind(walk.targetRows, at: 2)
                while try rows.step() {
                    let entry = AuditEntry(
                        id: rows.int(0), taskID: rows.optionalInt(1), exportTaskID: rows.string(2),
                        projectID: rows.optionalString(3), attempt: rows.optionalInt(4), at: rows.string(5),
                        durationMilliseconds: rows.optionalInt(6), httpStatus: rows.optionalInt(7),
                        errorCode: rows.optionalString(8), errorMessage: rows.optionalString(9),
                        requestID: rows.optionalString(10), outcome: rows.string(11),
                        delivery: rows.optionalString(12), runner: rows.string(13),
                        leaseLost: rows.int(14) != 0, hash: rows.optionalString(15))
                    let more = try walk.feed(entry) { entry, taskID in
                        taskRow.bind(taskID, at: 1)
                        taskRow.bind(cutoffText, at: 2)
                        guard try taskRow.step(), taskRow.string(0) == entry.exportTaskID else {
                            taskRow.reset()
                            return .orphan
                        }
                        let leaves = taskRow.int(1) != 0
                        taskRow.reset()
                        let lookup = leaves ? lastRow : cycleStart
                        lookup.bind(entry.exportTaskID, at: 1)
                        lookup.bind(taskID, at: 2)
                        let found = try lookup.step() ? lookup.optionalInt(0) : nil
                        lookup.reset()
                        return leaves ? .leaving(lastRow: found ?? entry.id) : .stays(cycleStart: found)
                    }
                    if !more { break }
                }
                guard let finished = walk.finish() else { return nil }
                let tasks = try finished.leavingWhole.compactMap { try Self.archivedTask(db, id: $0) }
                return PrunePlan(after: position, entries: finished.entries, tasks: tasks, carries: finished.carries,
                                 heldAt: finished.heldAt)
            }
        }
    }

    private static func archivedTask(_ db: SQLiteConnection, id: Int) throws -> ArchivedTask? {
        let statement = try db.prepare("""
            SELECT id, export_task_id, project_id, instance_id, state, attempts, unanswered_attempts, enqueued_at,
                next_attempt_at, finished_at, last_http_status, last_error_code, last_error_message, last_request_id
            FROM export_tasks WHERE id = ?1
            """)
        defer { statement.reset() }
        statement.bind(id, at: 1)
        guard try statement.step() else { return nil }
        return ArchivedTask(
            id: statement.int(0), exportTaskID: statement.string(1), projectID: statement.optionalString(2),
            instanceID: statement.optionalString(3), state: statement.string(4), attempts: statement.optionalInt(5),
            unansweredAttempts: statement.optionalInt(6), enqueuedAt: statement.optionalString(7),
            nextAttemptAt: statement.optionalString(8), finishedAt: statement.optionalString(9),
            lastHTTPStatus: statement.optionalInt(10), lastErrorCode: statement.optionalString(11),
            lastErrorMessage: statement.optionalString(12), lastRequestID: statement.optionalString(13))
    }

    /// Records `checkpoint` (its file already written and synced) and deletes what it holds,
    /// in one write transaction: the audit rows, then each task that has no audit row left and
    /// is still as planned. Does nothing when another prune moved the checkpoint first.
    package func commitPrune(_ plan: PrunePlan, checkpoint: ArchiveCheckpoint) throws -> PruneCommit {
        try withConnection { db in
            let clock = ContinuousClock()
            let started = clock.now
            let deleted: Int? = try db.writeTransaction {
                guard ChainPosition(try Self.lastCheckpoint(db)) == plan.after else { return nil }
                let insert = try db.prepare("""
                    INSERT INTO audit_archive (seq, file, first_id, last_id, last_hash, sha256, rows, tasks, archived_at, runner)
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                    """)
                insert.bind(checkpoint.sequence, at: 1)
                insert.bind(checkpoint.file, at: 2)
                insert.bind(checkpoint.firstID, at: 3)
                insert.bind(checkpoint.lastID, at: 4)
                insert.bind(checkpoint.lastHash, at: 5)
                insert.bind(checkpoint.sha256, at: 6)
                insert.bind(checkpoint.rows, at: 7)
                insert.bind(checkpoint.tasks, at: 8)
                insert.bind(checkpoint.archivedAt, at: 9)
                insert.bind(checkpoint.runner, at: 10)
                try insert.run()
                let rows = try db.prepare("DELETE FROM audit_log WHERE id BETWEEN ?1 AND ?2")
                rows.bind(checkpoint.firstID, at: 1)
                rows.bind(checkpoint.lastID, at: 2)
                try rows.run()
                let task = try db.prepare("""
                    DELETE FROM export_tasks WHERE id = ?1 AND export_task_id = ?2 AND state = ?3 AND finished_at IS ?4
                      AND NOT EXISTS (SELECT 1 FROM audit_log WHERE export_task_id = ?2 AND task_id = ?1)
                    """)
                try Self.carry(db, plan.carries)
                let forget = try db.prepare("DELETE FROM audit_archive_carry WHERE task_id = ?1")
                var count = 0
                for archived in plan.tasks {
                    task.bind(archived.id, at: 1)
                    task.bind(archived.exportTaskID, at: 2)
                    task.bind(archived.state, at: 3)
                    task.bind(archived.finishedAt, at: 4)
                    try task.run()
                    guard db.changes > 0 else { continue }
                    count += 1
                    forget.bind(archived.id, at: 1)
                    try forget.run()
                }
                return count
            }
            return PruneCommit(committed: deleted != nil, tasksDeleted: deleted ?? 0, lockHold: clock.now - started)
        }
    }

    /// Records what each leaving task's archived rows counted, after what earlier batches
    /// recorded for it (``PruneCarry``).
    private static func carry(_ db: SQLiteConnection, _ carries: [PruneCarry]) throws {
        guard !carries.isEmpty else { return }
        let read = try db.prepare("SELECT finals, final_outcome, attempts, restarted FROM audit_archive_carry WHERE task_id = ?1")
        let write = try db.prepare("""
            INSERT OR REPLACE INTO audit_archive_carry (task_id, export_task_id, finals, final_outcome, attempts, restarted)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6)
            """)
        for carry in carries {
            read.bind(carry.taskID, at: 1)
            var earlier: PruneCarry?
            if try read.step() {
                var found = PruneCarry(taskID: carry.taskID, exportTaskID: carry.exportTaskID)
                found.finals = min(read.optionalInt(0) ?? 0, QueueLimits.maximumAttempts)
                found.finalOutcome = read.optionalString(1)
                found.attempts = PruneCarry.attempts(read.optionalString(2))
                found.restarted = read.optionalInt(3) == 1
                earlier = found
            }
            read.reset()
            let merged = carry.after(earlier)
            write.bind(merged.taskID, at: 1)
            write.bind(merged.exportTaskID, at: 2)
            write.bind(merged.finals, at: 3)
            write.bind(merged.finalOutcome, at: 4)
            write.bind(merged.attemptsText, at: 5)
            write.bind(merged.restarted ? 1 : 0, at: 6)
            try write.run()
        }
    }

    /// The database file's size in bytes (pages in use and free), for the metrics.
    package func databaseSize() throws -> Int {
        try withConnection { db in
            let pages = try db.scalarInt("PRAGMA page_count") ?? 0
            let size = try db.scalarInt("PRAGMA page_size") ?? 0
            let product = pages.multipliedReportingOverflow(by: size)
            return product.overflow ? Int.max : product.partialValue
        }
    }
}
