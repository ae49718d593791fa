import CSQLite
import FoundationEssentials
import Logging

// Claiming due tasks under a lease, each row checked as it is read.

extension SQLiteQueue {

    /// Claims of at most this many tasks read first and then lease row by row; larger ones run
    /// as one statement.
    static let smallClaim = Tuning.smallClaim

    package func claim(limit: Int, leaseToken: String, leaseUntil: Date, now: Date) throws -> [ClaimedTask] {
        guard limit > 0 else { return [] }
        return try withConnection { db in
            try db.writeTransaction {
                let tasks = limit <= Self.smallClaim
                    ? try claimRowByRow(db, limit: limit, leaseToken: leaseToken, leaseUntil: leaseUntil, now: now)
                    : try claimAtOnce(db, limit: limit, leaseToken: leaseToken, leaseUntil: leaseUntil, now: now)
                return tasks.sorted { $0.id < $1.id }
            }
        }
    }

    /// The claim writes each task's next attempt ahead (docs/database.md, "The database"): once a task is
    /// leased, a request for it may leave, and a crash must not lose count of it. A value
    /// another tool wrote that is not an integer in range counts as 0 (as ``claimedTask`` reads it).
    private static let attemptsAhead = """
        CASE WHEN typeof(attempts) = 'integer' THEN min(max(attempts, 0), \(maximumAttempts)) ELSE 0 END + 1
        """

    /// One statement: cheapest per task for a large claim, but SQLite builds four temporary
    /// tables for it (the IN list, RETURNING, …), a fixed cost a claim of one task pays in full.
    private func claimAtOnce(_ db: SQLiteConnection, limit: Int, leaseToken: String, leaseUntil: Date,
                             now: Date) throws -> [ClaimedTask] {
        let statement = try db.prepare("""
            UPDATE export_tasks SET state = 'in_progress', lease_token = ?1, lease_expires_at = ?2,
                attempts = \(Self.attemptsAhead)
            WHERE id IN (
                SELECT id FROM export_tasks
                WHERE state = 'pending' AND next_attempt_at <= ?3
                ORDER BY next_attempt_at, id LIMIT ?4)
            RETURNING id, export_task_id, project_id, instance_id, attempts - 1, unanswered_attempts
            """)
        defer { statement.reset() }
        statement.bind(leaseToken, at: 1)
        statement.bind(Timestamp.format(leaseUntil), at: 2)
        statement.bind(Timestamp.format(now), at: 3)
        statement.bind(limit, at: 4)
        var tasks: [ClaimedTask] = []
        while try statement.step() {
            tasks.append(Self.claimedTask(statement, leaseToken: leaseToken))
        }
        return tasks
    }

    /// A plain SELECT, then an UPDATE by row ID per task, in the same write transaction so
    /// nothing changes in between: no temporary tables.
    private func claimRowByRow(_ db: SQLiteConnection, limit: Int, leaseToken: String, leaseUntil: Date,
                               now: Date) throws -> [ClaimedTask] {
        let select = try db.prepare("""
            SELECT id, export_task_id, project_id, instance_id, attempts, unanswered_attempts FROM export_tasks
            WHERE state = 'pending' AND next_attempt_at <= ?1
            ORDER BY next_attempt_at, id LIMIT ?2
            """)
        select.bind(Timestamp.format(now), at: 1)
        select.bind(limit, at: 2)
        var tasks: [ClaimedTask] = []
        do {
            defer { select.reset() }
            while try select.step() {
                tasks.append(Self.claimedTask(select, leaseToken: leaseToken))
            }
        }
        guard !tasks.isEmpty else { return [] }
        let lease = try db.prepare("""
            UPDATE export_tasks SET state = 'in_progress', lease_token = ?1, lease_expires_at = ?2, attempts = ?4
            WHERE id = ?3
            """)
        let until = Timestamp.format(leaseUntil)
        for task in tasks {
            lease.bind(leaseToken, at: 1)
            lease.bind(until, at: 2)
            lease.bind(task.id, at: 3)
            lease.bind(task.attempts + 1, at: 4)
            try lease.run()
        }
        return tasks
    }

    /// Bounds `attempts` as read (another tool may write any integer), so counting on from it
    /// cannot overflow; far above any `retry.max_attempts`.
    static var maximumAttempts: Int { QueueLimits.maximumAttempts }

    /// A claimed row (`id, export_task_id, project_id, instance_id, attempts,
    /// unanswered_attempts`, the counts as they were before the claim), checked: other
    /// tools write these columns with plain SQL, so a value that is not text (a BLOB `x'2e2e'`
    /// reads as `..`) or breaks ``IdentifierRule`` makes the task's ``ClaimedTask/problem``.
    private static func claimedTask(_ row: SQLiteStatement, leaseToken: String) -> ClaimedTask {
        func count(_ column: Int32) -> Int {
            row.isInteger(column) ? min(max(0, row.int(column)), Self.maximumAttempts) : 0
        }
        let columns: [(Int32, String, Bool)] = [(1, "export_task_id", false), (2, "project_id", true), (3, "instance_id", true)]
        let nonText = columns.compactMap { column, name, nullable in
            row.isText(column) || (nullable && row.isNull(column)) ? nil : name
        }
        var task = ClaimedTask(id: row.int(0), exportTaskID: row.string(1), projectID: row.optionalString(2),
                               instanceID: row.optionalString(3), attempts: count(4), leaseToken: leaseToken)
        task.unansweredAttempts = count(5)
        task.problem = ClaimedTask.problem(exportTaskID: task.exportTaskID, projectID: task.projectID,
                                           instanceID: task.instanceID, nonText: nonText)
        if task.problem != nil {
            // Recorded and logged bounded and escaped, as `enqueue` records an invalid ID: the
            // audit log is append-only, and a line break would fake a journal line.
            task.exportTaskID = ExportTaskID.shown(task.exportTaskID)
        }
        return task
    }
}
