import FoundationEssentials
import Logging
import PostgresNIO

/// Audit rows gathered in a transaction and appended at its end, each chained to the one
/// before (``AuditChain``; docs/database.md, "The database"), as the SQLite store does.
///
/// Every service on the database appends to one chain: the append takes a transaction-scoped
/// advisory lock, reads the head, and inserts with IDs and hashes that follow it, so appends
/// are serialized across hosts and the IDs stay dense. Taken last in its transaction, after
/// the task rows the transaction changes, so no transaction waits for it while holding what
/// another one that holds it needs.
struct PostgresAuditRows {
    /// The advisory lock's key: the ASCII of "etc-audt" as a big-endian 64-bit number.
    static let lockKey: Int64 = 0x6574_632D_6175_6474

    private struct Row {
        var taskID: Int
        var exportTaskID: String
        var projectID: String?
        var record: AuditRecord
    }

    /// One row as `jsonb_to_recordset` reads it: nil values are left out and read as NULL.
    private struct Encoded: Encodable {
        var id: Int
        var task_id: Int
        var export_task_id: String
        var project_id: String?
        var attempt: Int?
        var at: String
        var duration_ms: Int?
        var http_status: Int?
        var error_code: String?
        var error_message: String?
        var request_id: String?
        var outcome: String
        var delivery: String?
        var hash: String
        var lease_lost: Int?
    }

    /// The chain's head: the last audit row, else the last checkpoint's (every row archived:
    /// docs/database.md, "Retention").
    static let head: PostgresQuery = """
        SELECT id, hash FROM (
            (SELECT id, hash, 0 AS k FROM audit_log ORDER BY id DESC LIMIT 1)
            UNION ALL
            (SELECT last_id, last_hash, 1 FROM audit_archive ORDER BY seq DESC LIMIT 1)
        ) head ORDER BY k LIMIT 1
        """

    let runner: String
    private var rows: [Row] = []

    init(runner: String) {
        self.runner = PostgresText.clean(runner)
    }

    var isEmpty: Bool { rows.isEmpty }

    mutating func append(taskID: Int, exportTaskID: String, projectID: String?, record: AuditRecord) {
        var record = record
        record.errorCode = record.errorCode.map(PostgresText.clean)
        record.errorMessage = record.errorMessage.map(PostgresText.clean)
        record.requestID = record.requestID.map(PostgresText.clean)
        rows.append(Row(taskID: taskID, exportTaskID: PostgresText.clean(exportTaskID),
                        projectID: projectID.map(PostgresText.clean), record: record))
    }

    /// Appends the rows inside the caller's transaction.
    func write(_ connection: PostgresConnection, logger: Logger) async throws {
        guard !rows.isEmpty else { return }
        try await connection.query("SELECT pg_advisory_xact_lock(\(Self.lockKey))", logger: logger)
        var (lastID, previous) = (0, AuditChain.genesis)
        let head = try await connection.query(Self.head, logger: logger)
        for try await (id, hash) in head.decode((Int, String).self) { (lastID, previous) = (id, hash) }
        // Another tool may have written any ID: room is checked, not assumed.
        guard lastID < Int.max - rows.count else {
            throw CleanerError.runtime("audit_log: row \(lastID) leaves no room for more IDs; it was not written by export-task-cleaner (see `audit --verify`)")
        }
        var encoded: [Encoded] = []
        encoded.reserveCapacity(rows.count)
        for (offset, row) in rows.enumerated() {
            let record = row.record
            let id = lastID + offset + 1
            let at = Timestamp.format(record.at)
            previous = AuditChain.hash(previous: previous, values: AuditChain.values(
                id: id, taskID: row.taskID, exportTaskID: row.exportTaskID, projectID: row.projectID,
                record: record, at: at, runner: runner))
            encoded.append(Encoded(
                id: id, task_id: row.taskID, export_task_id: row.exportTaskID, project_id: row.projectID,
                attempt: record.attempt, at: at, duration_ms: record.durationMilliseconds, http_status: record.httpStatus,
                error_code: record.errorCode, error_message: record.errorMessage, request_id: record.requestID,
                outcome: record.outcome.rawValue, delivery: record.delivery?.rawValue, hash: previous,
                lease_lost: record.leaseLost ? 1 : nil))
        }
        let json = try PostgresText.json(encoded)
        try await connection.query("""
            INSERT INTO audit_log (id, task_id, export_task_id, project_id, attempt, at, duration_ms, http_status,
                error_code, error_message, request_id, outcome, delivery, runner, hash, lease_lost)
            SELECT r.id, r.task_id, r.export_task_id, r.project_id, r.attempt, r.at::timestamptz, r.duration_ms,
                r.http_status, r.error_code, r.error_message, r.request_id, r.outcome, r.delivery, \(runner), r.hash,
                r.lease_lost
            FROM jsonb_to_recordset(\(json)::jsonb) AS r(id bigint, task_id bigint, export_task_id text,
                project_id text, attempt integer, at text, duration_ms bigint, http_status integer, error_code text,
                error_message text, request_id text, outcome text, delivery text, hash text, lease_lost integer)
            ORDER BY r.id
            """, logger: logger)
    }
}

/// Text as PostgreSQL takes it, and the SQL that reads times back as ``Timestamp`` text.
enum PostgresText {
    /// PostgreSQL's text cannot hold NUL (SQLite's can): stored as U+FFFD, so a row another
    /// party gave a NUL is recorded rather than refused. Hashes are of the text as stored.
    static func clean(_ text: String) -> String {
        text.utf8.contains(0) ? text.replacing("\u{0}", with: "\u{FFFD}") : text
    }

    /// A `timestamptz` expression as ``Timestamp`` text (UTC, milliseconds). Years outside
    /// 0001–9999 give text ``Timestamp/parse(_:)`` refuses, read as no time.
    static func timestamp(_ expression: String) -> String {
        "to_char((\(expression)) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    }

    /// `value` as JSON text, for `jsonb_to_recordset`: a batch in one bound parameter.
    static func json<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }
}
