import CSQLite
import FoundationEssentials
import Logging

// What operators and the service's housekeeping ask: requeue, counts, heartbeat, status, audit.

extension SQLiteQueue {

    package func requeue(_ selection: RequeueSelection, now: Date) throws -> RequeueSummary {
        if case .state(let state) = selection, !state.isFinished {
            throw CleanerError.configuration(
                "only finished tasks can be requeued (\(TaskState.finished.map(\.rawValue).joined(separator: ", "))), not \(state.rawValue)")
        }
        return try withConnection { db in
            try db.writeTransaction {
                var rows: [(id: Int, exportTaskID: String, projectID: String?)] = []
                var summary = RequeueSummary()
                switch selection {
                case .state(let state):
                    let select = try db.prepare("SELECT id, export_task_id, project_id FROM export_tasks WHERE state = ?1")
                    select.bind(state.rawValue, at: 1)
                    while try select.step() { rows.append((select.int(0), select.string(1), select.optionalString(2))) }
                    select.reset()
                case .exportTaskIDs(let ids):
                    let select = try db.prepare("""
                        SELECT id, export_task_id, project_id, state FROM export_tasks
                        WHERE ifnull(project_id, '') = '' AND export_task_id = ?1
                        """)
                    // An ID named twice is one task: requeued once, with one audit row.
                    var seen = Set<String>()
                    for id in ids where seen.insert(id).inserted {
                        select.bind(id, at: 1)
                        var found = false
                        while try select.step() {
                            found = true
                            if TaskState(rawValue: select.string(3))?.isFinished == true {
                                rows.append((select.int(0), select.string(1), select.optionalString(2)))
                            } else {
                                summary.notFinished.append(id)
                            }
                        }
                        select.reset()
                        if !found { summary.unknown.append(id) }
                    }
                }
                let update = try db.prepare("""
                    UPDATE export_tasks SET state = 'pending', attempts = 0, unanswered_attempts = 0, next_attempt_at = ?1,
                        finished_at = NULL, lease_token = NULL, lease_expires_at = NULL
                    WHERE id = ?2
                    """)
                for row in rows {
                    update.bind(Timestamp.format(now), at: 1)
                    update.bind(row.id, at: 2)
                    try update.run()
                    try insertAudit(db, taskID: row.id, exportTaskID: row.exportTaskID, projectID: row.projectID,
                                    record: AuditRecord(outcome: .requeued, at: now))
                }
                summary.requeued = rows.count
                return summary
            }
        }
    }

    package func counts() throws -> [TaskState: Int] {
        try withConnection { db in try Self.counts(db) }
    }

    private static func counts(_ db: SQLiteConnection) throws -> [TaskState: Int] {
        let statement = try db.prepare("SELECT state, count(*) FROM export_tasks GROUP BY state")
        defer { statement.reset() }
        var counts = Dictionary(uniqueKeysWithValues: TaskState.allCases.map { ($0, 0) })
        while try statement.step() {
            if let state = TaskState(rawValue: statement.string(0)) { counts[state] = statement.int(1) }
        }
        return counts
    }

    package func oldestPendingEnqueuedAt() throws -> Date? {
        try withConnection { db in try Self.oldestPendingEnqueuedAt(db).flatMap(Timestamp.parse) }
    }

    /// `enqueued_at` of the oldest pending task, as stored (for `status` and the metrics).
    private static func oldestPendingEnqueuedAt(_ db: SQLiteConnection) throws -> String? {
        let statement = try db.prepare("SELECT min(enqueued_at) FROM export_tasks WHERE state = 'pending'")
        defer { statement.reset() }
        return try statement.step() ? statement.optionalString(0) : nil
    }

    package func nextDue() throws -> Date? {
        try withConnection { db in
            let statement = try db.prepare("SELECT min(next_attempt_at) FROM export_tasks WHERE state = 'pending'")
            defer { statement.reset() }
            return try statement.step() ? statement.optionalString(0).flatMap(Timestamp.parse) : nil
        }
    }

    package func hasUnfinishedTasks() throws -> Bool {
        try withConnection { db in
            try db.scalarInt("SELECT EXISTS (SELECT 1 FROM export_tasks WHERE state IN ('pending', 'in_progress'))") == 1
        }
    }

    package func dataVersion() throws -> Int {
        try withConnection { db in try db.scalarInt("PRAGMA data_version") ?? 0 }
    }

    package func heartbeat(startedAt: Date, status: String, now: Date) throws {
        try withConnection { db in
            try db.writeTransaction {
                let statement = try db.prepare("""
                    INSERT INTO service_heartbeat (runner, started_at, heartbeat_at, status) VALUES (?1, ?2, ?3, ?4)
                    ON CONFLICT (runner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, status = excluded.status
                    """)
                statement.bind(runner, at: 1)
                statement.bind(Timestamp.format(startedAt), at: 2)
                statement.bind(Timestamp.format(now), at: 3)
                statement.bind(status, at: 4)
                try statement.run()
            }
        }
    }

    package func removeHeartbeat() throws {
        try withConnection { db in
            try db.writeTransaction {
                let statement = try db.prepare("DELETE FROM service_heartbeat WHERE runner = ?1")
                statement.bind(runner, at: 1)
                try statement.run()
            }
        }
    }

    /// A heartbeat older than this means the service that wrote it is gone.
    static var heartbeatFreshness: TimeInterval { QueueLimits.heartbeatFreshness }

    package func status(now: Date) throws -> QueueStatus {
        try withConnection { db in
            try db.readTransaction {
                let counts = try Self.counts(db)
                let oldestText = try Self.oldestPendingEnqueuedAt(db)
                let next = try db.prepare("""
                    SELECT min(next_attempt_at) FROM export_tasks WHERE state = 'pending' AND next_attempt_at > ?1
                    """)
                next.bind(Timestamp.format(now), at: 1)
                let nextText = try next.step() ? next.optionalString(0) : nil
                next.reset()
                let last = try Self.lastOutcome(db, sql: "SELECT export_task_id, outcome, at, http_status, error_code, error_message FROM audit_log ORDER BY id DESC LIMIT 1")
                let lastError = try Self.lastOutcome(db, sql: """
                    SELECT export_task_id, outcome, at, http_status, error_code, error_message FROM audit_log
                    WHERE error_code IS NOT NULL OR error_message IS NOT NULL ORDER BY id DESC LIMIT 1
                    """)
                let holders = try db.prepare("SELECT runner, started_at, heartbeat_at, status FROM service_heartbeat ORDER BY runner")
                defer { holders.reset() }
                var heldBy: [QueueStatus.Holder] = []
                while try holders.step() {
                    let beat = holders.string(2)
                    let age = Timestamp.parse(beat).map { now.timeIntervalSince($0) } ?? .infinity
                    guard age < Self.heartbeatFreshness else { continue }
                    heldBy.append(.init(runner: holders.string(0), startedAt: holders.string(1), heartbeatAt: beat,
                                        secondsSinceHeartbeat: max(0, age), status: holders.optionalString(3)))
                }
                var status = QueueStatus(
                    counts: Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) }),
                    oldestPendingEnqueuedAt: oldestText,
                    oldestPendingAgeSeconds: oldestText.flatMap(Timestamp.parse).map { max(0, now.timeIntervalSince($0)) },
                    nextRetryAt: nextText, lastOutcome: last, lastError: lastError, heldBy: heldBy)
                status.auditHead = try Self.chainHead(db).map { .init(id: $0.id, hash: $0.hash) }
                return status
            }
        }
    }

    private static func lastOutcome(_ db: SQLiteConnection, sql: String) throws -> QueueStatus.LastOutcome? {
        let statement = try db.prepare(sql)
        defer { statement.reset() }
        guard try statement.step() else { return nil }
        return .init(exportTaskID: statement.string(0), outcome: statement.string(1), at: statement.string(2),
                     httpStatus: statement.optionalInt(3), errorCode: statement.optionalString(4),
                     errorMessage: statement.optionalString(5))
    }

    package func auditEntries(_ filter: AuditFilter, _ body: (AuditEntry) throws -> Void) throws {
        try withConnection { db in
            try db.readTransaction {
                let statement = try db.prepare("""
                    SELECT id, task_id, export_task_id, project_id, attempt, at, duration_ms, http_status,
                        error_code, error_message, request_id, outcome, delivery, runner, lease_lost IS NOT NULL, hash
                    FROM audit_log
                    WHERE (?1 IS NULL OR export_task_id = ?1)
                      AND (?2 IS NULL OR outcome = ?2)
                      AND (?3 IS NULL OR at >= ?3)
                      AND (?4 IS NULL OR task_id IN (SELECT id FROM export_tasks WHERE state = ?4))
                    ORDER BY id
                    """)
                defer { statement.reset() }
                statement.bind(filter.exportTaskID, at: 1)
                statement.bind(filter.outcome?.rawValue, at: 2)
                statement.bind(filter.since.map(Timestamp.format), at: 3)
                statement.bind(filter.taskState?.rawValue, at: 4)
                while try statement.step() {
                    try body(AuditEntry(
                        id: statement.int(0), taskID: statement.optionalInt(1), exportTaskID: statement.string(2),
                        projectID: statement.optionalString(3), attempt: statement.optionalInt(4), at: statement.string(5),
                        durationMilliseconds: statement.optionalInt(6), httpStatus: statement.optionalInt(7),
                        errorCode: statement.optionalString(8), errorMessage: statement.optionalString(9),
                        requestID: statement.optionalString(10), outcome: statement.string(11),
                        delivery: statement.optionalString(12), runner: statement.string(13),
                        leaseLost: statement.int(14) != 0, hash: statement.optionalString(15)))
                }
            }
        }
    }
}

extension SQLiteQueue {
    /// The audit chain's last row, for the journal.
    package func auditHead() throws -> QueueStatus.AuditHead? {
        try withConnection { db in try Self.chainHead(db).map { .init(id: $0.id, hash: $0.hash) } }
    }

    /// Walks `audit_log` in ID order, checking that IDs are dense from the archive's last
    /// checkpoint (from 1 before any prune) and that each row's hash is the chain's
    /// (``AuditChain``); stops at the first row that breaks it. `walker`: a walk of the
    /// archives to continue (`audit --verify --archive`), which must end at the checkpoint.
    /// One read transaction, so a writer appending meanwhile does not confuse it.
    package func verifyAuditChain(continuing archived: AuditVerification.Walker? = nil) throws -> AuditVerification {
        try withConnection { db in
            try db.readTransaction {
                let statement = try db.prepare(
                    "SELECT " + AuditChain.selection + ", hash FROM audit_log ORDER BY id")
                defer { statement.reset() }
                let checkpoint = ChainPosition(try Self.lastCheckpoint(db))
                var walker = archived ?? AuditVerification.Walker(after: checkpoint)
                if walker.position.lastID != checkpoint.lastID || walker.position.hash != checkpoint.hash {
                    var result = walker.result
                    result.problem = "the archives end at row \(walker.position.lastID), but the database's checkpoint is row \(checkpoint.lastID)"
                    return result
                }
                let hashColumn = Int32(AuditChain.columns.count + AuditChain.laterColumns.count)
                while try statement.step() {
                    guard walker.check(id: statement.int(0), values: AuditChain.values(of: statement),
                                       stored: statement.optionalString(hashColumn)) else { break }
                }
                return walker.result
            }
        }
    }
}
