import FoundationEssentials
import Logging
import PostgresNIO

// Retention on PostgreSQL (docs/database.md, "Retention"): the checkpoints, a batch planned
// by ``PruneCut`` in one snapshot, and its commit in a short transaction under the audit
// chain's advisory lock (``PostgresAuditRows``), as on SQLite.

extension PostgresQueueStore {
    private static let checkpointColumns = """
        seq, file, first_id, last_id, last_hash, sha256, rows, tasks, \(PostgresText.timestamp("archived_at")), runner
        """

    private typealias CheckpointRow = (Int, String, Int, Int, String, String, Int, Int, String, String)

    private static func checkpoint(_ row: CheckpointRow) -> ArchiveCheckpoint {
        ArchiveCheckpoint(sequence: row.0, file: row.1, firstID: row.2, lastID: row.3, lastHash: row.4, sha256: row.5,
                          rows: row.6, tasks: row.7, archivedAt: row.8, runner: row.9)
    }

    /// The last checkpoint, or nil before any prune.
    static func lastCheckpoint(_ connection: PostgresConnection, logger: Logger) async throws -> ArchiveCheckpoint? {
        var last: ArchiveCheckpoint?
        let rows = try await connection.query(
            "SELECT \(unescaped: checkpointColumns) FROM audit_archive ORDER BY seq DESC LIMIT 1", logger: logger)
        for try await row in rows.decode(CheckpointRow.self) { last = checkpoint(row) }
        return last
    }

    public func archiveCheckpoints() async throws -> [ArchiveCheckpoint] {
        try await snapshot { connection, logger in
            var result: [ArchiveCheckpoint] = []
            let rows = try await connection.query(
                "SELECT \(unescaped: Self.checkpointColumns) FROM audit_archive ORDER BY seq", logger: logger)
            for try await row in rows.decode(CheckpointRow.self) { result.append(Self.checkpoint(row)) }
            return result
        }
    }

    public func lastArchiveCheckpoint() async throws -> ArchiveCheckpoint? {
        let logger = logger
        return try await read { connection in try await Self.lastCheckpoint(connection, logger: logger) }
    }

    /// Records `checkpoint` (its file already written and synced) and deletes what it holds,
    /// in one transaction: the planned tasks' rows locked first (in ID order, as the service's
    /// transactions take task rows before the chain's lock), then the chain's advisory lock,
    /// the checkpoint, the audit rows, the carries, and each task that has no audit row left
    /// and is still as planned. Does nothing when another prune moved the checkpoint first.
    public func commitPrune(_ plan: PrunePlan, checkpoint: ArchiveCheckpoint) async throws -> PruneCommit {
        let logger = logger
        let clock = ContinuousClock()
        // `archived_at` is a time here: text that is none (another caller's) records the commit's.
        let archivedAt = Timestamp.parse(checkpoint.archivedAt).map(Timestamp.format) ?? Timestamp.format(Date())
        // The hold that matters is the chain's lock: every service's audit append waits for it.
        let (deleted, locked): (Int?, ContinuousClock.Instant) = try await write { connection in
            let ids = plan.tasks.map(\.id).sorted()
            if !ids.isEmpty {
                try await connection.query("SELECT id FROM export_tasks WHERE id = ANY(\(ids)) ORDER BY id FOR UPDATE", logger: logger)
            }
            try await connection.query("SELECT pg_advisory_xact_lock(\(PostgresAuditRows.lockKey))", logger: logger)
            let locked = clock.now
            guard ChainPosition(try await Self.lastCheckpoint(connection, logger: logger)) == plan.after else { return (nil, locked) }
            try await connection.query("""
                INSERT INTO audit_archive (seq, file, first_id, last_id, last_hash, sha256, rows, tasks, archived_at, runner)
                VALUES (\(checkpoint.sequence), \(PostgresText.clean(checkpoint.file)), \(checkpoint.firstID),
                    \(checkpoint.lastID), \(PostgresText.clean(checkpoint.lastHash)), \(PostgresText.clean(checkpoint.sha256)),
                    \(checkpoint.rows), \(checkpoint.tasks), \(archivedAt)::timestamptz,
                    \(PostgresText.clean(checkpoint.runner)))
                """, logger: logger)
            try await connection.query(
                "DELETE FROM audit_log WHERE id BETWEEN \(checkpoint.firstID) AND \(checkpoint.lastID)", logger: logger)
            try await Self.carry(connection, plan.carries, logger: logger)
            guard !plan.tasks.isEmpty else { return (0, locked) }
            struct Planned: Encodable {
                var id: Int
                var export_task_id: String
                var state: String
                var finished_at: String?
            }
            let planned = try PostgresText.json(plan.tasks.map {
                Planned(id: $0.id, export_task_id: $0.exportTaskID, state: $0.state, finished_at: $0.finishedAt)
            })
            var count = 0
            let gone = try await connection.query("""
                WITH gone AS (
                    DELETE FROM export_tasks t
                    USING jsonb_to_recordset(\(planned)::jsonb) AS p(id bigint, export_task_id text, state text, finished_at text)
                    WHERE t.id = p.id AND t.export_task_id = p.export_task_id AND t.state = p.state
                      -- The plan read finished_at to the millisecond; another tool may write microseconds.
                      AND date_trunc('milliseconds', t.finished_at) IS NOT DISTINCT FROM p.finished_at::timestamptz
                      AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.export_task_id = t.export_task_id AND a.task_id = t.id)
                    RETURNING t.id
                ), forgotten AS (
                    DELETE FROM audit_archive_carry WHERE task_id IN (SELECT id FROM gone) RETURNING 1
                )
                SELECT count(*) FROM gone
                """, logger: logger)
            for try await found in gone.decode(Int.self) { count = found }
            return (count, locked)
        }
        return PruneCommit(committed: deleted != nil, tasksDeleted: deleted ?? 0, lockHold: clock.now - locked)
    }

    /// Records what each leaving task's archived rows counted, after what earlier batches
    /// recorded for it (``PruneCarry``).
    private static func carry(_ connection: PostgresConnection, _ carries: [PruneCarry], logger: Logger) async throws {
        guard !carries.isEmpty else { return }
        var earlier: [Int: PruneCarry] = [:]
        let ids = carries.map(\.taskID)
        let rows = try await connection.query("""
            SELECT task_id, export_task_id, finals, final_outcome, attempts, restarted FROM audit_archive_carry
            WHERE task_id = ANY(\(ids))
            """, logger: logger)
        for try await (id, exportTaskID, finals, outcome, attempts, restarted)
            in rows.decode((Int, String, Int?, String?, String?, Int?).self) {
            var found = PruneCarry(taskID: id, exportTaskID: exportTaskID)
            found.finals = min(max(finals ?? 0, 0), QueueLimits.maximumAttempts)
            found.finalOutcome = outcome
            found.attempts = PruneCarry.attempts(attempts)
            found.restarted = restarted == 1
            earlier[id] = found
        }
        struct Carried: Encodable {
            var task_id: Int
            var export_task_id: String
            var finals: Int
            var final_outcome: String?
            var attempts: String
            var restarted: Int
        }
        let merged = try PostgresText.json(carries.map { carry in
            let merged = carry.after(earlier[carry.taskID])
            return Carried(task_id: merged.taskID, export_task_id: PostgresText.clean(merged.exportTaskID),
                           finals: merged.finals, final_outcome: merged.finalOutcome.map(PostgresText.clean),
                           attempts: merged.attemptsText, restarted: merged.restarted ? 1 : 0)
        })
        try await connection.query("""
            INSERT INTO audit_archive_carry (task_id, export_task_id, finals, final_outcome, attempts, restarted)
            SELECT r.task_id, r.export_task_id, r.finals, r.final_outcome, r.attempts, r.restarted
            FROM jsonb_to_recordset(\(merged)::jsonb) AS r(task_id bigint, export_task_id text, finals bigint,
                final_outcome text, attempts text, restarted integer)
            ON CONFLICT (task_id) DO UPDATE SET export_task_id = EXCLUDED.export_task_id, finals = EXCLUDED.finals,
                final_outcome = EXCLUDED.final_outcome, attempts = EXCLUDED.attempts, restarted = EXCLUDED.restarted
            """, logger: logger)
    }

    /// The queue's tables in the role's default schema, indexes and TOAST included, in
    /// bytes: what the metrics show as the database's size on PostgreSQL (docs/operations.md,
    /// "Retention"). Space freed by a prune is reused once (auto)vacuum has been.
    public func databaseSize() async throws -> Int? {
        let logger = logger
        return try await read { connection in
            var size: Int?
            let rows = try await connection.query("""
                SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_catalog.pg_class c
                WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
                  AND c.relkind = 'r'
                  AND c.relname IN ('export_tasks', 'audit_log', 'audit_archive', 'audit_archive_carry', 'service_heartbeat')
                """, logger: logger)
            for try await found in rows.decode(Int.self) { size = found }
            return size
        }
    }
}
