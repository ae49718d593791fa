// Version 3 of the PostgreSQL schema (docs/database.md, "Retention"): SQLite's version 4 on
// PostgreSQL. The archive's checkpoints, themselves append-only and each bound to the audit
// row it ends at; audit rows may leave only at or below the last checkpoint, and no ID at or
// below it may come back.

extension PostgresSchema {
    /// The trigger functions read the queue's tables by unqualified names: each is pinned to
    /// the schema it was created in, so a session with another `search_path` (an operator's,
    /// a superuser's) cannot point them at other tables.
    private static func pinned(_ function: String) -> String {
        """
        DO $pin$ BEGIN
            EXECUTE format('ALTER FUNCTION \(function)() SET search_path = pg_catalog, %I, pg_temp', current_schema());
        END $pin$
        """
    }

    static let retention: [String] = [
        """
        CREATE TABLE audit_archive (
            seq bigint PRIMARY KEY,
            file text NOT NULL,
            first_id bigint NOT NULL,
            last_id bigint NOT NULL,
            last_hash text NOT NULL,
            sha256 text NOT NULL,
            rows bigint NOT NULL,
            tasks bigint NOT NULL,
            archived_at timestamptz NOT NULL,
            runner text NOT NULL
        )
        """,
        """
        CREATE FUNCTION export_task_cleaner_archive_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_archive is append-only: % refused', TG_OP
                USING HINT = 'Each checkpoint records an archive file (docs/database.md, "Retention").';
        END
        $$
        """,
        """
        CREATE TRIGGER audit_archive_append_only BEFORE UPDATE OR DELETE ON audit_archive
            FOR EACH ROW EXECUTE FUNCTION export_task_cleaner_archive_append_only()
        """,
        """
        CREATE TRIGGER audit_archive_no_truncate BEFORE TRUNCATE ON audit_archive
            FOR EACH STATEMENT EXECUTE FUNCTION export_task_cleaner_archive_append_only()
        """,
        // SQLite's `audit_archive_follows`, condition for condition.
        """
        CREATE FUNCTION export_task_cleaner_archive_follows() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            last_seq bigint;
            last_row bigint;
        BEGIN
            SELECT seq, last_id INTO last_seq, last_row FROM audit_archive ORDER BY seq DESC LIMIT 1;
            IF NEW.seq IS DISTINCT FROM coalesce(last_seq, 0) + 1
                OR NEW.first_id IS DISTINCT FROM coalesce(last_row, 0) + 1
                OR NEW.last_id < NEW.first_id
                OR NEW.last_hash IS DISTINCT FROM (SELECT hash FROM audit_log WHERE id = NEW.last_id)
                OR (SELECT count(*) FROM audit_log WHERE id BETWEEN NEW.first_id AND NEW.last_id) <> NEW.last_id - NEW.first_id + 1
            THEN
                RAISE EXCEPTION 'audit_archive: a checkpoint must follow the last one and end at a row of audit_log with its hash';
            END IF;
            RETURN NEW;
        END
        $$
        """,
        pinned("export_task_cleaner_archive_follows"),
        """
        CREATE TRIGGER audit_archive_follows BEFORE INSERT ON audit_archive
            FOR EACH ROW EXECUTE FUNCTION export_task_cleaner_archive_follows()
        """,
        // What the archived rows of a leaving task's current cycle counted, while its later
        // rows are still here: the consistency check adds it (``PruneCarry``).
        """
        CREATE TABLE audit_archive_carry (
            task_id bigint PRIMARY KEY,
            export_task_id text NOT NULL,
            finals bigint NOT NULL,
            final_outcome text,
            attempts text NOT NULL,
            restarted integer NOT NULL
        )
        """,
        // The audit log: UPDATE still refused always; DELETE only at or below the last
        // checkpoint (the prune's transaction records it first); TRUNCATE still refused.
        "DROP TRIGGER audit_log_append_only ON audit_log",
        """
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION export_task_cleaner_append_only()
        """,
        """
        CREATE FUNCTION export_task_cleaner_archived_only() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            checkpoint bigint;
        BEGIN
            SELECT last_id INTO checkpoint FROM audit_archive ORDER BY seq DESC LIMIT 1;
            IF TG_OP = 'DELETE' THEN
                IF OLD.id > coalesce(checkpoint, 0) THEN
                    RAISE EXCEPTION 'audit_log is append-only: DELETE refused (only rows archived at a checkpoint may leave)'
                        USING HINT = 'Each audit row is chained to the one before it (docs/database.md, "Retention").';
                END IF;
                RETURN OLD;
            END IF;
            IF NEW.id <= checkpoint THEN
                RAISE EXCEPTION 'audit_log is append-only: an ID at or below the archive checkpoint is refused';
            END IF;
            RETURN NEW;
        END
        $$
        """,
        pinned("export_task_cleaner_archived_only"),
        """
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION export_task_cleaner_archived_only()
        """,
        """
        CREATE TRIGGER audit_log_not_below_checkpoint BEFORE INSERT ON audit_log
            FOR EACH ROW EXECUTE FUNCTION export_task_cleaner_archived_only()
        """,
    ]
}
