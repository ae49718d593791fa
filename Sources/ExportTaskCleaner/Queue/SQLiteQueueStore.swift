import CSQLite
import Foundation
import Logging
import Synchronization

/// The queue in one SQLite file (WAL), shared with the tools that feed it.
///
/// One connection, serialized by a mutex. Every write runs in `BEGIN IMMEDIATE`; every
/// statement is prepared once and bound, never built from data.
///
/// `@unchecked Sendable`: the connection is only ever touched inside `lock.withLock`.
public final class SQLiteQueueStore: QueueStore, @unchecked Sendable {
    private let lock = Mutex(())
    private let db: SQLiteConnection
    /// Who writes: `host:pid`, recorded in every audit row.
    public let runner: String
    public let path: String

    /// Opens (creating when missing) and migrates the database at `path`.
    ///
    /// Throws `CleanerError.configuration` when the path cannot be used (missing directory,
    /// no permission), `CleanerError.runtime` when the file is not a usable queue (corrupt,
    /// or written by a newer release).
    public init(path: String, runner: String = Runner.current) throws {
        self.path = path
        self.runner = runner
        let db: SQLiteConnection
        do {
            db = try SQLiteConnection(path: path)
            try Schema.migrate(db)
        } catch let error as SQLiteError {
            throw Self.openingError(error, path: path)
        }
        self.db = db
    }

    private static func openingError(_ error: SQLiteError, path: String) -> CleanerError {
        switch error.primaryCode {
        case SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH:
            let directory = (path as NSString).deletingLastPathComponent
            let hint = FileManager.default.fileExists(atPath: directory.isEmpty ? "." : directory)
                ? "check that this user may read and write it and its directory"
                : "the directory \(directory) does not exist"
            return .configuration("database: cannot open \(path) for writing (\(error.message)); \(hint)")
        case SQLITE_NOTADB, SQLITE_CORRUPT:
            return .runtime("database: \(path) is not a usable SQLite database (\(error.message)); it was left untouched")
        default:
            return .runtime("database: cannot open \(path): \(error)")
        }
    }

    private func withConnection<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        try lock.withLock { _ in try body(db) }
    }

    // MARK: Feeding

    public func enqueue(_ items: [EnqueueItem], now: Date) throws -> EnqueueSummary {
        let at = Timestamp.format(now)
        return try withConnection { db in
            try db.writeTransaction {
                let insert = try db.prepare("""
                    INSERT OR IGNORE INTO export_tasks (export_task_id, project_id, instance_id, enqueued_at, next_attempt_at)
                    VALUES (?1, ?2, ?3, ?4, ?4)
                    """)
                let insertInvalid = try db.prepare("""
                    INSERT OR IGNORE INTO export_tasks
                        (export_task_id, project_id, instance_id, state, enqueued_at, next_attempt_at, finished_at)
                    VALUES (?1, ?2, ?3, 'invalid', ?4, ?4, ?4)
                    """)
                var summary = EnqueueSummary()
                for item in items {
                    let valid = ExportTaskID.isValid(item.exportTaskID)
                    let statement = valid ? insert : insertInvalid
                    statement.bind(item.exportTaskID, at: 1)
                    statement.bind(item.projectID, at: 2)
                    statement.bind(item.instanceID, at: 3)
                    statement.bind(at, at: 4)
                    try statement.run()
                    let inserted = db.changes == 1
                    if valid {
                        if inserted { summary.queued += 1 } else { summary.alreadyQueued += 1 }
                        continue
                    }
                    summary.invalid.append(.init(
                        exportTaskID: item.exportTaskID, line: item.line,
                        problem: ExportTaskID.problem(with: item.exportTaskID) ?? "invalid"))
                    if inserted {
                        try insertAudit(db, taskID: db.lastInsertRowID, exportTaskID: item.exportTaskID,
                                        projectID: item.projectID, record: AuditRecord(outcome: .invalid, at: now))
                    }
                }
                return summary
            }
        }
    }

    // MARK: Working

    public func claim(limit: Int, leaseToken: String, leaseUntil: Date, now: Date) throws -> [ClaimedTask] {
        guard limit > 0 else { return [] }
        return try withConnection { db in
            try db.writeTransaction {
                let statement = try db.prepare("""
                    UPDATE export_tasks SET state = 'in_progress', lease_token = ?1, lease_expires_at = ?2
                    WHERE id IN (
                        SELECT id FROM export_tasks
                        WHERE state = 'pending' AND next_attempt_at <= ?3
                        ORDER BY next_attempt_at, id LIMIT ?4)
                    RETURNING id, export_task_id, project_id, instance_id, attempts
                    """)
                defer { statement.reset() }
                statement.bind(leaseToken, at: 1)
                statement.bind(Timestamp.format(leaseUntil), at: 2)
                statement.bind(Timestamp.format(now), at: 3)
                statement.bind(limit, at: 4)
                var tasks: [ClaimedTask] = []
                while try statement.step() {
                    tasks.append(ClaimedTask(
                        id: statement.int(0), exportTaskID: statement.string(1),
                        projectID: statement.optionalString(2), instanceID: statement.optionalString(3),
                        attempts: statement.int(4), leaseToken: leaseToken))
                }
                return tasks.sorted { $0.id < $1.id }
            }
        }
    }

    public func apply(_ transitions: [TaskTransition]) throws -> [Bool] {
        guard !transitions.isEmpty else { return [] }
        return try withConnection { db in
            try db.writeTransaction {
                let withResponse = try db.prepare("""
                    UPDATE export_tasks SET state = ?1, next_attempt_at = coalesce(?2, next_attempt_at),
                        finished_at = ?3, lease_token = NULL, lease_expires_at = NULL,
                        attempts = ?4, last_http_status = ?5, last_error_code = ?6,
                        last_error_message = ?7, last_request_id = ?8
                    WHERE id = ?9 AND lease_token = ?10 AND state = 'in_progress'
                    """)
                let withoutRequest = try db.prepare("""
                    UPDATE export_tasks SET state = ?1, next_attempt_at = coalesce(?2, next_attempt_at),
                        finished_at = ?3, lease_token = NULL, lease_expires_at = NULL
                    WHERE id = ?9 AND lease_token = ?10 AND state = 'in_progress'
                    """)
                var applied: [Bool] = []
                applied.reserveCapacity(transitions.count)
                for transition in transitions {
                    let record = transition.audit
                    let statement = record.hasRequest ? withResponse : withoutRequest
                    switch transition.change {
                    case .finish(let state):
                        statement.bind(state.rawValue, at: 1)
                        statement.bind(nil as String?, at: 2)
                        statement.bind(Timestamp.format(record.at), at: 3)
                    case .retry(let due):
                        statement.bind(TaskState.pending.rawValue, at: 1)
                        statement.bind(Timestamp.format(due), at: 2)
                        statement.bind(nil as String?, at: 3)
                    case .release:
                        statement.bind(TaskState.pending.rawValue, at: 1)
                        statement.bind(nil as String?, at: 2)
                        statement.bind(nil as String?, at: 3)
                    }
                    if record.hasRequest {
                        statement.bind(transition.attempts, at: 4)
                        statement.bind(record.httpStatus, at: 5)
                        statement.bind(record.errorCode, at: 6)
                        statement.bind(record.errorMessage, at: 7)
                        statement.bind(record.requestID, at: 8)
                    }
                    statement.bind(transition.task.id, at: 9)
                    statement.bind(transition.task.leaseToken, at: 10)
                    try statement.run()
                    let held = db.changes == 1
                    applied.append(held)
                    if held {
                        try insertAudit(db, taskID: transition.task.id, exportTaskID: transition.task.exportTaskID,
                                        projectID: transition.task.projectID, record: record)
                    }
                }
                return applied
            }
        }
    }

    public func renewLeases(tokens: [String], until: Date) throws {
        guard !tokens.isEmpty else { return }
        try withConnection { db in
            try db.writeTransaction {
                let statement = try db.prepare("""
                    UPDATE export_tasks SET lease_expires_at = ?1 WHERE state = 'in_progress' AND lease_token = ?2
                    """)
                for token in tokens {
                    statement.bind(Timestamp.format(until), at: 1)
                    statement.bind(token, at: 2)
                    try statement.run()
                }
            }
        }
    }

    public func expireLeases(now: Date) throws -> [ExpiredLease] {
        try withConnection { db in
            try db.writeTransaction {
                let select = try db.prepare("""
                    SELECT id, export_task_id, project_id, lease_token FROM export_tasks
                    WHERE state = 'in_progress' AND (lease_expires_at IS NULL OR lease_expires_at < ?1)
                    """)
                select.bind(Timestamp.format(now), at: 1)
                var expired: [(lease: ExpiredLease, projectID: String?)] = []
                while try select.step() {
                    expired.append((ExpiredLease(id: select.int(0), exportTaskID: select.string(1),
                                                 leaseToken: select.optionalString(3)), select.optionalString(2)))
                }
                select.reset()
                let update = try db.prepare("""
                    UPDATE export_tasks SET state = 'pending', lease_token = NULL, lease_expires_at = NULL
                    WHERE id = ?1 AND state = 'in_progress' AND lease_token IS ?2
                    """)
                for (lease, projectID) in expired {
                    update.bind(lease.id, at: 1)
                    update.bind(lease.leaseToken, at: 2)
                    try update.run()
                    try insertAudit(db, taskID: lease.id, exportTaskID: lease.exportTaskID, projectID: projectID,
                                    record: AuditRecord(outcome: .leaseExpired, at: now))
                }
                return expired.map(\.lease)
            }
        }
    }

    // MARK: Operating

    public func requeue(_ selection: RequeueSelection, now: Date) throws -> RequeueSummary {
        if case .state(let state) = selection, !state.isFinished {
            throw CleanerError.configuration(
                "--state: only finished tasks can be requeued (\(TaskState.finished.map(\.rawValue).joined(separator: ", "))), not \(state.rawValue)")
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
                    for id in ids {
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
                    UPDATE export_tasks SET state = 'pending', attempts = 0, next_attempt_at = ?1,
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

    public func counts() throws -> [TaskState: Int] {
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

    public func nextDue() throws -> Date? {
        try withConnection { db in
            let statement = try db.prepare("SELECT min(next_attempt_at) FROM export_tasks WHERE state = 'pending'")
            defer { statement.reset() }
            return try statement.step() ? statement.optionalString(0).flatMap(Timestamp.parse) : nil
        }
    }

    public func hasUnfinishedTasks() throws -> Bool {
        try withConnection { db in
            try db.scalarInt("SELECT EXISTS (SELECT 1 FROM export_tasks WHERE state IN ('pending', 'in_progress'))") == 1
        }
    }

    public func dataVersion() throws -> Int {
        try withConnection { db in try db.scalarInt("PRAGMA data_version") ?? 0 }
    }

    public func heartbeat(startedAt: Date, status: String, now: Date) throws {
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

    public func removeHeartbeat() throws {
        try withConnection { db in
            try db.writeTransaction {
                let statement = try db.prepare("DELETE FROM service_heartbeat WHERE runner = ?1")
                statement.bind(runner, at: 1)
                try statement.run()
            }
        }
    }

    /// A heartbeat older than this means the service that wrote it is gone.
    public static let heartbeatFreshness: TimeInterval = 30

    public func status(now: Date) throws -> QueueStatus {
        try withConnection { db in
            try db.readTransaction {
                let counts = try Self.counts(db)
                let oldest = try db.prepare("SELECT min(enqueued_at) FROM export_tasks WHERE state = 'pending'")
                let oldestText = try oldest.step() ? oldest.optionalString(0) : nil
                oldest.reset()
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
                return QueueStatus(
                    counts: Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) }),
                    oldestPendingEnqueuedAt: oldestText,
                    oldestPendingAgeSeconds: oldestText.flatMap(Timestamp.parse).map { max(0, now.timeIntervalSince($0)) },
                    nextRetryAt: nextText, lastOutcome: last, lastError: lastError, heldBy: heldBy)
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

    public func auditEntries(_ filter: AuditFilter, _ body: (AuditEntry) throws -> Void) throws {
        try withConnection { db in
            try db.readTransaction {
                let statement = try db.prepare("""
                    SELECT id, task_id, export_task_id, project_id, attempt, at, duration_ms, http_status,
                        error_code, error_message, request_id, outcome, delivery, runner
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
                        delivery: statement.optionalString(12), runner: statement.string(13)))
                }
            }
        }
    }

    // MARK: Audit rows

    private func insertAudit(_ db: SQLiteConnection, taskID: Int, exportTaskID: String, projectID: String?,
                             record: AuditRecord) throws {
        let statement = try db.prepare("""
            INSERT INTO audit_log (task_id, export_task_id, project_id, attempt, at, duration_ms, http_status,
                error_code, error_message, request_id, outcome, delivery, runner)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
            """)
        statement.bind(taskID, at: 1)
        statement.bind(exportTaskID, at: 2)
        statement.bind(projectID, at: 3)
        statement.bind(record.attempt, at: 4)
        statement.bind(Timestamp.format(record.at), at: 5)
        statement.bind(record.durationMilliseconds, at: 6)
        statement.bind(record.httpStatus, at: 7)
        statement.bind(record.errorCode, at: 8)
        statement.bind(record.errorMessage, at: 9)
        statement.bind(record.requestID, at: 10)
        statement.bind(record.outcome.rawValue, at: 11)
        statement.bind(record.delivery?.rawValue, at: 12)
        statement.bind(runner, at: 13)
        try statement.run()
    }
}
