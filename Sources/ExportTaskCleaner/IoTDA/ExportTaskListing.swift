/// One `GET /v5/iot/{project_id}/export-tasks` (IoTDA's ListExportTasks) to send
/// (docs/commands.md, "sweep").
public struct ListExportTasksRequest: Sendable, Hashable {
    /// The project in the path and in `X-Project-Id`.
    public var projectID: String
    /// The `Instance-Id` header; `nil` sends none.
    public var instanceID: String?
    /// Records per page, 1 to 50.
    public var limit: Int
    /// Only records with a smaller ID follow; `nil` sends none (IoTDA starts at the newest).
    public var marker: String?

    public init(projectID: String, instanceID: String? = nil, limit: Int = 50, marker: String? = nil) {
        self.projectID = projectID
        self.instanceID = instanceID
        self.limit = limit
        self.marker = marker
    }

    /// The query's parameters (the signer and the URL put them in the canonical order).
    public var query: [(String, String)] {
        var pairs = [("limit", String(limit))]
        if let marker { pairs.append(("marker", marker)) }
        return pairs
    }
}

/// One export task of a page, as the answer gave it: nothing here is checked beyond its JSON
/// type (``SweepSelection`` decides what it means).
public struct ListedExportTask: Sendable, Equatable {
    public var exportTaskID: String
    public var status: String?
    /// `end_time` as sent; nil when absent or `null`.
    public var endTime: String?
    /// Why the entry is unusable as sent (not an object, a field of the wrong type); nil when
    /// its fields have their types.
    public var problem: String?

    public init(exportTaskID: String, status: String?, endTime: String?, problem: String? = nil) {
        self.exportTaskID = exportTaskID
        self.status = status
        self.endTime = endTime
        self.problem = problem
    }
}

/// A parsed page: its export tasks and `page.marker` (the last record ID of the page).
public struct ExportTaskPage: Sendable, Equatable {
    public var tasks: [ListedExportTask]
    public var marker: String?

    public init(tasks: [ListedExportTask], marker: String?) {
        self.tasks = tasks
        self.marker = marker
    }
}

/// The outcome of one list request. Built by an ``ExportTaskLister``; never thrown.
public struct ListResult: Sendable {
    /// The answer's status, error body, `Retry-After`, or the failure without an answer:
    /// classified as a delete's is (``DeleteClassification``).
    public var response: DeleteResult
    /// A 2xx answer's page, when its body parsed.
    public var page: ExportTaskPage?
    /// Why a 2xx answer's body was refused (too large, not JSON, wrong shape).
    public var problem: String?

    public init(response: DeleteResult, page: ExportTaskPage? = nil, problem: String? = nil) {
        self.response = response
        self.page = page
        self.problem = problem
    }
}

/// Lists export tasks, one page a call. ``IoTDAClient`` is the real one.
public protocol ExportTaskLister: Sendable {
    func list(_ request: ListExportTasksRequest) async -> ListResult
}
