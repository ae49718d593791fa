import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Prints the audit log, newest last: one row per request sent, and one per change made without a request.")

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case table, json, csv
    }

    @OptionGroup var config: ConfigOption

    @Option(name: .long, help: ArgumentHelp("Only rows of this export task ID.", valueName: "id"))
    var task: String?

    @Option(name: .long, help: ArgumentHelp("Only rows of tasks now in this state.",
                                            valueName: TaskState.allCases.map(\.rawValue).joined(separator: "|")))
    var state: String?

    @Option(name: .long, help: ArgumentHelp("Only rows with this outcome.", valueName: "outcome"))
    var outcome: String?

    @Option(name: .long, help: ArgumentHelp(
        "Only rows at or after TIME: ISO 8601 (2026-11-29, 2026-11-29T15:00:00Z) or an age (90s, 15m, 2h, 7d).",
        valueName: "time"))
    var since: String?

    @Option(name: .long, help: "table, json or csv.")
    var format: Format = .table

    func run() throws {
        var filter = AuditFilter(exportTaskID: task)
        if let state {
            guard let parsed = TaskState(rawValue: state) else {
                throw CleanerError.configuration("--state: unknown state \"\(state)\"; expected one of \(TaskState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter.taskState = parsed
        }
        if let outcome {
            guard let parsed = AuditOutcome(rawValue: outcome) else {
                throw CleanerError.configuration("--outcome: unknown outcome \"\(outcome)\"; expected one of \(AuditOutcome.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter.outcome = parsed
        }
        if let since {
            guard let date = Self.parseSince(since, now: Date()) else {
                throw CleanerError.configuration("--since: expected an ISO 8601 time (2026-11-29T15:00:00Z) or an age such as 15m, 2h or 7d (at most 100 years), got \(IDList.quoted(since))")
            }
            filter.since = date
        }
        let (_, store) = try config.openStore(for: .inspect)
        var output = BufferedOutput()
        let writer = AuditWriter(format: format)
        output.write(writer.header)
        var first = true
        try store.auditEntries(filter) { entry in
            output.write(try writer.row(entry, first: first))
            first = false
        }
        output.write(writer.footer(empty: first))
        output.flush()
    }

    /// An age may go back this far at most (a hundred years), so no arithmetic on it overflows.
    static let longestAge: Double = 100 * 366 * 86_400

    static func parseSince(_ text: String, now: Date) -> Date? {
        if let date = Timestamp.parse(text) { return date }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        let digits = text.dropLast()
        guard let unit = text.last.flatMap({ units[$0] }), !digits.isEmpty,
              digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let amount = Double(digits), amount * unit <= longestAge
        else { return nil }
        return now.addingTimeInterval(-amount * unit)
    }
}

/// Formats audit rows as a table, a JSON array or CSV (RFC 4180).
struct AuditWriter {
    let format: AuditCommand.Format
    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static let columns = ["id", "at", "export_task_id", "task_id", "project_id", "attempt", "outcome", "http_status",
                          "delivery", "duration_ms", "error_code", "error_message", "request_id", "runner"]

    init(format: AuditCommand.Format) {
        self.format = format
    }

    var header: String {
        switch format {
        case .table:
            return Self.tableLine(["AT", "EXPORT TASK ID", "TRY", "OUTCOME", "HTTP", "DELIVERY", "MS", "REQUEST ID", "ERROR"])
        case .json: return "["
        case .csv: return Self.columns.joined(separator: ",") + "\r\n"
        }
    }

    func footer(empty: Bool) -> String {
        switch format {
        case .table: return ""
        case .json: return empty ? "]\n" : "\n]\n"
        case .csv: return ""
        }
    }

    func row(_ entry: AuditEntry, first: Bool) throws -> String {
        switch format {
        case .table:
            let error = [entry.errorCode, entry.errorMessage].compactMap { $0 }.joined(separator: " ")
            return Self.tableLine([
                entry.at, entry.exportTaskID, entry.attempt.map(String.init) ?? "-", entry.outcome,
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
            ]
            return values.map { Self.csvField($0 ?? "") }.joined(separator: ",") + "\r\n"
        }
    }

    /// RFC 4180: a field with a comma, a quote or a line break is quoted, quotes doubled. Checked
    /// by scalar: `"\r\n"` is one `Character`, equal to neither `"\r"` nor `"\n"`.
    static func csvField(_ value: String) -> String {
        guard value.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\""
    }

    private static let widths = [24, 36, 3, 13, 4, 9, 6, 32]

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

/// Collects output and writes it to stdout in large pieces.
struct BufferedOutput {
    private var buffer: [UInt8] = []

    mutating func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        guard !buffer.isEmpty else { return }
        Console.output(buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}

/// `line` without the spaces the last column's padding left at its end.
private func trimmedTrailingSpaces(_ line: String) -> String {
    var end = line.endIndex
    while end > line.startIndex, line[line.index(before: end)] == " " { end = line.index(before: end) }
    return String(line[..<end])
}
