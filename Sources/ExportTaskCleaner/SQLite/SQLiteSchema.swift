/// The database schema, versioned by `PRAGMA user_version` and migrated forward on open.
///
/// Each migration runs in its own `BEGIN IMMEDIATE` transaction together with the version bump,
/// so two processes opening a new file at once cannot both migrate it. A file whose version is
/// newer than `SQLiteSchema.currentVersion` was written by a newer release and is refused untouched.
enum SQLiteSchema {
    static let now = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

    /// Migration `n` (0-based) takes the file from version `n` to version `n + 1`.
    static let migrations: [String] = [
        """
        CREATE TABLE export_tasks (
            id INTEGER PRIMARY KEY,
            export_task_id TEXT NOT NULL,
            project_id TEXT,
            instance_id TEXT,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                ('pending', 'in_progress', 'deleted', 'not_found', 'forbidden', 'rejected', 'invalid', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            enqueued_at TEXT NOT NULL DEFAULT (\(now)),
            next_attempt_at TEXT NOT NULL DEFAULT (\(now)),
            finished_at TEXT,
            last_http_status INTEGER,
            last_error_code TEXT,
            last_error_message TEXT,
            last_request_id TEXT,
            lease_token TEXT,
            lease_expires_at TEXT
        );
        -- One task per (project, export task ID); NULL stands for the configured project.
        CREATE UNIQUE INDEX export_tasks_unique ON export_tasks (ifnull(project_id, ''), export_task_id);
        -- The claim: pending tasks in due order. Also serves counts per state and lease scans.
        CREATE INDEX export_tasks_due ON export_tasks (state, next_attempt_at);

        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            task_id INTEGER,
            export_task_id TEXT NOT NULL,
            project_id TEXT,
            attempt INTEGER,
            at TEXT NOT NULL DEFAULT (\(now)),
            duration_ms INTEGER,
            http_status INTEGER,
            error_code TEXT,
            error_message TEXT,
            request_id TEXT,
            outcome TEXT NOT NULL CHECK (outcome IN
                ('deleted', 'not_found', 'forbidden', 'rejected', 'retry', 'failed', 'auth_refused',
                 'invalid', 'requeued', 'lease_expired', 'released')),
            delivery TEXT CHECK (delivery IN ('answered', 'unknown', 'not_sent')),
            runner TEXT NOT NULL
        );
        CREATE INDEX audit_log_task ON audit_log (export_task_id);
        CREATE INDEX audit_log_at ON audit_log (at);
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END;

        -- Which service process holds the queue, for `status`.
        CREATE TABLE service_heartbeat (
            runner TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL,
            status TEXT
        );
        """,
        // Version 2: the audit chain (``AuditChain``), and no row replaced in place
        // (`INSERT OR REPLACE` deletes without firing DELETE triggers). Existing rows are
        // chained by `chainExistingRows` in the same transaction.
        """
        ALTER TABLE audit_log ADD COLUMN hash TEXT;
        CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
            WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id)
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: a row with this id exists'); END;
        CREATE TRIGGER audit_log_hash_required BEFORE INSERT ON audit_log
            WHEN NEW.hash IS NULL
            BEGIN SELECT RAISE(ABORT, 'audit_log rows are chained: a row without its hash is refused'); END;
        """,
        // Version 3 (docs/database.md, "The database"): attempts are written ahead at the claim, so a
        // task claimed by an older release may have had a request sent that `attempts` does
        // not count yet; an answer recorded although the task's lease was lost (`lease_lost`);
        // attempts whose answer never came (`unanswered_attempts`), which make a later 404
        // `not_found_after_unknown` (added to the CHECKs by `allowNotFoundAfterUnknown`).
        """
        ALTER TABLE export_tasks ADD COLUMN unanswered_attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE audit_log ADD COLUMN lease_lost INTEGER;
        UPDATE export_tasks SET attempts = attempts + 1
            WHERE state = 'in_progress' AND typeof(attempts) = 'integer' AND attempts BETWEEN 0 AND 999999;
        """,
        // Version 4 (docs/database.md, "Retention"): the archive's checkpoints, themselves
        // append-only and each bound to the audit row it ends at; audit rows may leave only at
        // or below the last checkpoint, and no ID at or below it may come back.
        """
        CREATE TABLE audit_archive (
            seq INTEGER PRIMARY KEY,
            file TEXT NOT NULL,
            first_id INTEGER NOT NULL,
            last_id INTEGER NOT NULL,
            last_hash TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            rows INTEGER NOT NULL,
            tasks INTEGER NOT NULL,
            archived_at TEXT NOT NULL,
            runner TEXT NOT NULL
        );
        CREATE TRIGGER audit_archive_no_update BEFORE UPDATE ON audit_archive
            BEGIN SELECT RAISE(ABORT, 'audit_archive is append-only: UPDATE refused'); END;
        CREATE TRIGGER audit_archive_no_delete BEFORE DELETE ON audit_archive
            BEGIN SELECT RAISE(ABORT, 'audit_archive is append-only: DELETE refused'); END;
        CREATE TRIGGER audit_archive_follows BEFORE INSERT ON audit_archive
            WHEN NEW.seq IS NOT ifnull((SELECT seq FROM audit_archive ORDER BY seq DESC LIMIT 1), 0) + 1
              OR NEW.first_id IS NOT ifnull((SELECT last_id FROM audit_archive ORDER BY seq DESC LIMIT 1), 0) + 1
              OR NEW.last_id < NEW.first_id
              OR NEW.last_hash IS NOT (SELECT hash FROM audit_log WHERE id = NEW.last_id)
              OR (SELECT count(*) FROM audit_log WHERE id BETWEEN NEW.first_id AND NEW.last_id) <> NEW.last_id - NEW.first_id + 1
            BEGIN SELECT RAISE(ABORT, 'audit_archive: a checkpoint must follow the last one and end at a row of audit_log with its hash'); END;
        -- What the archived rows of a leaving task's current cycle counted, while its later
        -- rows are still here: the consistency check adds it (``PruneCarry``).
        CREATE TABLE audit_archive_carry (
            task_id INTEGER PRIMARY KEY,
            export_task_id TEXT NOT NULL,
            finals INTEGER NOT NULL,
            final_outcome TEXT,
            attempts TEXT NOT NULL,
            restarted INTEGER NOT NULL
        );
        DROP TRIGGER audit_log_no_delete;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            WHEN OLD.id > ifnull((SELECT last_id FROM audit_archive ORDER BY seq DESC LIMIT 1), 0)
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused (only rows archived at a checkpoint may leave)'); END;
        -- (No checkpoint: NULL, so nothing is refused; an ID left to SQLite reads as -1 here.)
        CREATE TRIGGER audit_log_not_below_checkpoint BEFORE INSERT ON audit_log
            WHEN NEW.id <= (SELECT last_id FROM audit_archive ORDER BY seq DESC LIMIT 1)
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: an ID at or below the archive checkpoint is refused'); END;
        """,
        // Version 5 (docs/database.md, "The database"): the `queued` audit row of a task a sweep
        // queued, allowed in the CHECK of `audit_log.outcome` by `allowQueued`.
        "-- version 5: audit_log.outcome 'queued'",
    ]

    static var currentVersion: Int { migrations.count }

    /// Hashes the rows that predate the chain, in ID order (inside the migration's
    /// transaction; the UPDATE trigger steps aside for it).
    private static func chainExistingRows(_ connection: SQLiteConnection) throws {
        try connection.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        let select = try connection.prepare(
            "SELECT " + AuditChain.columns.joined(separator: ", ") + " FROM audit_log WHERE id > ?1 ORDER BY id LIMIT 4096")
        let update = try connection.prepare("UPDATE audit_log SET hash = ?1 WHERE id = ?2")
        var previous = AuditChain.genesis
        var after = Int.min
        while true {
            var batch: [(id: Int, hash: String)] = []
            select.bind(after, at: 1)
            while try select.step() {
                previous = AuditChain.hash(previous: previous, values: AuditChain.values(of: select, laterColumns: false))
                batch.append((select.int(0), previous))
            }
            select.reset()
            guard let last = batch.last else { break }
            for row in batch {
                update.bind(row.hash, at: 1)
                update.bind(row.id, at: 2)
                try update.run()
            }
            after = last.id
        }
        try connection.execute("""
            CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
                BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END;
            """)
    }

    /// Adds `not_found_after_unknown` to the CHECK constraints of `export_tasks.state` and
    /// `audit_log.outcome` by SQLite's documented way of loosening a constraint in place
    /// (`writable_schema`, then a new `schema_version`): every row that passed the old CHECK
    /// passes the new one, so nothing is copied, however long the log. Refuses a schema whose
    /// text is not the one migration 0 wrote.
    private static func allowNotFoundAfterUnknown(_ connection: SQLiteConnection) throws {
        let schemaVersion = try connection.scalarInt("PRAGMA schema_version") ?? 0
        try connection.execute("PRAGMA writable_schema = ON")
        defer { try? connection.execute("PRAGMA writable_schema = OFF") }
        let update = try connection.prepare("""
            UPDATE sqlite_schema SET sql = replace(sql, '''not_found'', ', '''not_found'', ''not_found_after_unknown'', ')
            WHERE type = 'table' AND name IN ('export_tasks', 'audit_log') AND instr(sql, '''not_found'', ') > 0
            """)
        try update.run()
        guard connection.changes == 2 else {
            throw CleanerError.runtime(
                "database: \(connection.path): the CHECK constraints of export_tasks and audit_log are not the ones export-task-cleaner wrote, so version 3 of the schema cannot be applied; nothing was changed")
        }
        // One more than read above; schema_version cannot be bound.
        try connection.execute("PRAGMA schema_version = \(schemaVersion + 1)")
    }

    /// Adds `queued` to the CHECK constraint of `audit_log.outcome`, in place, as
    /// ``allowNotFoundAfterUnknown(_:)`` does (a loosened constraint: nothing is copied).
    private static func allowQueued(_ connection: SQLiteConnection) throws {
        let schemaVersion = try connection.scalarInt("PRAGMA schema_version") ?? 0
        try connection.execute("PRAGMA writable_schema = ON")
        defer { try? connection.execute("PRAGMA writable_schema = OFF") }
        let update = try connection.prepare("""
            UPDATE sqlite_schema SET sql = replace(sql, '''requeued'', ', '''requeued'', ''queued'', ')
            WHERE type = 'table' AND name = 'audit_log' AND instr(sql, '''requeued'', ') > 0
            """)
        try update.run()
        guard connection.changes == 1 else {
            throw CleanerError.runtime(
                "database: \(connection.path): the CHECK constraint of audit_log is not the one export-task-cleaner wrote, so version 5 of the schema cannot be applied; nothing was changed")
        }
        try connection.execute("PRAGMA schema_version = \(schemaVersion + 1)")
    }

    /// Checks, without changing anything, that the file is a queue of the current version: for
    /// the commands that only read (`status`, `audit`).
    static func check(_ connection: SQLiteConnection) throws {
        let found = try connection.scalarInt("PRAGMA user_version") ?? 0
        if found > currentVersion { throw newer(connection.path, found) }
        if found == 0 {
            let what = try foreignTables(connection).map { "other tables (\($0))" } ?? "no tables"
            throw CleanerError.configuration(
                "database: \(connection.path) is not an export-task-cleaner queue (\(what), no schema version); nothing was changed")
        }
        if found < currentVersion {
            throw CleanerError.configuration(
                "database: \(connection.path) has schema version \(found), older than this release's \(currentVersion); `run` or `enqueue` migrates it")
        }
    }

    /// Refuses a file with tables of its own and no schema version of ours: another
    /// application's database, to which the queue's tables must not be added.
    static func refuseForeign(_ connection: SQLiteConnection) throws {
        guard try connection.scalarInt("PRAGMA user_version") ?? 0 == 0, let tables = try foreignTables(connection) else { return }
        throw CleanerError.configuration(
            "database: \(connection.path) holds other tables (\(tables)) and no export-task-cleaner schema: it looks like another application's database, so nothing was changed in it; point `database` at a new file")
    }

    /// Up to three names of tables or views that are not SQLite's own, or nil when there are none.
    private static func foreignTables(_ connection: SQLiteConnection) throws -> String? {
        let statement = try connection.prepare(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name LIMIT 3")
        defer { statement.reset() }
        var names: [String] = []
        while try statement.step() { names.append(statement.string(0)) }
        return names.isEmpty ? nil : names.joined(separator: ", ")
    }

    private static func newer(_ path: String, _ found: Int) -> CleanerError {
        .runtime(
            "\(path) has schema version \(found), but this export-task-cleaner only knows versions up to \(currentVersion); upgrade export-task-cleaner, or use a copy of the database made before the upgrade that wrote it")
    }

    /// Brings the file to `currentVersion`, or refuses a newer one, or another application's file.
    static func migrate(_ connection: SQLiteConnection) throws {
        let found = try connection.scalarInt("PRAGMA user_version") ?? 0
        if found > currentVersion { throw newer(connection.path, found) }
        guard found < currentVersion else { return }
        try refuseForeign(connection)
        try connection.writeTransaction {
            // Read again under the write lock: another process may have migrated meanwhile.
            let version = try connection.scalarInt("PRAGMA user_version") ?? 0
            guard version < currentVersion else { return }
            for step in version..<currentVersion {
                try connection.execute(migrations[step])
                if step == 1 { try chainExistingRows(connection) }
                if step == 2 { try allowNotFoundAfterUnknown(connection) }
                if step == 4 { try allowQueued(connection) }
            }
            // user_version cannot be bound; the value is a compile-time constant.
            try connection.execute("PRAGMA user_version = \(currentVersion)")
        }
    }
}
