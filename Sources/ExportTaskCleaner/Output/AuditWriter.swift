import FoundationEssentials

/// How `audit` prints rows.
public enum AuditFormat: String, CaseIterable, Sendable {
    /// Columns for a terminal; text from the database with control characters escaped.
    case table
    /// An array of objects with every column (nulls included).
    case json
    /// RFC 4180 with a header line, CRLF between records.
    case csv
}

/// Formats audit rows as a table, a JSON array or CSV (RFC 4180).
public struct AuditWriter {
    public let format: AuditFormat
    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    public static let columns = ["id", "at", "export_task_id", "task_id", "project_id", "attempt", "outcome", "http_status",
                          "delivery", "duration_ms", "error_code", "error_message", "request_id", "runner", "lease_lost", "hash"]

    public init(format: AuditFormat) {
        self.format = format
    }

    public var header: String {
        switch format {
        case .table:
            return Self.tableLine(["AT", "EXPORT TASK ID", "TRY", "OUTCOME", "HTTP", "DELIVERY", "MS", "REQUEST ID", "ERROR"])
        case .json: return "["
        case .csv: return Self.columns.joined(separator: ",") + "\r\n"
        }
    }

    public func footer(empty: Bool) -> String {
        switch format {
        case .table: return ""
        case .json: return empty ? "]\n" : "\n]\n"
        case .csv: return ""
        }
    }

    public func row(_ entry: AuditEntry, first: Bool) throws -> String {
        switch format {
        case .table:
            let error = [entry.errorCode, entry.errorMessage].compactMap { $0 }.joined(separator: " ")
            return Self.tableLine([
                entry.at, entry.exportTaskID, entry.attempt.map(String.init) ?? "-",
                entry.leaseLost ? entry.outcome + " (lease lost)" : entry.outcome,
                entry.httpStatus.map(String.init) ?? "-", entry.delivery ?? "-",
                entry.durationMilliseconds.map(String.init) ?? "-", entry.requestID ?? "-", error.isEmpty ? "-" : error,
            ])
        case .json:
            return (first ? "\n  " : ",\n  ") + String(decoding: try encoder.encode(entry), as: UTF8.self)
        case .csv:
            let values: [String?] = [
                String(entry.id), entry.at, entry.exportTaskID, entry.taskID.map(String.init), entry.projectID,
                entry.attempt.map(String.init), entry.outcome, entry.httpStatus.map(String.init), entry.delivery,
                entry.durationMilliseconds.map(String.init), entry.errorCode, entry.errorMessage, entry.requestID, entry.runner,
                entry.leaseLost ? "1" : "", entry.hash,
            ]
            return values.map { Self.csvField($0 ?? "") }.joined(separator: ",") + "\r\n"
        }
    }

    /// RFC 4180: a field with a comma, a quote or a line break is quoted, quotes doubled. Checked
    /// by scalar: `"\r\n"` is one `Character`, equal to neither `"\r"` nor `"\n"`.
    public static func csvField(_ value: String) -> String {
        guard value.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\""
    }

    private static let widths = [24, 36, 3, 23, 4, 9, 6, 32]

    static func tableLine(_ fields: [String]) -> String {
        var line = ""
        for (index, field) in fields.enumerated() {
            let printable = TextFormat.printable(field)
            if index < widths.count {
                line += TextFormat.padRight(printable, to: widths[index]) + " "
            } else {
                line += printable
            }
        }
        return trimmedTrailingSpaces(line) + "\n"
    }
}

/// `line` without the spaces the last column's padding left at its end.
private func trimmedTrailingSpaces(_ line: String) -> String {
    var end = line.endIndex
    while end > line.startIndex, line[line.index(before: end)] == " " { end = line.index(before: end) }
    return String(line[..<end])
}
