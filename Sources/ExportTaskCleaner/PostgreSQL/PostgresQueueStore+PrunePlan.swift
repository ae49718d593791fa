import FoundationEssentials
import Logging
import PostgresNIO

// Planning a batch of pruning on PostgreSQL (docs/database.md, "Retention"): SQLite's
// `planPrune`, with each task the batch names looked up in one query rather than one a row.

extension PostgresQueueStore {
    /// What the batch's rows say of one task, as the database holds it.
    private struct TaskFacts {
        var exportTaskID: String
        var leaves: Bool
        var lastRow: Int?
        var cycleStart: Int?
    }

    /// The next batch after `position`: audit rows in ID order up to a ``PruneCut``, each
    /// checked against the chain as the archive will hold it, and the tasks that leave with
    /// them. One snapshot; nil when nothing can move.
    public func planPrune(after position: ChainPosition, cutoff: Date, targetRows: Int) async throws -> PrunePlan? {
        let cutoffText = Timestamp.format(cutoff)
        let finished = TaskState.finished.map { "'\($0.rawValue)'" }.joined(separator: ", ")
        return try await snapshot { connection, logger in
            // Another host's prune moved the checkpoint past `position` (its rows are gone):
            // nothing to move from here, rather than a chain that seems broken.
            if let last = try await Self.lastCheckpoint(connection, logger: logger), last.lastID > position.lastID {
                return nil
            }
            var walk = PruneWalk(after: position, targetRows: targetRows)
            var fetched: [AuditEntry] = []
            let rows = try await connection.query("""
                SELECT \(unescaped: Self.auditColumns) FROM audit_log WHERE id > \(position.lastID) ORDER BY id LIMIT \(walk.targetRows)
                """, logger: logger)
            for try await row in rows.decode(AuditRow.self) {
                fetched.append(AuditEntry(
                    id: row.0, taskID: row.1, exportTaskID: row.2, projectID: row.3, attempt: row.4, at: row.5,
                    durationMilliseconds: row.6, httpStatus: row.7, errorCode: row.8, errorMessage: row.9,
                    requestID: row.10, outcome: row.11, delivery: row.12, runner: row.13, leaseLost: row.14 != nil,
                    hash: row.15))
            }
            var facts: [Int: TaskFacts] = [:]
            let taskIDs = Array(Set(fetched.compactMap(\.taskID))).sorted()
            if !taskIDs.isEmpty {
                // A time outside 0001–9999 does not leave: it would not read back as written.
                let found = try await connection.query(PostgresQuery(unsafeSQL: """
                    SELECT t.id, t.export_task_id,
                        coalesce(t.state IN (\(finished)) AND t.finished_at >= '0001-01-01T00:00:00Z'
                            AND t.finished_at < $2::timestamptz, false),
                        (SELECT max(a.id) FROM audit_log a WHERE a.export_task_id = t.export_task_id AND a.task_id = t.id),
                        (SELECT max(a.id) FROM audit_log a WHERE a.export_task_id = t.export_task_id AND a.task_id = t.id
                            AND a.outcome = 'requeued')
                    FROM export_tasks t WHERE t.id = ANY($1)
                    """, binds: Self.binds(taskIDs, cutoffText)), logger: logger)
                for try await (id, exportTaskID, leaves, last, start) in found.decode((Int, String, Bool, Int?, Int?).self) {
                    facts[id] = TaskFacts(exportTaskID: exportTaskID, leaves: leaves, lastRow: last, cycleStart: start)
                }
            }
            for entry in fetched {
                let more = try walk.feed(entry) { entry, taskID in
                    guard let task = facts[taskID], task.exportTaskID == entry.exportTaskID else { return .orphan }
                    return task.leaves ? .leaving(lastRow: task.lastRow ?? entry.id) : .stays(cycleStart: task.cycleStart)
                }
                if !more { break }
            }
            guard let finished = walk.finish() else { return nil }
            let archived = try await Self.archivedTasks(connection, ids: finished.leavingWhole, logger: logger)
            return PrunePlan(after: position, entries: finished.entries, tasks: finished.leavingWhole.compactMap { archived[$0] },
                             carries: finished.carries, heldAt: finished.heldAt)
        }
    }

    private static func binds(_ ids: [Int], _ cutoff: String) -> PostgresBindings {
        var binds = PostgresBindings()
        binds.append(ids)
        binds.append(cutoff)
        return binds
    }

    private static func archivedTasks(_ connection: PostgresConnection, ids: [Int], logger: Logger) async throws -> [Int: ArchivedTask] {
        guard !ids.isEmpty else { return [:] }
        var result: [Int: ArchivedTask] = [:]
        let rows = try await connection.query("""
            SELECT id, export_task_id, project_id, instance_id, state, attempts, unanswered_attempts,
                \(unescaped: PostgresText.timestamp("enqueued_at")), \(unescaped: PostgresText.timestamp("next_attempt_at")),
                \(unescaped: PostgresText.timestamp("finished_at")), last_http_status, last_error_code, last_error_message,
                last_request_id
            FROM export_tasks WHERE id = ANY(\(ids))
            """, logger: logger)
        for try await row in rows.decode((Int, String, String?, String?, String, Int?, Int?, String?, String?, String?,
                                          Int?, String?, String?, String?).self) {
            result[row.0] = ArchivedTask(
                id: row.0, exportTaskID: row.1, projectID: row.2, instanceID: row.3, state: row.4, attempts: row.5,
                unansweredAttempts: row.6, enqueuedAt: row.7, nextAttemptAt: row.8, finishedAt: row.9,
                lastHTTPStatus: row.10, lastErrorCode: row.11, lastErrorMessage: row.12, lastRequestID: row.13)
        }
        return result
    }
}
