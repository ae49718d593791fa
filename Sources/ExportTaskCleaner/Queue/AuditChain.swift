import Crypto

/// Tamper evidence for `audit_log` (docs/database.md, "The database"): each row's `hash` is SHA-256 over
/// the previous row's hash and the row's own content, so a row changed, deleted, replaced or
/// slipped in out of order breaks the chain from there on. Rows are hashed inside the
/// transaction that writes them, so concurrent writers take turns (SQLite: its write lock;
/// PostgreSQL: a lock the appending transaction takes).
///
/// It proves that the rows are as export-task-cleaner wrote them, unless someone who can write
/// the file rebuilt the whole chain after editing it; the head hash (`status --json`, the
/// journal) published elsewhere makes that visible too.
public enum AuditChain {
    /// The "previous hash" of the first row.
    package static let genesis = String(repeating: "0", count: 64)
    /// ``genesis``, for the commands' output.
    public static var genesisText: String { genesis }

    /// A column's value as stored: hashed with its type, so that `1` and `'1'` differ.
    package enum Value: Equatable, Sendable {
        case null
        case integer(Int)
        case text(String)
    }

    /// The columns hashed, in this order: `id, task_id, export_task_id, project_id, attempt,
    /// at, duration_ms, http_status, error_code, error_message, request_id, outcome, delivery,
    /// runner`.
    package static let columns = [
        "id", "task_id", "export_task_id", "project_id", "attempt", "at", "duration_ms", "http_status",
        "error_code", "error_message", "request_id", "outcome", "delivery", "runner",
    ]

    /// Columns added by later schema versions, hashed after ``columns`` and only when not
    /// NULL, so that the rows written before them keep their hashes: `lease_lost` (version 3).
    package static let laterColumns = ["lease_lost"]

    /// What to select for ``values(of:)``: ``columns`` then ``laterColumns``.
    package static let selection = (columns + laterColumns).joined(separator: ", ")

    /// The row's hash as 64 lower-case hex digits: SHA-256 of the previous hash's text, then
    /// each value as a tag byte (0 null, 1 integer as 8 bytes big-endian, 2 text as a 4-byte
    /// big-endian length and its UTF-8).
    package static func hash(previous: String, values: [Value]) -> String {
        var hasher = SHA256()
        hasher.update(data: Array(previous.utf8))
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256)
        for value in values {
            switch value {
            case .null:
                bytes.append(0)
            case .integer(let number):
                bytes.append(1)
                withUnsafeBytes(of: Int64(number).bigEndian) { bytes.append(contentsOf: $0) }
            case .text(let text):
                bytes.append(2)
                withUnsafeBytes(of: UInt32(truncatingIfNeeded: text.utf8.count).bigEndian) { bytes.append(contentsOf: $0) }
                bytes.appendUTF8(text)
            }
        }
        hasher.update(data: bytes)
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        hasher.finalize().withUnsafeBytes { appendLowerHex($0, to: &hex) }
        return String(decoding: hex, as: UTF8.self)
    }
}

extension AuditChain {
    /// The hashed values of a row the store is about to write, in ``columns`` order, with
    /// `at` as ``Timestamp`` text: the one canonical encoding every store writes.
    package static func values(id: Int, taskID: Int, exportTaskID: String, projectID: String?,
                               record: AuditRecord, at: String, runner: String) -> [Value] {
        func value(_ number: Int?) -> Value { number.map { .integer($0) } ?? .null }
        func value(_ text: String?) -> Value { text.map { .text($0) } ?? .null }
        var values: [Value] = [
            .integer(id), .integer(taskID), .text(exportTaskID), value(projectID), value(record.attempt), .text(at),
            value(record.durationMilliseconds), value(record.httpStatus), value(record.errorCode),
            value(record.errorMessage), value(record.requestID), .text(record.outcome.rawValue),
            value(record.delivery?.rawValue), .text(runner),
        ]
        // `lease_lost`, hashed only when set (``laterColumns``).
        if record.leaseLost { values.append(.integer(1)) }
        return values
    }
}

extension AuditChain {
    /// The hashed values of a row as read back (`audit --format json`, an archive's line):
    /// the canonical encoding, from which an archive's rows are verified.
    package static func values(of entry: AuditEntry) -> [Value] {
        func text(_ value: String?) -> Value { value.map { .text($0) } ?? .null }
        func number(_ value: Int?) -> Value { value.map { .integer($0) } ?? .null }
        var values: [Value] = [
            .integer(entry.id), number(entry.taskID), .text(entry.exportTaskID), text(entry.projectID),
            number(entry.attempt), .text(entry.at), number(entry.durationMilliseconds), number(entry.httpStatus),
            text(entry.errorCode), text(entry.errorMessage), text(entry.requestID), .text(entry.outcome),
            text(entry.delivery), .text(entry.runner),
        ]
        if entry.leaseLost { values.append(.integer(1)) }
        return values
    }
}

/// What `audit --verify` found.
public struct AuditVerification: Sendable, Equatable {
    /// Rows checked (all of them, when `problem` is nil).
    public var rows: Int
    /// The last row's ID and hash: what to publish, so that a rebuilt chain shows.
    public var headID: Int?
    public var headHash: String?
    /// The first row that breaks the chain, and how; nil when every row holds.
    public var problem: String?

    public init(rows: Int, headID: Int? = nil, headHash: String? = nil, problem: String? = nil) {
        self.rows = rows
        self.headID = headID
        self.headHash = headHash
        self.problem = problem
    }

    /// Walks the rows in ID order: IDs dense from 1, each row's stored hash the chain's. The
    /// stores read the rows; the rule is here, so `audit --verify` means the same on each.
    public struct Walker: Sendable {
        public private(set) var result = AuditVerification(rows: 0)
        private var previous = AuditChain.genesis
        private var expectedID = 1

        public init() {}

        /// A walk that starts after an archive's checkpoint (docs/database.md, "Retention"):
        /// the next row must be `lastID + 1` and chain from `hash`.
        public init(after position: ChainPosition) {
            previous = position.hash
            expectedID = position.lastID &+ 1
            if position.lastID > 0 {
                result.headID = position.lastID
                result.headHash = position.hash
            }
        }

        /// Where the walk stands: the last row checked (or the start).
        public var position: ChainPosition {
            ChainPosition(lastID: expectedID &- 1, hash: previous, sequence: 0)
        }

        /// Checks the next row; false when it breaks the chain (`result.problem` says how)
        /// and the walk should stop.
        package mutating func check(id: Int, values: [AuditChain.Value], stored: String?) -> Bool {
            if id != expectedID {
                result.problem = id > expectedID
                    ? "rows \(expectedID) to \(id - 1) are missing: deleted"
                    : "row \(id) is out of order"
                return false
            }
            guard let stored else {
                result.problem = "row \(id) has no hash: it was written outside export-task-cleaner"
                return false
            }
            guard stored == AuditChain.hash(previous: previous, values: values) else {
                result.problem = "row \(id) does not match its hash: it was changed or replaced, or inserted out of order"
                return false
            }
            previous = stored
            result.rows += 1
            result.headID = id
            result.headHash = stored
            expectedID = id &+ 1
            return true
        }
    }
}
