/// Reads a ListExportTasks answer's body strictly (docs/commands.md, "sweep"):
/// `{"export_tasks": [...], "page": {"count": N, "marker": "..."}}`.
///
/// The body is parsed by ``JSONValue`` (RFC 8259, duplicate keys refused, nesting bounded). A body
/// of the wrong shape — not an object, `export_tasks` not an array, `page` not an object, a
/// `marker` not a string, more entries than asked for — is refused whole, and the sweep stops.
/// An entry of the wrong shape is kept with its ``ListedExportTask/problem``, to be counted
/// as invalid and skipped. Unknown keys are ignored, as IoTDA adds fields.
public enum ExportTaskPageParser {
    /// The most of a page's body read: 50 tasks of a few hundred bytes each fit many times over.
    public static let maximumBodyBytes = 1024 * 1024

    public struct Problem: Error, Sendable, Equatable {
        public var reason: String
    }

    public static func parse(_ body: [UInt8], limit: Int) throws(Problem) -> ExportTaskPage {
        let root: JSONValue
        do {
            root = try JSONValue.parse(body).value
        } catch {
            throw Problem(reason: "the body is not JSON (line \(error.line): \(error.message))")
        }
        guard case .object(let members) = root else { throw Problem(reason: "the body is \(root.kind), not an object") }
        guard let tasksValue = member("export_tasks", of: members) else { throw Problem(reason: "export_tasks is missing") }
        let entries: [JSONValue.Located]
        switch tasksValue {
        case .array(let array): entries = array
        case .null: entries = []
        default: throw Problem(reason: "export_tasks is \(tasksValue.kind), not an array")
        }
        guard entries.count <= limit else {
            throw Problem(reason: "\(entries.count) export tasks in a page of at most \(limit)")
        }
        var marker: String?
        switch member("page", of: members) {
        case .object(let page)?:
            switch member("marker", of: page) {
            case .string(let text)?: marker = text
            case .null?, nil: marker = nil
            case let other?: throw Problem(reason: "page.marker is \(other.kind), not a string")
            }
            if let count = member("count", of: page) {
                guard case .number = count else { throw Problem(reason: "page.count is \(count.kind), not a number") }
            }
        case .null?, nil:
            break
        case let other?:
            throw Problem(reason: "page is \(other.kind), not an object")
        }
        return ExportTaskPage(tasks: entries.map { task($0.value) }, marker: marker)
    }

    private static func task(_ value: JSONValue) -> ListedExportTask {
        guard case .object(let fields) = value else {
            return ListedExportTask(exportTaskID: "", status: nil, endTime: nil, problem: "an entry is \(value.kind), not an object")
        }
        guard case .string(let id)? = member("export_task_id", of: fields) else {
            return ListedExportTask(exportTaskID: "", status: nil, endTime: nil, problem: "an entry has no export_task_id string")
        }
        var task = ListedExportTask(exportTaskID: id, status: nil, endTime: nil)
        switch member("status", of: fields) {
        case .string(let status)?: task.status = status
        case .null?, nil: break
        case let other?: task.problem = "status is \(other.kind), not a string"
        }
        switch member("end_time", of: fields) {
        case .string(let end)?: task.endTime = end
        case .null?, nil: break
        case let other?: task.problem = "end_time is \(other.kind), not a string"
        }
        return task
    }

    private static func member(_ key: String, of members: [(key: String, value: JSONValue.Located)]) -> JSONValue? {
        members.first { $0.key == key }?.value.value
    }
}
