import FoundationEssentials
import PostgresNIO

// Reading the audit log back: `audit`, `audit --verify` and the consistency check, each in
// one snapshot (REPEATABLE READ), so services appending meanwhile do not confuse them.

extension PostgresQueueStore {
    /// Every column of `audit_log` in ``AuditChain/columns`` order, then `lease_lost` and `hash`.
    static let auditColumns = """
        id, task_id, export_task_id, project_id, attempt, \(PostgresText.timestamp("at")), duration_ms, http_status,
        error_code, error_message, request_id, outcome, delivery, runner, lease_lost, hash
        """

    typealias AuditRow = (Int, Int?, String, String?, Int?, String, Int?, Int?, String?, String?, String?,
                                  String, String?, String, Int?, String?)

    public func auditEntries(_ filter: AuditFilter, _ body: (AuditEntry) throws -> Void) async throws {
        let (task, outcome) = (filter.exportTaskID.map(PostgresText.clean), filter.outcome?.rawValue)
        let (since, state) = (filter.since.map(Timestamp.format), filter.taskState?.rawValue)
        try await snapshot { connection, logger in
            let rows = try await connection.query("""
                SELECT \(unescaped: Self.auditColumns) FROM audit_log
                WHERE (\(task)::text IS NULL OR export_task_id = \(task))
                  AND (\(outcome)::text IS NULL OR outcome = \(outcome))
                  AND (\(since)::text IS NULL OR at >= \(since)::timestamptz)
                  AND (\(state)::text IS NULL OR task_id IN (SELECT id FROM export_tasks WHERE state = \(state)))
                ORDER BY id
                """, logger: logger)
            for try await row in rows.decode(AuditRow.self) {
                try body(AuditEntry(
                    id: row.0, taskID: row.1, exportTaskID: row.2, projectID: row.3, attempt: row.4, at: row.5,
                    durationMilliseconds: row.6, httpStatus: row.7, errorCode: row.8, errorMessage: row.9,
                    requestID: row.10, outcome: row.11, delivery: row.12, runner: row.13, leaseLost: row.14 != nil,
                    hash: row.15))
            }
        }
    }

    public func verifyAuditChain(continuing archived: AuditVerification.Walker?) async throws -> AuditVerification {
        try await snapshot { connection, logger in
            // From the archive's last checkpoint (docs/database.md, "Retention"); `archived`:
            // a walk of the archives to continue, which must end there.
            let checkpoint = ChainPosition(try await Self.lastCheckpoint(connection, logger: logger))
            var walker = archived ?? AuditVerification.Walker(after: checkpoint)
            if walker.position.lastID != checkpoint.lastID || walker.position.hash != checkpoint.hash {
                var result = walker.result
                result.problem = "the archives end at row \(walker.position.lastID), but the database's checkpoint is row \(checkpoint.lastID)"
                return result
            }
            let rows = try await connection.query("SELECT \(unescaped: Self.auditColumns) FROM audit_log ORDER BY id", logger: logger)
            for try await row in rows.decode(AuditRow.self) {
                func number(_ value: Int?) -> AuditChain.Value { value.map { .integer($0) } ?? .null }
                func text(_ value: String?) -> AuditChain.Value { value.map { .text($0) } ?? .null }
                var values: [AuditChain.Value] = [
                    .integer(row.0), number(row.1), .text(row.2), text(row.3), number(row.4), .text(row.5), number(row.6),
                    number(row.7), text(row.8), text(row.9), text(row.10), .text(row.11), text(row.12), .text(row.13),
                ]
                if let leaseLost = row.14 { values.append(.integer(leaseLost)) }
                guard walker.check(id: row.0, values: values, stored: row.15) else { break }
            }
            return walker.result
        }
    }

    public func checkConsistency() async throws -> ConsistencyReport {
        let finals = AuditOutcome.allCases.filter(\.finishes).map { "'\($0.rawValue)'" }.joined(separator: ", ")
        return try await snapshot { connection, logger in
            // The rule and its words are ConsistencyReport's; this reads what it needs.
            let rows = try await connection.query(PostgresQuery(unsafeSQL: """
                WITH since AS (
                    SELECT task_id, max(id) AS after FROM audit_log WHERE outcome = 'requeued' GROUP BY task_id
                ), cycle AS (
                    SELECT a.task_id,
                        count(*) FILTER (WHERE a.outcome IN (\(finals)) AND a.lease_lost IS NULL) AS finals,
                        max(a.id) FILTER (WHERE a.outcome IN (\(finals)) AND a.lease_lost IS NULL) AS last_final,
                        count(DISTINCT a.attempt) FILTER (WHERE a.attempt IS NOT NULL AND a.outcome <> 'auth_refused'
                            AND NOT (a.outcome = 'released' AND a.delivery IS NOT DISTINCT FROM 'not_sent')) AS attempts
                    FROM audit_log a LEFT JOIN since s ON s.task_id = a.task_id
                    WHERE a.id > coalesce(s.after, 0)
                    GROUP BY a.task_id
                )
                SELECT t.id, t.export_task_id, t.state, t.attempts,
                    t.lease_token IS NOT NULL AND t.lease_expires_at IS NOT NULL,
                    coalesce(c.finals, 0) + coalesce(least(greatest(k.finals, 0), 1000000), 0),
                    coalesce((SELECT outcome FROM audit_log WHERE id = c.last_final), k.final_outcome),
                    coalesce(c.attempts, 0), k.attempts,
                    CASE WHEN k.task_id IS NOT NULL THEN
                        (SELECT string_agg(DISTINCT a.attempt::text, ',') FROM audit_log a
                         WHERE a.export_task_id = t.export_task_id AND a.task_id = t.id AND a.attempt IS NOT NULL
                           AND a.outcome <> 'auth_refused'
                           AND NOT (a.outcome = 'released' AND a.delivery IS NOT DISTINCT FROM 'not_sent'))
                    END
                FROM export_tasks t LEFT JOIN cycle c ON c.task_id = t.id
                LEFT JOIN audit_archive_carry k ON k.task_id = t.id AND k.export_task_id = t.export_task_id
                    AND NOT EXISTS (SELECT 1 FROM since WHERE since.task_id = t.id)
                ORDER BY t.id
                """), logger: logger)
            var report = ConsistencyReport()
            for try await (id, exportTaskID, state, attempts, leased, finalRows, finalOutcome, counted, carried, here)
                in rows.decode((Int, String, String, Int, Bool, Int, String?, Int, String?, String?).self) {
                // A task whose cycle began in rows now archived (docs/database.md, "Retention"):
                // its attempts are those on record here and those the archive carried.
                var attemptRows = counted
                if let carried {
                    attemptRows = PruneCarry.attempts(carried).union(PruneCarry.attempts(here)).count
                }
                report.add(taskID: id, exportTaskID: exportTaskID, problem: ConsistencyReport.problem(
                    state: state, attempts: attempts, leased: leased, finalRows: finalRows,
                    finalOutcome: finalOutcome, attemptRows: attemptRows))
            }
            return report
        }
    }

    /// `body` in a read-only REPEATABLE READ transaction on a leased connection; not bounded
    /// by ``callTimeout``: an operator's read of the whole log takes as long as the log.
    func snapshot<T>(_ body: (PostgresConnection, Logger) async throws -> T) async throws -> T {
        let logger = logger
        do {
            return try await client.withConnection { connection in
                try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
                do {
                    let result = try await body(connection, logger)
                    try await connection.query("COMMIT", logger: logger)
                    return result
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        } catch {
            throw StoreError.fromPostgres(error)
        }
    }
}
