import FoundationEssentials
import PostgresNIO

// What operators ask: requeue, status, the audit log, its verification and the consistency
// check (docs/commands.md), with the same answers as the SQLite store.

extension PostgresQueueStore {
    public func requeue(_ selection: RequeueSelection, now: Date) async throws -> RequeueSummary {
        if case .state(let state) = selection, !state.isFinished {
            throw CleanerError.configuration(
                "only finished tasks can be requeued (\(TaskState.finished.map(\.rawValue).joined(separator: ", "))), not \(state.rawValue)")
        }
        let (at, runner, logger) = (Timestamp.format(now), runner, logger)
        return try await write(timeout: Self.commandTimeout) { connection in
            var summary = RequeueSummary()
            var rows: [(id: Int, exportTaskID: String, projectID: String?)] = []
            let finished = TaskState.finished.map(\.rawValue)
            switch selection {
            case .state(let state):
                let found = try await connection.query(
                    "SELECT id, export_task_id, project_id FROM export_tasks WHERE state = \(state.rawValue) ORDER BY id",
                    logger: logger)
                for try await row in found.decode((Int, String, String?).self) { rows.append(row) }
            case .exportTaskIDs(let ids):
                // An ID named twice is one task: requeued once, with one audit row.
                var seen = Set<String>()
                for id in ids.map(PostgresText.clean) where seen.insert(id).inserted {
                    let found = try await connection.query("""
                        SELECT id, export_task_id, project_id, state FROM export_tasks
                        WHERE coalesce(project_id, '') = '' AND export_task_id = \(id)
                        """, logger: logger)
                    var any = false
                    for try await (taskID, exportTaskID, projectID, state) in found.decode((Int, String, String?, String).self) {
                        any = true
                        if finished.contains(state) { rows.append((taskID, exportTaskID, projectID)) } else { summary.notFinished.append(id) }
                    }
                    if !any { summary.unknown.append(id) }
                }
            }
            guard !rows.isEmpty else { return summary }
            // Rows are read unlocked and changed only if still finished: a task a service holds
            // is never locked here (its renewals and outcomes do not wait), and one that left a
            // finished state meanwhile is not requeued. Locked in ID order: no deadlock.
            let changed = try await connection.query("""
                UPDATE export_tasks SET state = 'pending', attempts = 0, unanswered_attempts = 0,
                    next_attempt_at = \(at)::timestamptz, finished_at = NULL, lease_token = NULL, lease_expires_at = NULL
                WHERE id IN (SELECT id FROM export_tasks WHERE id = ANY(\(rows.map(\.id))) AND state = ANY(\(finished))
                    ORDER BY id FOR UPDATE)
                RETURNING id
                """, logger: logger)
            var requeued = Set<Int>()
            for try await id in changed.decode(Int.self) { requeued.insert(id) }
            rows.removeAll { !requeued.contains($0.id) }
            guard !rows.isEmpty else { return summary }
            try await Self.notify(connection, logger: logger)
            var audit = PostgresAuditRows(runner: runner)
            for row in rows {
                audit.append(taskID: row.id, exportTaskID: row.exportTaskID, projectID: row.projectID,
                             record: AuditRecord(outcome: .requeued, at: now))
            }
            try await audit.write(connection, logger: logger)
            summary.requeued = rows.count
            return summary
        }
    }

    public func status(now: Date) async throws -> QueueStatus {
        let (at, logger) = (Timestamp.format(now), logger)
        return try await read { connection in
            // One snapshot for every part of the answer.
            try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            do {
                let status = try await Self.status(connection, now: now, at: at, logger: logger)
                try await connection.query("COMMIT", logger: logger)
                return status
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    private static func status(_ connection: PostgresConnection, now: Date, at: String, logger: Logger) async throws -> QueueStatus {
        let counts = try await counts(connection, logger: logger)
        var oldest: String?, next: String?
        var binds = PostgresBindings()
        binds.append(at)
        let times = try await connection.query(PostgresQuery(unsafeSQL: """
            SELECT \(PostgresText.timestamp("min(enqueued_at) FILTER (WHERE state = 'pending')")),
                \(PostgresText.timestamp("min(next_attempt_at) FILTER (WHERE state = 'pending' AND next_attempt_at > $1::timestamptz)"))
            FROM export_tasks
            """, binds: binds), logger: logger)
        for try await (first, second) in times.decode((String?, String?).self) { (oldest, next) = (first, second) }
        let lastColumns = "export_task_id, outcome, \(PostgresText.timestamp("at")), http_status, error_code, error_message"
        let last = try await lastOutcome(connection, "SELECT \(lastColumns) FROM audit_log ORDER BY id DESC LIMIT 1", logger: logger)
        let lastError = try await lastOutcome(connection, """
            SELECT \(lastColumns) FROM audit_log WHERE error_code IS NOT NULL OR error_message IS NOT NULL
            ORDER BY id DESC LIMIT 1
            """, logger: logger)
        var heldBy: [QueueStatus.Holder] = []
        let holders = try await connection.query("""
            SELECT runner, \(unescaped: PostgresText.timestamp("started_at")), \(unescaped: PostgresText.timestamp("heartbeat_at")), status
            FROM service_heartbeat ORDER BY runner
            """, logger: logger)
        for try await (runner, started, beat, text) in holders.decode((String, String, String, String?).self) {
            let age = Timestamp.parse(beat).map { now.timeIntervalSince($0) } ?? .infinity
            guard age < QueueLimits.heartbeatFreshness else { continue }
            heldBy.append(.init(runner: runner, startedAt: started, heartbeatAt: beat, secondsSinceHeartbeat: max(0, age), status: text))
        }
        var status = QueueStatus(
            counts: Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) }),
            oldestPendingEnqueuedAt: oldest,
            oldestPendingAgeSeconds: oldest.flatMap(Timestamp.parse).map { max(0, now.timeIntervalSince($0)) },
            nextRetryAt: next, lastOutcome: last, lastError: lastError, heldBy: heldBy)
        status.auditHead = try await auditHead(connection, logger: logger)
        return status
    }

    private static func lastOutcome(_ connection: PostgresConnection, _ sql: String, logger: Logger) async throws -> QueueStatus.LastOutcome? {
        var outcome: QueueStatus.LastOutcome?
        let rows = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        for try await (id, name, at, status, code, message) in rows.decode((String, String, String, Int?, String?, String?).self) {
            outcome = .init(exportTaskID: id, outcome: name, at: at, httpStatus: status, errorCode: code, errorMessage: message)
        }
        return outcome
    }

    public func auditHead() async throws -> QueueStatus.AuditHead? {
        let logger = logger
        return try await read { connection in try await Self.auditHead(connection, logger: logger) }
    }

    private static func auditHead(_ connection: PostgresConnection, logger: Logger) async throws -> QueueStatus.AuditHead? {
        var head: QueueStatus.AuditHead?
        let rows = try await connection.query(PostgresAuditRows.head, logger: logger)
        for try await (id, hash) in rows.decode((Int, String?).self) { head = .init(id: id, hash: hash) }
        return head
    }
}
