import CSQLite
import FoundationEssentials
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
    /// What opening changed in the files' modes and groups (``QueueFiles``), for the log.
    public let repairs: [QueueFiles.Repair]

    /// What a command opens the queue for.
    public enum Purpose: Sendable {
        /// `status`, `audit`: read only. The file must exist and be a queue of this release;
        /// it is never created, migrated or switched to WAL.
        case inspect
        /// `run`, `enqueue`, `requeue`: created when missing (mode 0660) and migrated; another
        /// application's database is refused untouched. (A full integrity check, `PRAGMA
        /// quick_check`, would take 9 to 10 s at a million tasks: too slow for every start.
        /// Corruption shows itself as `SQLITE_CORRUPT` instead, which stops the service.)
        case write
    }

    /// Opens the database at `path` for `purpose`.
    ///
    /// Throws `CleanerError.configuration` when the path cannot be used (missing directory,
    /// no permission, another application's file, no queue yet to inspect),
    /// `CleanerError.runtime` when the file is not a usable queue (corrupt, or written by a
    /// newer release) or a feeding tool's `-wal`/`-shm` is not writable here.
    public init(path: String, runner: String = Runner.current, purpose: Purpose = .write) throws {
        self.path = path
        self.runner = runner
        let db: SQLiteConnection
        var repairs: [QueueFiles.Repair] = []
        if purpose == .inspect {
            guard FileManager.default.fileExists(atPath: path) else {
                throw CleanerError.configuration("database: there is no queue at \(path) yet (`run` or `enqueue` creates it)")
            }
        } else {
            if QueueFiles.createIfMissing(path) { repairs.append(.init(path: path, change: "created with mode 0660")) }
            try QueueFiles.checkAccess(databasePath: path)
        }
        do {
            db = try SQLiteConnection(path: path, mode: purpose == .inspect ? .readOnly : .readWriteCreate)
            if purpose == .inspect {
                try Schema.check(db)
            } else {
                // Nothing is changed in another application's file: not even its modes.
                try Schema.refuseForeign(db)
                repairs += QueueFiles.repair(databasePath: path)
                try Schema.migrate(db)
                try db.useWAL()
            }
        } catch let error as SQLiteError {
            throw Self.openingError(error, path: path, writing: purpose != .inspect)
        }
        self.db = db
        self.repairs = repairs
    }

    private static func openingError(_ error: SQLiteError, path: String, writing: Bool) -> CleanerError {
        switch error.primaryCode {
        case SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH:
            let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? ""
            let hint = FileManager.default.fileExists(atPath: directory.isEmpty ? "." : directory)
                ? "check that this user may read and write it and its directory"
                : "the directory \(directory) does not exist"
            return .configuration("database: cannot open \(path)\(writing ? " for writing" : "") (\(error.message)); \(hint)")
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

    /// Valid IDs go in by `enqueueChunk` rows per statement: one `sqlite3_step` per row costs
    /// as much again as the insert itself (cursors opened, seeks from the root, allocations).
    static let enqueueChunk = 250

    /// `INSERT OR IGNORE … VALUES (?4, ?1, ?2, ?3, ?3), (?5, ?1, ?2, ?3, ?3), …`: `enqueueChunk`
    /// IDs (from `?4`) sharing one project (`?1`), instance (`?2`) and time (`?3`). SQLite
    /// inserts multi-row VALUES in the order written, so row IDs follow the input.
    private static let chunkInsertSQL = """
        INSERT OR IGNORE INTO export_tasks (export_task_id, project_id, instance_id, enqueued_at, next_attempt_at)
        VALUES \((0..<enqueueChunk).map { "(?\($0 + 4), ?1, ?2, ?3, ?3)" }.joined(separator: ", "))
        """

    /// Page cache for a large enqueue (KiB): the unique index takes IDs in input order, that is
    /// at random places, and a small cache spills and re-reads its pages on every insert.
    private static func enqueueCacheKiB(items: Int) -> Int {
        min(128 * 1024, items / 1024 * 64)
    }

    public func enqueue(_ items: [EnqueueItem], now: Date) throws -> EnqueueSummary {
        var iterator = items.makeIterator()
        return try enqueue(expectedCount: items.count, now: now) { iterator.next() }
    }

    /// `enqueue` for items made as they are read (one transaction all the same), so that a
    /// long list is never held in memory twice: `next` is called until it returns nil.
    /// `expectedCount` sizes the page cache. (A closure rather than a generic sequence: this
    /// module's generics are not specialized for callers in others.)
    public func enqueue(expectedCount: Int, now: Date, next: () throws -> EnqueueItem?) throws -> EnqueueSummary {
        let at = Timestamp.format(now)
        return try withConnection { db in
            let cacheKiB = Self.enqueueCacheKiB(items: expectedCount)
            var savedCacheSize: Int?
            if cacheKiB > 2048 {
                savedCacheSize = try db.scalarInt("PRAGMA cache_size")
                try db.execute("PRAGMA cache_size = -\(cacheKiB)")
            }
            defer {
                if let savedCacheSize { try? db.execute("PRAGMA cache_size = \(savedCacheSize)") }
            }
            return try db.writeTransaction {
                var writer = try EnqueueWriter(db: db, at: at, now: now, store: self)
                while let item = try next() {
                    try writer.add(item)
                }
                try writer.flush()
                return writer.summary
            }
        }
    }

    /// Inserts in input order: runs of valid IDs for one project and instance by the chunk, the
    /// rest (a shorter run's IDs, invalid IDs) row by row.
    private struct EnqueueWriter {
        let db: SQLiteConnection
        let at: String
        let now: Date
        let store: SQLiteQueueStore
        let insert: SQLiteStatement
        let insertInvalid: SQLiteStatement
        var run: [EnqueueItem] = []
        var summary = EnqueueSummary()

        init(db: SQLiteConnection, at: String, now: Date, store: SQLiteQueueStore) throws {
            self.db = db
            self.at = at
            self.now = now
            self.store = store
            insert = try db.prepare("""
                INSERT OR IGNORE INTO export_tasks (export_task_id, project_id, instance_id, enqueued_at, next_attempt_at)
                VALUES (?1, ?2, ?3, ?4, ?4)
                """)
            insertInvalid = try db.prepare("""
                INSERT OR IGNORE INTO export_tasks
                    (export_task_id, project_id, instance_id, state, enqueued_at, next_attempt_at, finished_at)
                VALUES (?1, ?2, ?3, 'invalid', ?4, ?4, ?4)
                """)
            run.reserveCapacity(SQLiteQueueStore.enqueueChunk)
        }

        mutating func add(_ item: EnqueueItem) throws {
            guard ExportTaskID.isValid(item.exportTaskID) else {
                try flush()
                try insertOne(item, valid: false)
                return
            }
            if let first = run.first, first.projectID != item.projectID || first.instanceID != item.instanceID {
                try flush()
            }
            run.append(item)
            if run.count == SQLiteQueueStore.enqueueChunk {
                let statement = try db.prepare(SQLiteQueueStore.chunkInsertSQL)
                statement.bind(item.projectID, at: 1)
                statement.bind(item.instanceID, at: 2)
                statement.bind(at, at: 3)
                for (offset, queued) in run.enumerated() {
                    statement.bind(queued.exportTaskID, at: Int32(offset + 4))
                }
                try statement.run()
                let inserted = db.changes
                summary.queued += inserted
                summary.alreadyQueued += run.count - inserted
                run.removeAll(keepingCapacity: true)
            }
        }

        /// Writes a run shorter than a chunk, row by row.
        mutating func flush() throws {
            for item in run {
                try insertOne(item, valid: true)
            }
            run.removeAll(keepingCapacity: true)
        }

        private mutating func insertOne(_ item: EnqueueItem, valid: Bool) throws {
            let statement = valid ? insert : insertInvalid
            // An invalid ID is kept as a record of what was fed, but bounded: the audit log
            // is append-only, so a huge one would stay for ever.
            let exportTaskID = valid ? item.exportTaskID : ExportTaskID.recordable(item.exportTaskID)
            statement.bind(exportTaskID, at: 1)
            statement.bind(item.projectID, at: 2)
            statement.bind(item.instanceID, at: 3)
            statement.bind(at, at: 4)
            try statement.run()
            let inserted = db.changes == 1
            if valid {
                if inserted { summary.queued += 1 } else { summary.alreadyQueued += 1 }
                return
            }
            summary.invalid.append(.init(
                exportTaskID: exportTaskID, line: item.line,
                problem: ExportTaskID.problem(with: item.exportTaskID) ?? "invalid"))
            if inserted {
                try store.insertAudit(db, taskID: db.lastInsertRowID, exportTaskID: exportTaskID,
                                      projectID: item.projectID, record: AuditRecord(outcome: .invalid, at: now))
            }
        }
    }

    // MARK: Working

    /// Claims of at most this many tasks read first and then lease row by row; larger ones run
    /// as one statement.
    static let smallClaim = 8

    public func claim(limit: Int, leaseToken: String, leaseUntil: Date, now: Date) throws -> [ClaimedTask] {
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

    /// One statement: cheapest per task for a large claim, but SQLite builds four temporary
    /// tables for it (the IN list, RETURNING, …), a fixed cost a claim of one task pays in full.
    private func claimAtOnce(_ db: SQLiteConnection, limit: Int, leaseToken: String, leaseUntil: Date,
                             now: Date) throws -> [ClaimedTask] {
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
            tasks.append(Self.claimedTask(statement, leaseToken: leaseToken))
        }
        return tasks
    }

    /// A plain SELECT, then an UPDATE by row ID per task, in the same write transaction so
    /// nothing changes in between: no temporary tables.
    private func claimRowByRow(_ db: SQLiteConnection, limit: Int, leaseToken: String, leaseUntil: Date,
                               now: Date) throws -> [ClaimedTask] {
        let select = try db.prepare("""
            SELECT id, export_task_id, project_id, instance_id, attempts FROM export_tasks
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
            UPDATE export_tasks SET state = 'in_progress', lease_token = ?1, lease_expires_at = ?2 WHERE id = ?3
            """)
        let until = Timestamp.format(leaseUntil)
        for task in tasks {
            lease.bind(leaseToken, at: 1)
            lease.bind(until, at: 2)
            lease.bind(task.id, at: 3)
            try lease.run()
        }
        return tasks
    }

    /// Bounds `attempts` as read (another tool may write any integer), so counting on from it
    /// cannot overflow; far above any `retry.max_attempts`.
    static let maximumAttempts = 1_000_000

    /// A claimed row (`id, export_task_id, project_id, instance_id, attempts`), checked: other
    /// tools write these columns with plain SQL, so a value that is not text (a BLOB `x'2e2e'`
    /// reads as `..`) or breaks ``IdentifierRule`` makes the task's ``ClaimedTask/problem``.
    private static func claimedTask(_ row: SQLiteStatement, leaseToken: String) -> ClaimedTask {
        let columns: [(Int32, String, Bool)] = [(1, "export_task_id", false), (2, "project_id", true), (3, "instance_id", true)]
        let nonText = columns.compactMap { column, name, nullable in
            row.isText(column) || (nullable && row.isNull(column)) ? nil : name
        }
        var task = ClaimedTask(id: row.int(0), exportTaskID: row.string(1), projectID: row.optionalString(2),
                               instanceID: row.optionalString(3), attempts: min(max(0, row.int(4)), Self.maximumAttempts), leaseToken: leaseToken)
        task.problem = ClaimedTask.problem(exportTaskID: task.exportTaskID, projectID: task.projectID,
                                           instanceID: task.instanceID, nonText: nonText)
        return task
    }

    public func apply(_ transitions: [TaskTransition]) throws -> [Bool] {
        guard !transitions.isEmpty else { return [] }
        return try withConnection { db in
            try db.writeTransaction {
                var audit = AuditRows(runner: runner)
                let applied = Set(transitions.map(\.task.id)).count == transitions.count
                    ? try applyBatched(transitions, db)
                    : try applyOneByOne(transitions, db)
                for (transition, held) in zip(transitions, applied) where held {
                    audit.append(taskID: transition.task.id, exportTaskID: transition.task.exportTaskID,
                                 projectID: transition.task.projectID, record: transition.audit)
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
    fileprivate static let statementBatchSizes = [32, 16, 8, 4, 2, 1]

    /// `UPDATE … FROM (VALUES …) RETURNING id` for `size` transitions of 11 values each:
    /// id, state, next_attempt_at, finished_at, attempts, last_http_status, last_error_code,
    /// last_error_message, last_request_id, lease token, and whether a request was sent
    /// (without one, `attempts` and the `last_*` columns keep their values).
    private static let applySQL: [String] = statementBatchSizes.map { size in
        let rows = (0..<size).map { row in
            "(" + (1...11).map { "?\(row * 11 + $0)" }.joined(separator: ", ") + ")"
        }
        return """
            UPDATE export_tasks SET state = v.column2, next_attempt_at = coalesce(v.column3, export_tasks.next_attempt_at),
                finished_at = v.column4, lease_token = NULL, lease_expires_at = NULL,
                attempts = CASE WHEN v.column11 THEN v.column5 ELSE export_tasks.attempts END,
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
        var next = 0
        while next < transitions.count {
            let choice = Self.statementBatchSizes.firstIndex { $0 <= transitions.count - next } ?? Self.statementBatchSizes.count - 1
            let size = Self.statementBatchSizes[choice]
            let statement = try db.prepare(Self.applySQL[choice])
            defer { statement.reset() }
            for offset in 0..<size {
                let transition = transitions[next + offset]
                let record = transition.audit
                let base = Int32(offset * 11)
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
            }
            while try statement.step() {
                held.insert(statement.int(0))
            }
            next += size
        }
        return transitions.map { held.contains($0.task.id) }
    }

    /// One statement per transition, in order: for a batch naming a task twice, where the
    /// first transition wins and the second finds the lease gone.
    private func applyOneByOne(_ transitions: [TaskTransition], _ db: SQLiteConnection) throws -> [Bool] {
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
            let (state, due, finishedAt) = Self.columns(of: transition)
            statement.bind(state, at: 1)
            statement.bind(due, at: 2)
            statement.bind(finishedAt, at: 3)
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
            applied.append(db.changes == 1)
        }
        return applied
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

    /// Audit rows gathered in a transaction and written at its end in multi-row INSERTs (32,
    /// 16, … 1 rows each), in the order appended: a statement per row costs as much again as
    /// the insert itself.
    private struct AuditRows {
        private struct Row {
            var taskID: Int
            var exportTaskID: String
            var projectID: String?
            var record: AuditRecord
        }

        private static let columnsPerRow = 12
        private static let chunkSizes = SQLiteQueueStore.statementBatchSizes
        /// `?1` is the runner, shared; row `r` takes `?(2 + 12r)` to `?(13 + 12r)`.
        private static let sql: [String] = chunkSizes.map { size in
            let rows = (0..<size).map { row in
                let base = 2 + columnsPerRow * row
                return "(" + (0..<columnsPerRow).map { "?\(base + $0)" }.joined(separator: ", ") + ", ?1)"
            }
            return "INSERT INTO audit_log (task_id, export_task_id, project_id, attempt, at, duration_ms, http_status, "
                + "error_code, error_message, request_id, outcome, delivery, runner) VALUES "
                + rows.joined(separator: ", ")
        }

        let runner: String
        private var rows: [Row] = []

        init(runner: String) {
            self.runner = runner
        }

        mutating func append(taskID: Int, exportTaskID: String, projectID: String?, record: AuditRecord) {
            rows.append(Row(taskID: taskID, exportTaskID: exportTaskID, projectID: projectID, record: record))
        }

        func write(_ db: SQLiteConnection) throws {
            var next = 0
            while next < rows.count {
                let choice = Self.chunkSizes.firstIndex { $0 <= rows.count - next } ?? Self.chunkSizes.count - 1
                let size = Self.chunkSizes[choice]
                let statement = try db.prepare(Self.sql[choice])
                statement.bind(runner, at: 1)
                for offset in 0..<size {
                    let row = rows[next + offset]
                    let record = row.record
                    let base = Int32(2 + Self.columnsPerRow * offset)
                    statement.bind(row.taskID, at: base)
                    statement.bind(row.exportTaskID, at: base + 1)
                    statement.bind(row.projectID, at: base + 2)
                    statement.bind(record.attempt, at: base + 3)
                    statement.bind(Timestamp.format(record.at), at: base + 4)
                    statement.bind(record.durationMilliseconds, at: base + 5)
                    statement.bind(record.httpStatus, at: base + 6)
                    statement.bind(record.errorCode, at: base + 7)
                    statement.bind(record.errorMessage, at: base + 8)
                    statement.bind(record.requestID, at: base + 9)
                    statement.bind(record.outcome.rawValue, at: base + 10)
                    statement.bind(record.delivery?.rawValue, at: base + 11)
                }
                try statement.run()
                next += size
            }
        }
    }

    /// One audit row, through the same statement and bindings as a batch of them.
    fileprivate func insertAudit(_ db: SQLiteConnection, taskID: Int, exportTaskID: String, projectID: String?,
                                 record: AuditRecord) throws {
        var rows = AuditRows(runner: runner)
        rows.append(taskID: taskID, exportTaskID: exportTaskID, projectID: projectID, record: record)
        try rows.write(db)
    }
}
