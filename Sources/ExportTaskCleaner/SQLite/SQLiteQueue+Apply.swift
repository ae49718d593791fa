import CSQLite
import FoundationEssentials
import Logging

// Applying outcomes under their leases, and renewing and expiring leases.

extension SQLiteQueue {
    package func apply(_ transitions: [TaskTransition]) throws -> [Bool] {
        guard !transitions.isEmpty else { return [] }
        return try withConnection { db in
            try db.writeTransaction {
                var audit = AuditRows(runner: runner)
                let applied = Set(transitions.map(\.task.id)).count == transitions.count
                    ? try applyBatched(transitions, db)
                    : try applyOneByOne(transitions, db)
                for (task, record) in TaskTransition.auditRows(transitions, held: applied) {
                    audit.append(taskID: task.id, exportTaskID: task.exportTaskID, projectID: task.projectID, record: record)
                }
                try audit.write(db)
                return applied
            }
        }
    }

    /// The columns a transition sets: `state`, `next_attempt_at` (nil: unchanged), `finished_at`.
    private static func columns(of transition: TaskTransition) -> (state: String, due: String?, finishedAt: String?) {
        switch transition.change {
        case .finish(let state): (state.rawValue, nil, Timestamp.format(transition.audit.at))
        case .retry(let due): (TaskState.pending.rawValue, Timestamp.format(due), nil)
        case .release: (TaskState.pending.rawValue, nil, nil)
        }
    }

    /// Rows per multi-row statement, largest first: a batch is written with as few as possible.
    static let statementBatchSizes = [32, 16, 8, 4, 2, 1]

    /// Splits `count` rows into runs of ``statementBatchSizes``, largest first, and calls `body`
    /// with each run's first row and the index of its size (which picks the prepared SQL).
    static func forEachStatementBatch(of count: Int, _ body: (_ start: Int, _ sizeIndex: Int) throws -> Void) rethrows {
        var start = 0
        while start < count {
            let sizeIndex = statementBatchSizes.firstIndex { $0 <= count - start } ?? statementBatchSizes.count - 1
            try body(start, sizeIndex)
            start += statementBatchSizes[sizeIndex]
        }
    }

    /// Values bound per transition in `applySQL`.
    private static let valuesPerTransition = 12

    /// `UPDATE … FROM (VALUES …) RETURNING id` for `size` transitions of 12 values each:
    /// id, state, next_attempt_at, finished_at, attempts, last_http_status, last_error_code,
    /// last_error_message, last_request_id, lease token, whether a request was sent (without
    /// one, the `last_*` columns keep their values), unanswered_attempts.
    private static let applySQL: [String] = statementBatchSizes.map { size in
        let rows = (0..<size).map { row in
            "(" + (1...valuesPerTransition).map { "?\(row * valuesPerTransition + $0)" }.joined(separator: ", ") + ")"
        }
        return """
            UPDATE export_tasks SET state = v.column2, next_attempt_at = coalesce(v.column3, export_tasks.next_attempt_at),
                finished_at = v.column4, lease_token = NULL, lease_expires_at = NULL,
                attempts = v.column5, unanswered_attempts = v.column12,
                last_http_status = CASE WHEN v.column11 THEN v.column6 ELSE export_tasks.last_http_status END,
                last_error_code = CASE WHEN v.column11 THEN v.column7 ELSE export_tasks.last_error_code END,
                last_error_message = CASE WHEN v.column11 THEN v.column8 ELSE export_tasks.last_error_message END,
                last_request_id = CASE WHEN v.column11 THEN v.column9 ELSE export_tasks.last_request_id END
            FROM (VALUES \(rows.joined(separator: ", "))) AS v
            WHERE export_tasks.id = v.column1 AND export_tasks.lease_token = v.column10
                AND export_tasks.state = 'in_progress'
            RETURNING export_tasks.id
            """
    }

    /// Transitions of distinct tasks, up to 32 per statement: a statement per task costs as
    /// much again as the update itself.
    private func applyBatched(_ transitions: [TaskTransition], _ db: SQLiteConnection) throws -> [Bool] {
        var held = Set<Int>()
        held.reserveCapacity(transitions.count)
        try Self.forEachStatementBatch(of: transitions.count) { next, choice in
            let statement = try db.prepare(Self.applySQL[choice])
            defer { statement.reset() }
            for offset in 0..<Self.statementBatchSizes[choice] {
                let transition = transitions[next + offset]
                let record = transition.audit
                let base = Int32(offset * Self.valuesPerTransition)
                let (state, due, finishedAt) = Self.columns(of: transition)
                statement.bind(transition.task.id, at: base + 1)
                statement.bind(state, at: base + 2)
                statement.bind(due, at: base + 3)
                statement.bind(finishedAt, at: base + 4)
                statement.bind(transition.attempts, at: base + 5)
                statement.bind(record.httpStatus, at: base + 6)
                statement.bind(record.errorCode, at: base + 7)
                statement.bind(record.errorMessage, at: base + 8)
                statement.bind(record.requestID, at: base + 9)
                statement.bind(transition.task.leaseToken, at: base + 10)
                statement.bind(record.hasRequest ? 1 : 0, at: base + 11)
                statement.bind(transition.unansweredAttempts, at: base + 12)
            }
            while try statement.step() {
                held.insert(statement.int(0))
            }
        }
        return transitions.map { held.contains($0.task.id) }
    }

    /// One statement per transition, in order: for a batch naming a task twice, where the
    /// first transition wins and the second finds the lease gone.
    private func applyOneByOne(_ transitions: [TaskTransition], _ db: SQLiteConnection) throws -> [Bool] {
        let withResponse = try db.prepare("""
            UPDATE export_tasks SET state = ?1, next_attempt_at = coalesce(?2, next_attempt_at),
                finished_at = ?3, lease_token = NULL, lease_expires_at = NULL,
                attempts = ?4, unanswered_attempts = ?11, last_http_status = ?5, last_error_code = ?6,
                last_error_message = ?7, last_request_id = ?8
            WHERE id = ?9 AND lease_token = ?10 AND state = 'in_progress'
            """)
        let withoutRequest = try db.prepare("""
            UPDATE export_tasks SET state = ?1, next_attempt_at = coalesce(?2, next_attempt_at),
                finished_at = ?3, lease_token = NULL, lease_expires_at = NULL, attempts = ?4
            WHERE id = ?9 AND lease_token = ?10 AND state = 'in_progress'
            """)
        var applied: [Bool] = []
        applied.reserveCapacity(transitions.count)
        for transition in transitions {
            let record = transition.audit
            let statement = record.hasRequest ? withResponse : withoutRequest
            let (state, due, finishedAt) = Self.columns(of: transition)
            statement.bind(state, at: 1)
            statement.bind(due, at: 2)
            statement.bind(finishedAt, at: 3)
            statement.bind(transition.attempts, at: 4)
            if record.hasRequest {
                statement.bind(transition.unansweredAttempts, at: 11)
                statement.bind(record.httpStatus, at: 5)
                statement.bind(record.errorCode, at: 6)
                statement.bind(record.errorMessage, at: 7)
                statement.bind(record.requestID, at: 8)
            }
            statement.bind(transition.task.id, at: 9)
            statement.bind(transition.task.leaseToken, at: 10)
            try statement.run()
            applied.append(db.changes == 1)
        }
        return applied
    }

    package func renewLeases(tokens: [String], until: Date) throws -> Set<Int> {
        guard !tokens.isEmpty else { return [] }
        return try withConnection { db in
            try db.writeTransaction {
                let statement = try db.prepare("""
                    UPDATE export_tasks SET lease_expires_at = ?1 WHERE state = 'in_progress' AND lease_token = ?2
                    RETURNING id
                    """)
                var held = Set<Int>()
                for token in tokens {
                    statement.bind(Timestamp.format(until), at: 1)
                    statement.bind(token, at: 2)
                    while try statement.step() { held.insert(statement.int(0)) }
                    statement.reset()
                }
                return held
            }
        }
    }

    package func expireLeases(now: Date) throws -> [ExpiredLease] {
        try withConnection { db in
            try db.writeTransaction {
                let select = try db.prepare("""
                    SELECT id, export_task_id, project_id, lease_token, attempts FROM export_tasks
                    WHERE state = 'in_progress' AND (lease_expires_at IS NULL OR lease_expires_at < ?1)
                    """)
                select.bind(Timestamp.format(now), at: 1)
                var expired: [(lease: ExpiredLease, projectID: String?, attempt: Int?)] = []
                while try select.step() {
                    // A lease handed out by a claim wrote its attempt ahead: that request may
                    // have left. A row another tool set `in_progress` without one did not.
                    let attempt = select.isNull(3) || !select.isInteger(4) ? nil : select.int(4)
                    expired.append((ExpiredLease(id: select.int(0), exportTaskID: select.string(1),
                                                 leaseToken: select.optionalString(3)), select.optionalString(2), attempt))
                }
                select.reset()
                let update = try db.prepare("""
                    UPDATE export_tasks SET state = 'pending', lease_token = NULL, lease_expires_at = NULL,
                        unanswered_attempts = CASE WHEN ?3 THEN min(unanswered_attempts + 1, \(Self.maximumAttempts))
                            ELSE unanswered_attempts END
                    WHERE id = ?1 AND state = 'in_progress' AND lease_token IS ?2
                    """)
                var audit = AuditRows(runner: runner)
                for (lease, projectID, attempt) in expired {
                    update.bind(lease.id, at: 1)
                    update.bind(lease.leaseToken, at: 2)
                    update.bind(attempt == nil ? 0 : 1, at: 3)
                    try update.run()
                    audit.append(taskID: lease.id, exportTaskID: lease.exportTaskID, projectID: projectID,
                                 record: AuditRecord(outcome: .leaseExpired, at: now, attempt: attempt,
                                                     delivery: attempt == nil ? nil : .unknown))
                }
                try audit.write(db)
                return expired.map(\.lease)
            }
        }
    }
}
