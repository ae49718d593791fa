import CSQLite
import FoundationEssentials

// The tasks checked against their audit rows: `audit --verify` (docs/database.md, "The database").

extension SQLiteQueue {
    /// Checks every task against its audit rows since its last `requeued` row (its *cycle*):
    /// - a finished task has exactly one final row (an outcome that ends a task, not
    ///   `lease_lost`), and it names the task's state; a task not finished has none;
    /// - `attempts` equals the distinct attempt numbers of the cycle's rows that use one (an
    ///   `in_progress` task may also have one more: written ahead at its claim);
    /// - an `in_progress` task has a lease (token and expiry).
    /// One read transaction: a service writing meanwhile does not confuse it.
    package func checkConsistency() throws -> ConsistencyReport {
        let finals = AuditOutcome.allCases.filter(\.finishes).map { "'\($0.rawValue)'" }.joined(separator: ", ")
        return try withConnection { db in
            try db.readTransaction {
                let statement = try db.prepare("""
                    WITH since AS (
                        SELECT task_id, max(id) AS after FROM audit_log WHERE outcome = 'requeued' GROUP BY task_id
                    ), cycle AS (
                        SELECT a.task_id,
                            sum(a.outcome IN (\(finals)) AND a.lease_lost IS NULL) AS finals,
                            max(CASE WHEN a.outcome IN (\(finals)) AND a.lease_lost IS NULL THEN a.id END) AS last_final,
                            count(DISTINCT CASE WHEN a.attempt IS NOT NULL AND a.outcome <> 'auth_refused'
                                AND NOT (a.outcome = 'released' AND a.delivery IS 'not_sent') THEN a.attempt END) AS attempts
                        FROM audit_log a LEFT JOIN since s ON s.task_id = a.task_id
                        WHERE a.id > ifnull(s.after, 0)
                        GROUP BY a.task_id
                    )
                    SELECT t.id, t.export_task_id, t.state, t.attempts,
                        t.lease_token IS NOT NULL AND t.lease_expires_at IS NOT NULL,
                        ifnull(c.finals, 0) + ifnull(min(k.finals, 1000000), 0),
                        ifnull((SELECT outcome FROM audit_log WHERE id = c.last_final), k.final_outcome),
                        ifnull(c.attempts, 0), k.attempts
                    FROM export_tasks t LEFT JOIN cycle c ON c.task_id = t.id
                    LEFT JOIN audit_archive_carry k ON k.task_id = t.id AND k.export_task_id = t.export_task_id
                        AND NOT EXISTS (SELECT 1 FROM since WHERE since.task_id = t.id)
                    ORDER BY t.id
                    """)
                defer { statement.reset() }
                // A task whose cycle began in rows now archived (docs/database.md, "Retention"):
                // its attempts are those on record here and those the archive carried.
                let attemptsHere = try db.prepare("""
                    SELECT DISTINCT attempt FROM audit_log WHERE export_task_id = ?1 AND task_id = ?2
                        AND attempt IS NOT NULL AND outcome <> 'auth_refused' AND NOT (outcome = 'released' AND delivery IS 'not_sent')
                    """)
                var report = ConsistencyReport()
                while try statement.step() {
                    var attemptRows = statement.int(7)
                    if let carried = statement.optionalString(8) {
                        var attempts = PruneCarry.attempts(carried)
                        attemptsHere.bind(statement.string(1), at: 1)
                        attemptsHere.bind(statement.int(0), at: 2)
                        while try attemptsHere.step() { attempts.insert(attemptsHere.int(0)) }
                        attemptsHere.reset()
                        attemptRows = attempts.count
                    }
                    let problem = statement.isInteger(3)
                        ? ConsistencyReport.problem(
                            state: statement.string(2), attempts: statement.int(3), leased: statement.int(4) != 0,
                            finalRows: statement.int(5), finalOutcome: statement.optionalString(6), attemptRows: attemptRows)
                        : "attempts is not an integer"
                    report.add(taskID: statement.int(0), exportTaskID: statement.string(1), problem: problem)
                }
                return report
            }
        }
    }
}
