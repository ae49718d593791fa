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

    private enum Kind { case leaving(Int), stays(cycleStart: Int?), orphan }

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
            var cut = PruneCut(targetRows: targetRows)
            var fetched: [AuditEntry] = []
            let rows = try await connection.query("""
                SELECT \(unescaped: Self.auditColumns) FROM audit_log WHERE id > \(position.lastID) ORDER BY id LIMIT \(cut.targetRows)
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
            var kinds: [Int: Kind] = [:]
            var entries: [AuditEntry] = []
            var leaving: [Int] = []
            var previous = position.hash
            var expectedID = position.lastID &+ 1
            for entry in fetched {
                // The archive must verify: a row that breaks the chain as the archive would
                // hold it is not moved, and nothing after it.
                guard entry.id == expectedID, let hash = entry.hash,
                      AuditChain.hash(previous: previous, values: AuditChain.values(of: entry)) == hash else {
                    throw CleanerError.runtime(
                        "prune: audit row \(entry.id) does not continue the chain from row \(position.lastID); nothing from it on was archived (see `audit --verify`)")
                }
                previous = hash
                expectedID = entry.id &+ 1
                let kind: Kind
                if let taskID = entry.taskID, let known = kinds[taskID] {
                    kind = known
                } else if let taskID = entry.taskID {
                    if let task = facts[taskID], task.exportTaskID == entry.exportTaskID {
                        kind = task.leaves ? .leaving(task.lastRow ?? entry.id) : .stays(cycleStart: task.cycleStart)
                        if task.leaves { leaving.append(taskID) }
                    } else {
                        kind = .orphan
                    }
                    kinds[taskID] = kind
                } else {
                    kind = .orphan
                }
                let row: PruneCut.Row = switch kind {
                case .leaving: .leaving
                case .orphan: .orphan
                case .stays(let start): start.map { entry.id < $0 } == true ? .earlierCycle : .held
                }
                if cut.feed(id: entry.id, row) == .stop {
                    if row != .held, cut.cut == entry.id { entries.append(entry) }
                    break
                }
                entries.append(entry)
            }
            guard let end = cut.cut else {
                return cut.heldAt.map { PrunePlan(after: position, entries: [], tasks: [], heldAt: $0) }
            }
            entries.removeAll { $0.id > end }
            var done: [Int] = []
            var carries: [Int: PruneCarry] = [:]
            for id in leaving {
                guard case .leaving(let last) = kinds[id] else { continue }
                if last <= end {
                    done.append(id)
                } else if let first = entries.first(where: { $0.taskID == id }) {
                    carries[id] = PruneCarry(taskID: id, exportTaskID: first.exportTaskID)
                }
            }
            for entry in entries {
                if let id = entry.taskID, carries[id] != nil { carries[id]?.add(entry) }
            }
            let archived = try await Self.archivedTasks(connection, ids: done, logger: logger)
            return PrunePlan(after: position, entries: entries, tasks: done.compactMap { archived[$0] },
                             carries: carries.values.sorted { $0.taskID < $1.taskID }, heldAt: cut.heldAt)
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
