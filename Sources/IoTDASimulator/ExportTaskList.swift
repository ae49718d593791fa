import ExportTaskCleaner
import FoundationEssentials
import NIOCore

extension IoTDASimulator {
    /// One export task the simulator lists (`GET /v5/iot/{project_id}/export-tasks`, IoTDA's
    /// ListExportTasks). A delete answered 204 removes it from the list.
    public struct ExportTask: Sendable, Equatable {
        /// The record ID, also the marker: 24 lower-case hex digits, newest the greatest.
        public var exportTaskID: String
        /// `Processing`, `Success` or `Failed` (anything else is sent as it is).
        public var status: String
        public var createTime: Date
        /// Nil: no `end_time` in the answer (as for a task still processing).
        public var endTime: Date?
        public var resourceType: String

        public init(exportTaskID: String, status: String, createTime: Date, endTime: Date?, resourceType: String = "device") {
            self.exportTaskID = exportTaskID
            self.status = status
            self.createTime = createTime
            self.endTime = endTime
            self.resourceType = resourceType
        }

        /// The 24-hex record ID of the `number`th task (greater numbers are newer).
        public static func recordID(_ number: Int) -> String {
            let digits = String(UInt64(truncatingIfNeeded: number), radix: 16)
            return "6630" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
        }
    }

    /// A scripted answer to the next list request, in place of the listed page (hostile servers).
    public struct ListAnswer: Sendable {
        public var status: Int
        public var body: [UInt8]
        public var retryAfterSeconds: Int?

        public init(status: Int, body: [UInt8], retryAfterSeconds: Int? = nil) {
            self.status = status
            self.body = body
            self.retryAfterSeconds = retryAfterSeconds
        }

        public init(status: Int, json: String, retryAfterSeconds: Int? = nil) {
            self.init(status: status, body: Array(json.utf8), retryAfterSeconds: retryAfterSeconds)
        }
    }
}

/// The listed export tasks, newest (greatest ID) first, and ListExportTasks' paging: the records
/// with an ID below `marker`, `offset` of them skipped, `limit` of them sent.
struct ExportTaskList: Sendable {
    private(set) var tasks: [IoTDASimulator.ExportTask] = []

    mutating func add(_ new: [IoTDASimulator.ExportTask]) {
        var byID = Dictionary(tasks.map { ($0.exportTaskID, $0) }, uniquingKeysWith: { $1 })
        for task in new { byID[task.exportTaskID] = task }
        tasks = byID.values.sorted { $0.exportTaskID > $1.exportTaskID }
    }

    mutating func remove(_ exportTaskID: String) {
        tasks.removeAll { $0.exportTaskID == exportTaskID }
    }

    /// The query's parameters, or the 400 IoTDA would answer.
    struct Query {
        var limit = 10
        var marker = "ffffffffffffffffffffffff"
        var offset = 0
    }

    static func parseQuery(_ rawQuery: Substring?) -> Query? {
        var query = Query()
        guard let rawQuery, !rawQuery.isEmpty else { return query }
        for pair in rawQuery.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            let value = parts.count > 1 ? String(parts[1]) : ""
            switch name {
            case "limit":
                guard let limit = Int(value), (1...50).contains(limit) else { return nil }
                query.limit = limit
            case "marker":
                guard value.utf8.count == 24, value.utf8.allSatisfy(isHexDigit) else { return nil }
                query.marker = value.lowercased()
            case "offset":
                guard let offset = Int(value), (0...500).contains(offset) else { return nil }
                query.offset = offset
            case "resource_type", "resource_condition", "app_type", "app_id":
                continue
            default:
                return nil
            }
        }
        return query
    }

    /// The page's JSON: `{"export_tasks": [...], "page": {"count": N, "marker": "..."}}`.
    func page(_ query: Query) -> Answer {
        let after = tasks.lazy.filter { $0.exportTaskID < query.marker }
        let page = Array(after.dropFirst(query.offset).prefix(query.limit))
        var json = "{\"export_tasks\":["
        for (index, task) in page.enumerated() {
            if index > 0 { json += "," }
            json += "{\"export_task_id\":\"\(Answer.jsonEscaped(task.exportTaskID))\""
            json += ",\"resource_type\":\"\(Answer.jsonEscaped(task.resourceType))\""
            json += ",\"resource_condition\":{\"type\":\"ALL\"}"
            json += ",\"export_format\":\"CSV\",\"status\":\"\(Answer.jsonEscaped(task.status))\""
            json += ",\"export_count\":100,\"progress\":\(task.status == "Processing" ? 50 : 100)"
            json += ",\"create_time\":\"\(Timestamp.format(task.createTime))\""
            json += ",\"end_time\":" + (task.endTime.map { "\"\(Timestamp.format($0))\"" } ?? "null")
            json += ",\"app_type\":\"GLOBAL\",\"app_id\":null}"
        }
        json += "],\"page\":{\"count\":\(tasks.count)"
        if let last = page.last { json += ",\"marker\":\"\(last.exportTaskID)\"" }
        json += "}}"
        return Answer(status: .ok, body: ByteBuffer(string: json))
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }
}
