import CSQLite
import FoundationEssentials
import Logging

// Audit rows, written in multi-row inserts inside the transaction of what they record.

extension SQLiteQueue {

    /// Audit rows gathered in a transaction and written at its end in multi-row INSERTs (32,
    /// 16, … 1 rows each), in the order appended: a statement per row costs as much again as
    /// the insert itself.
    struct AuditRows {
        private struct Row {
            var taskID: Int
            var exportTaskID: String
            var projectID: String?
            var record: AuditRecord
        }

        private static let columnsPerRow = 15
        private static let chunkSizes = SQLiteQueue.statementBatchSizes
        /// `?1` is the runner, shared; row `r` takes `?(2 + 15r)` to `?(16 + 15r)`.
        private static let sql: [String] = chunkSizes.map { size in
            let rows = (0..<size).map { row in
                let base = 2 + columnsPerRow * row
                return "(" + (0..<columnsPerRow).map { "?\(base + $0)" }.joined(separator: ", ") + ", ?1)"
            }
            return "INSERT INTO audit_log (id, task_id, export_task_id, project_id, attempt, at, duration_ms, http_status, "
                + "error_code, error_message, request_id, outcome, delivery, hash, lease_lost, runner) VALUES "
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

        /// Writes the rows after the last one in the file, each chained to the one before
        /// (``AuditChain``): inside the caller's write transaction, so no other writer can come
        /// between reading the head and appending to it.
        func write(_ db: SQLiteConnection) throws {
            guard !rows.isEmpty else { return }
            // After the last row, or after the archive's checkpoint when every row was archived.
            var (lastID, previous) = (0, AuditChain.genesis)
            if let head = try SQLiteQueue.chainHead(db) { (lastID, previous) = (head.id, head.hash ?? "") }
            // Another tool may have written any ID: room is checked, not assumed.
            guard lastID < Int.max - rows.count else {
                throw CleanerError.runtime("audit_log: row \(lastID) leaves no room for more IDs; it was not written by export-task-cleaner (see `audit --verify`)")
            }
            try SQLiteQueue.forEachStatementBatch(of: rows.count) { next, choice in
                let statement = try db.prepare(Self.sql[choice])
                statement.bind(runner, at: 1)
                for offset in 0..<Self.chunkSizes[choice] {
                    let row = rows[next + offset]
                    let record = row.record
                    let id = lastID + next + offset + 1
                    let at = Timestamp.format(record.at)
                    let values = AuditChain.values(id: id, taskID: row.taskID, exportTaskID: row.exportTaskID,
                                                   projectID: row.projectID, record: record, at: at, runner: runner)
                    previous = AuditChain.hash(previous: previous, values: values)
                    let base = Int32(2 + Self.columnsPerRow * offset)
                    statement.bind(id, at: base)
                    statement.bind(row.taskID, at: base + 1)
                    statement.bind(row.exportTaskID, at: base + 2)
                    statement.bind(row.projectID, at: base + 3)
                    statement.bind(record.attempt, at: base + 4)
                    statement.bind(at, at: base + 5)
                    statement.bind(record.durationMilliseconds, at: base + 6)
                    statement.bind(record.httpStatus, at: base + 7)
                    statement.bind(record.errorCode, at: base + 8)
                    statement.bind(record.errorMessage, at: base + 9)
                    statement.bind(record.requestID, at: base + 10)
                    statement.bind(record.outcome.rawValue, at: base + 11)
                    statement.bind(record.delivery?.rawValue, at: base + 12)
                    statement.bind(previous, at: base + 13)
                    statement.bind(record.leaseLost ? 1 : Int?.none, at: base + 14)
                }
                try statement.run()
            }
        }
    }

    /// One audit row, through the same statement and bindings as a batch of them.
    func insertAudit(_ db: SQLiteConnection, taskID: Int, exportTaskID: String, projectID: String?,
                                 record: AuditRecord) throws {
        var rows = AuditRows(runner: runner)
        rows.append(taskID: taskID, exportTaskID: exportTaskID, projectID: projectID, record: record)
        try rows.write(db)
    }
}
