import FoundationEssentials
import PostgresNIO

// Claiming due tasks under a lease, applying outcomes under it, renewing and expiring leases
// (docs/database.md, "The database"): the SQLite store's rules, in PostgreSQL's terms.

extension PostgresQueueStore {
    /// The claim, one statement: SKIP LOCKED, so two services claiming at once each take other
    /// rows and neither waits; planned from the index by the service's sessions
    /// (``servicePlanning``). The attempt is written ahead (docs/database.md, "The database"); counts another
    /// tool wrote out of range are read bounded.
    static func claimQuery(limit: Int, leaseToken: String, leaseUntil: Date, now: Date) -> PostgresQuery {
        let (token, until, due) = (PostgresText.clean(leaseToken), Timestamp.format(leaseUntil), Timestamp.format(now))
        let maximum = QueueLimits.maximumAttempts
        return """
            WITH due AS (
                SELECT id FROM export_tasks
                WHERE state = 'pending' AND next_attempt_at <= \(due)::timestamptz
                ORDER BY next_attempt_at, id LIMIT \(limit)
                FOR UPDATE SKIP LOCKED)
            UPDATE export_tasks t SET state = 'in_progress', lease_token = \(token),
                lease_expires_at = \(until)::timestamptz, attempts = least(greatest(t.attempts, 0), \(maximum)) + 1
            FROM due WHERE t.id = due.id
            RETURNING t.id, t.export_task_id, t.project_id, t.instance_id, t.attempts - 1,
                least(greatest(t.unanswered_attempts, 0), \(maximum))
            """
    }

    public func claim(limit: Int, leaseToken: String, leaseUntil: Date, now: Date) async throws -> [ClaimedTask] {
        guard limit > 0 else { return [] }
        let query = Self.claimQuery(limit: limit, leaseToken: leaseToken, leaseUntil: leaseUntil, now: now)
        let logger = logger
        return try await writeStatement { connection in
            let rows = try await connection.query(query, logger: logger)
            var tasks: [ClaimedTask] = []
            for try await (id, exportTaskID, projectID, instanceID, attempts, unanswered)
                in rows.decode((Int, String, String?, String?, Int, Int).self) {
                var task = ClaimedTask(id: id, exportTaskID: exportTaskID, projectID: projectID, instanceID: instanceID,
                                       attempts: attempts, leaseToken: leaseToken)
                task.unansweredAttempts = unanswered
                // Other tools write these columns with plain SQL (docs/database.md, "Feeding the queue").
                task.problem = ClaimedTask.problem(exportTaskID: exportTaskID, projectID: projectID, instanceID: instanceID)
                if task.problem != nil { task.exportTaskID = ExportTaskID.shown(exportTaskID) }
                tasks.append(task)
            }
            return tasks.sorted { $0.id < $1.id }
        }
    }

    /// One transition as `jsonb_to_recordset` reads it.
    private struct EncodedTransition: Encodable {
        var id: Int
        var state: String
        var due: String?
        var finished: String?
        var attempts: Int
        var http_status: Int?
        var error_code: String?
        var error_message: String?
        var request_id: String?
        var token: String
        var sent: Bool
        var unanswered: Int

        init(_ transition: TaskTransition) {
            let record = transition.audit
            id = transition.task.id
            switch transition.change {
            case .finish(let final): (state, finished) = (final.rawValue, Timestamp.format(record.at))
            case .retry(let at): (state, due) = (TaskState.pending.rawValue, Timestamp.format(at))
            case .release: state = TaskState.pending.rawValue
            }
            attempts = transition.attempts
            sent = record.hasRequest
            http_status = record.httpStatus
            error_code = record.errorCode.map(PostgresText.clean)
            error_message = record.errorMessage.map(PostgresText.clean)
            request_id = record.requestID.map(PostgresText.clean)
            token = PostgresText.clean(transition.task.leaseToken)
            unanswered = transition.unansweredAttempts
        }
    }

    public func apply(_ transitions: [TaskTransition]) async throws -> [Bool] {
        guard !transitions.isEmpty else { return [] }
        let (runner, logger) = (runner, logger)
        return try await write { connection in
            // A batch naming a task twice goes one by one: the first wins, the second finds
            // the lease gone (a duplicate writer).
            let distinct = Set(transitions.map(\.task.id)).count == transitions.count
            let groups = distinct ? [transitions] : transitions.map { [$0] }
            var held = Set<Int>()
            var applied: [Bool] = []
            applied.reserveCapacity(transitions.count)
            for group in groups {
                held.removeAll(keepingCapacity: true)
                let json = try PostgresText.json(group.map(EncodedTransition.init))
                let (ids, tokens) = (group.map(\.task.id), Array(Set(group.map { PostgresText.clean($0.task.leaseToken) })))
                // The rows are locked first, in `id` order, as every write that waits for row
                // locks takes them (renewals, `requeue`): locked in the batch's order, an
                // outcome batch and a renewal of the same service deadlocked (40P01).
                let rows = try await connection.query("""
                    UPDATE export_tasks t SET state = v.state, next_attempt_at = coalesce(v.due::timestamptz, t.next_attempt_at),
                        finished_at = v.finished::timestamptz, lease_token = NULL, lease_expires_at = NULL,
                        attempts = v.attempts, unanswered_attempts = v.unanswered,
                        last_http_status = CASE WHEN v.sent THEN v.http_status ELSE t.last_http_status END,
                        last_error_code = CASE WHEN v.sent THEN v.error_code ELSE t.last_error_code END,
                        last_error_message = CASE WHEN v.sent THEN v.error_message ELSE t.last_error_message END,
                        last_request_id = CASE WHEN v.sent THEN v.request_id ELSE t.last_request_id END
                    FROM jsonb_to_recordset(\(json)::jsonb) AS v(id bigint, state text, due text, finished text,
                        attempts bigint, http_status integer, error_code text, error_message text, request_id text,
                        token text, sent boolean, unanswered bigint)
                    WHERE t.id = v.id AND t.lease_token = v.token AND t.state = 'in_progress'
                        AND t.id IN (SELECT id FROM export_tasks
                            WHERE id = ANY(\(ids)) AND state = 'in_progress' AND lease_token = ANY(\(tokens))
                            ORDER BY id FOR UPDATE)
                    RETURNING t.id
                    """, logger: logger)
                for try await id in rows.decode(Int.self) { held.insert(id) }
                applied += group.map { held.contains($0.task.id) }
            }
            // A task back to `pending` may be another service's to take: wake the idle ones
            // (docs/database.md, "PostgreSQL"). Claims and finishes notify no one.
            if zip(transitions, applied).contains(where: { $1 && !Self.finishes($0.change) }) {
                try await Self.notify(connection, logger: logger)
            }
            var audit = PostgresAuditRows(runner: runner)
            for (task, record) in TaskTransition.auditRows(transitions, held: applied) {
                audit.append(taskID: task.id, exportTaskID: task.exportTaskID, projectID: task.projectID, record: record)
            }
            try await audit.write(connection, logger: logger)
            return applied
        }
    }

    public func renewLeases(tokens: [String], until: Date) async throws -> Set<Int> {
        guard !tokens.isEmpty else { return [] }
        let (tokens, until, logger) = (tokens.map(PostgresText.clean), Timestamp.format(until), logger)
        return try await write { connection in
            // Locked in `id` order first, as ``apply(_:)`` locks them (see there).
            let rows = try await connection.query("""
                UPDATE export_tasks SET lease_expires_at = \(until)::timestamptz
                WHERE id IN (SELECT id FROM export_tasks WHERE state = 'in_progress' AND lease_token = ANY(\(tokens))
                    ORDER BY id FOR UPDATE)
                RETURNING id
                """, logger: logger)
            var held = Set<Int>()
            for try await id in rows.decode(Int.self) { held.insert(id) }
            return held
        }
    }

    public func expireLeases(now: Date) async throws -> [ExpiredLease] {
        let (at, runner, logger, maximum) = (Timestamp.format(now), runner, logger, QueueLimits.maximumAttempts)
        return try await write { connection in
            // A lease handed out by a claim wrote its attempt ahead: that request may have
            // left. A row another tool set `in_progress` without a lease did not.
            let rows = try await connection.query("""
                WITH expired AS (
                    SELECT id, lease_token FROM export_tasks
                    WHERE state = 'in_progress' AND (lease_expires_at IS NULL OR lease_expires_at < \(at)::timestamptz)
                    ORDER BY id
                    FOR UPDATE SKIP LOCKED)
                UPDATE export_tasks t SET state = 'pending', lease_token = NULL, lease_expires_at = NULL,
                    unanswered_attempts = CASE WHEN e.lease_token IS NOT NULL
                        THEN least(greatest(t.unanswered_attempts, 0), \(maximum) - 1) + 1 ELSE t.unanswered_attempts END
                FROM expired e WHERE t.id = e.id
                RETURNING t.id, t.export_task_id, t.project_id, e.lease_token, least(greatest(t.attempts, 0), \(maximum))
                """, logger: logger)
            var expired: [(lease: ExpiredLease, projectID: String?, attempt: Int?)] = []
            for try await (id, exportTaskID, projectID, token, attempts) in rows.decode((Int, String, String?, String?, Int).self) {
                expired.append((ExpiredLease(id: id, exportTaskID: exportTaskID, leaseToken: token), projectID,
                                token == nil ? nil : attempts))
            }
            expired.sort { $0.lease.id < $1.lease.id }
            if !expired.isEmpty { try await Self.notify(connection, logger: logger) }
            var audit = PostgresAuditRows(runner: runner)
            for (lease, projectID, attempt) in expired {
                audit.append(taskID: lease.id, exportTaskID: lease.exportTaskID, projectID: projectID,
                             record: AuditRecord(outcome: .leaseExpired, at: now, attempt: attempt,
                                                 delivery: attempt == nil ? nil : .unknown))
            }
            try await audit.write(connection, logger: logger)
            return expired.map(\.lease)
        }
    }

    private static func finishes(_ change: TaskTransition.Change) -> Bool {
        if case .finish = change { return true }
        return false
    }

    /// Notifies the services listening on this schema (``PostgresChangeListener``), at commit.
    static func notify(_ connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("SELECT pg_notify(\(PostgresSchema.notificationChannel), current_schema())", logger: logger)
    }
}
