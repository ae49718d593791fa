import CSQLite
import FoundationEssentials
import Logging

// Feeding: `enqueue`, in one transaction, with multi-row inserts.

extension SQLiteQueue {

    /// Valid IDs go in by `enqueueChunk` rows per statement: one `sqlite3_step` per row costs
    /// as much again as the insert itself (cursors opened, seeks from the root, allocations).
    static let enqueueChunk = 250

    /// `INSERT OR IGNORE … VALUES (?4, ?1, ?2, ?3, ?3), (?5, ?1, ?2, ?3, ?3), …`: `enqueueChunk`
    /// IDs (from `?4`) sharing one project (`?1`), instance (`?2`) and time (`?3`). SQLite
    /// inserts multi-row VALUES in the order written, so row IDs follow the input.
    private static let chunkInsertSQL = """
        INSERT OR IGNORE INTO export_tasks (export_task_id, project_id, instance_id, enqueued_at, next_attempt_at)
        VALUES \((0..<enqueueChunk).map { "(?\($0 + 4), ?1, ?2, ?3, ?3)" }.joined(separator: ", "))
        """

    /// Page cache for a large enqueue (KiB): the unique index takes IDs in input order, that is
    /// at random places, and a small cache spills and re-reads its pages on every insert.
    private static func enqueueCacheKiB(items: Int) -> Int {
        min(128 * 1024, items / 1024 * 64)
    }

    /// Queues a list in one transaction, inserting as it is read (``EnqueueList``).
    package func enqueue(_ list: EnqueueList, now: Date) throws -> EnqueueSummary {
        let expectedCount = list.expectedCount
        let at = Timestamp.format(now)
        return try withConnection { db in
            let cacheKiB = Self.enqueueCacheKiB(items: expectedCount)
            var savedCacheSize: Int?
            if cacheKiB > 2048 {
                savedCacheSize = try db.scalarInt("PRAGMA cache_size")
                try db.execute("PRAGMA cache_size = -\(cacheKiB)")
            }
            defer {
                if let savedCacheSize { try? db.execute("PRAGMA cache_size = \(savedCacheSize)") }
            }
            return try db.writeTransaction {
                var writer = try EnqueueWriter(db: db, at: at, now: now, store: self)
                try list.forEach { try writer.add($0) }
                try writer.flush()
                return writer.summary
            }
        }
    }

    /// Inserts in input order: runs of valid IDs for one project and instance by the chunk, the
    /// rest (a shorter run's IDs, invalid IDs) row by row.
    private struct EnqueueWriter {
        let db: SQLiteConnection
        let at: String
        let now: Date
        let store: SQLiteQueue
        let insert: SQLiteStatement
        let insertInvalid: SQLiteStatement
        var run: [EnqueueItem] = []
        var summary = EnqueueSummary()

        init(db: SQLiteConnection, at: String, now: Date, store: SQLiteQueue) throws {
            self.db = db
            self.at = at
            self.now = now
            self.store = store
            insert = try db.prepare("""
                INSERT OR IGNORE INTO export_tasks (export_task_id, project_id, instance_id, enqueued_at, next_attempt_at)
                VALUES (?1, ?2, ?3, ?4, ?4)
                """)
            insertInvalid = try db.prepare("""
                INSERT OR IGNORE INTO export_tasks
                    (export_task_id, project_id, instance_id, state, enqueued_at, next_attempt_at, finished_at)
                VALUES (?1, ?2, ?3, 'invalid', ?4, ?4, ?4)
                """)
            run.reserveCapacity(SQLiteQueue.enqueueChunk)
        }

        mutating func add(_ item: EnqueueItem) throws {
            guard ExportTaskID.isValid(item.exportTaskID) else {
                try flush()
                try insertOne(item, valid: false)
                return
            }
            if item.auditNote != nil {
                // With its audit row: one at a time.
                try flush()
                try insertOne(item, valid: true)
                return
            }
            if let first = run.first, first.projectID != item.projectID || first.instanceID != item.instanceID {
                try flush()
            }
            run.append(item)
            if run.count == SQLiteQueue.enqueueChunk {
                let statement = try db.prepare(SQLiteQueue.chunkInsertSQL)
                statement.bind(item.projectID, at: 1)
                statement.bind(item.instanceID, at: 2)
                statement.bind(at, at: 3)
                for (offset, queued) in run.enumerated() {
                    statement.bind(queued.exportTaskID, at: Int32(offset + 4))
                }
                try statement.run()
                let inserted = db.changes
                summary.queued += inserted
                summary.alreadyQueued += run.count - inserted
                run.removeAll(keepingCapacity: true)
            }
        }

        /// Writes a run shorter than a chunk, row by row.
        mutating func flush() throws {
            for item in run {
                try insertOne(item, valid: true)
            }
            run.removeAll(keepingCapacity: true)
        }

        private mutating func insertOne(_ item: EnqueueItem, valid: Bool) throws {
            let statement = valid ? insert : insertInvalid
            // An invalid ID is kept as a record of what was fed, but bounded: the audit log
            // is append-only, so a huge one would stay for ever.
            let exportTaskID = valid ? item.exportTaskID : ExportTaskID.recordable(item.exportTaskID)
            statement.bind(exportTaskID, at: 1)
            statement.bind(item.projectID, at: 2)
            statement.bind(item.instanceID, at: 3)
            statement.bind(at, at: 4)
            try statement.run()
            let inserted = db.changes == 1
            if valid {
                if inserted { summary.queued += 1 } else { summary.alreadyQueued += 1 }
                if inserted, let note = item.auditNote {
                    try store.insertAudit(db, taskID: db.lastInsertRowID, exportTaskID: exportTaskID, projectID: item.projectID,
                                          record: AuditRecord(outcome: .queued, at: now, errorMessage: note))
                }
                return
            }
            summary.invalid.append(.init(
                exportTaskID: exportTaskID, line: item.line,
                problem: ExportTaskID.problem(with: item.exportTaskID) ?? "invalid"))
            if inserted {
                try store.insertAudit(db, taskID: db.lastInsertRowID, exportTaskID: exportTaskID,
                                      projectID: item.projectID, record: AuditRecord(outcome: .invalid, at: now))
            }
        }
    }
}
