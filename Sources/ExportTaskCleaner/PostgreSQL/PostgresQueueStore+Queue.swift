import FoundationEssentials
import PostgresNIO

// What the service's housekeeping reads and writes besides leases, and what feeders queue.

extension PostgresQueueStore {
    public func counts() async throws -> [TaskState: Int] {
        let logger = logger
        return try await read { connection in try await Self.counts(connection, logger: logger) }
    }

    static func counts(_ connection: PostgresConnection, logger: Logger) async throws -> [TaskState: Int] {
        var counts = Dictionary(uniqueKeysWithValues: TaskState.allCases.map { ($0, 0) })
        let rows = try await connection.query("SELECT state, count(*) FROM export_tasks GROUP BY state", logger: logger)
        for try await (state, count) in rows.decode((String, Int).self) {
            if let state = TaskState(rawValue: state) { counts[state] = count }
        }
        return counts
    }

    public func nextDue() async throws -> Date? {
        try await time("SELECT \(unescaped: PostgresText.timestamp("min(next_attempt_at)")) FROM export_tasks WHERE state = 'pending'")
    }

    public func oldestPendingEnqueuedAt() async throws -> Date? {
        try await time("SELECT \(unescaped: PostgresText.timestamp("min(enqueued_at)")) FROM export_tasks WHERE state = 'pending'")
    }

    private func time(_ query: PostgresQuery) async throws -> Date? {
        let logger = logger
        return try await read { connection in
            var text: String?
            for try await value in try await connection.query(query, logger: logger).decode(String?.self) { text = value }
            return text.flatMap(Timestamp.parse)
        }
    }

    public func hasUnfinishedTasks() async throws -> Bool {
        let logger = logger
        return try await read { connection in
            var found = false
            let rows = try await connection.query(
                "SELECT EXISTS (SELECT 1 FROM export_tasks WHERE state IN ('pending', 'in_progress'))", logger: logger)
            for try await value in rows.decode(Bool.self) { found = value }
            return found
        }
    }

    public func heartbeat(startedAt: Date, status: String, now: Date) async throws {
        let (runner, started, at, text, logger) = (runner, Timestamp.format(startedAt), Timestamp.format(now),
                                                   PostgresText.clean(status), logger)
        try await write { connection in
            try await connection.query("""
                INSERT INTO service_heartbeat (runner, started_at, heartbeat_at, status)
                VALUES (\(runner), \(started)::timestamptz, \(at)::timestamptz, \(text))
                ON CONFLICT (runner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, status = excluded.status
                """, logger: logger)
        }
    }

    public func removeHeartbeat() async throws {
        let (runner, logger) = (runner, logger)
        try await write { connection in
            try await connection.query("DELETE FROM service_heartbeat WHERE runner = \(runner)", logger: logger)
        }
    }

    /// Valid IDs inserted per statement.
    static let enqueueChunk = 1_000

    private struct EncodedItem: Encodable {
        var export_task_id: String
        var project_id: String?
        var instance_id: String?
    }

    private struct NoteKey: Hashable {
        var exportTaskID: String
        var projectID: String?
    }

    public func enqueue(_ list: EnqueueList, now: Date) async throws -> EnqueueSummary {
        let (at, runner, logger) = (Timestamp.format(now), runner, logger)
        return try await write(timeout: Self.commandTimeout) { connection in
            var summary = EnqueueSummary()
            var chunk: [EncodedItem] = []
            var invalid: [EnqueueItem] = []
            // The `queued` audit rows of the items that ask for one (a sweep's), by task.
            var notes: [NoteKey: String] = [:]
            var audit = PostgresAuditRows(runner: runner)
            func insertChunk() async throws {
                guard !chunk.isEmpty else { return }
                let rows = try await connection.query("""
                    INSERT INTO export_tasks (export_task_id, project_id, instance_id, enqueued_at, next_attempt_at)
                    SELECT r.export_task_id, r.project_id, r.instance_id, \(at)::timestamptz, \(at)::timestamptz
                    FROM ROWS FROM (jsonb_to_recordset(\(try PostgresText.json(chunk))::jsonb)
                        AS (export_task_id text, project_id text, instance_id text)) WITH ORDINALITY AS r
                    ORDER BY r.ordinality
                    ON CONFLICT ((coalesce(project_id, '')), export_task_id) DO NOTHING
                    RETURNING id, export_task_id, project_id
                    """, logger: logger)
                var inserted = 0
                for try await (id, exportTaskID, projectID) in rows.decode((Int, String, String?).self) {
                    inserted += 1
                    if let note = notes[NoteKey(exportTaskID: exportTaskID, projectID: projectID)] {
                        audit.append(taskID: id, exportTaskID: exportTaskID, projectID: projectID,
                                     record: AuditRecord(outcome: .queued, at: now, errorMessage: note))
                    }
                }
                summary.queued += inserted
                summary.alreadyQueued += chunk.count - inserted
                chunk.removeAll(keepingCapacity: true)
                notes.removeAll(keepingCapacity: true)
            }
            // The list is read as it is inserted, a chunk at a time (``EnqueueList``).
            for items in list.batches(of: Self.enqueueChunk) {
                for item in items {
                    guard ExportTaskID.isValid(item.exportTaskID) else { invalid.append(item); continue }
                    let project = item.projectID.map(PostgresText.clean)
                    chunk.append(EncodedItem(export_task_id: item.exportTaskID, project_id: project,
                                             instance_id: item.instanceID.map(PostgresText.clean)))
                    if let note = item.auditNote { notes[NoteKey(exportTaskID: item.exportTaskID, projectID: project)] = PostgresText.clean(note) }
                }
                try await insertChunk()
            }
            // An invalid ID is kept as a record of what was fed, bounded, with an audit row.
            for item in invalid {
                let recorded = PostgresText.clean(ExportTaskID.recordable(item.exportTaskID))
                let project = item.projectID.map(PostgresText.clean)
                summary.invalid.append(.init(exportTaskID: recorded, line: item.line,
                                             problem: ExportTaskID.problem(with: item.exportTaskID) ?? "invalid"))
                let rows = try await connection.query("""
                    INSERT INTO export_tasks (export_task_id, project_id, instance_id, state, enqueued_at, next_attempt_at, finished_at)
                    VALUES (\(recorded), \(project), \(item.instanceID.map(PostgresText.clean)), 'invalid',
                        \(at)::timestamptz, \(at)::timestamptz, \(at)::timestamptz)
                    ON CONFLICT ((coalesce(project_id, '')), export_task_id) DO NOTHING
                    RETURNING id
                    """, logger: logger)
                for try await id in rows.decode(Int.self) {
                    audit.append(taskID: id, exportTaskID: recorded, projectID: project,
                                 record: AuditRecord(outcome: .invalid, at: now))
                }
            }
            try await audit.write(connection, logger: logger)
            return summary
        }
    }
}
