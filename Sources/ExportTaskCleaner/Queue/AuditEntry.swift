import FoundationEssentials

public struct AuditFilter: Sendable, Equatable {
    public var exportTaskID: String?
    /// Rows of tasks currently in this state.
    public var taskState: TaskState?
    public var outcome: AuditOutcome?
    public var since: Date?

    public init(exportTaskID: String? = nil, taskState: TaskState? = nil, outcome: AuditOutcome? = nil, since: Date? = nil) {
        self.exportTaskID = exportTaskID
        self.taskState = taskState
        self.outcome = outcome
        self.since = since
    }
}

/// One `audit_log` row as read back.
public struct AuditEntry: Sendable, Codable, Equatable {
    public var id: Int
    public var taskID: Int?
    public var exportTaskID: String
    public var projectID: String?
    public var attempt: Int?
    public var at: String
    public var durationMilliseconds: Int?
    public var httpStatus: Int?
    public var errorCode: String?
    public var errorMessage: String?
    public var requestID: String?
    public var outcome: String
    public var delivery: String?
    public var runner: String
    /// The answer came after the task's lease was lost: the task row did not take it.
    public var leaseLost = false
    /// The audit chain's hash of the row (docs/database.md, "The database"); nil only in a file whose
    /// rows were never chained.
    public var hash: String? = nil

    enum CodingKeys: String, CodingKey {
        case id, attempt, at, outcome, delivery, runner
        case leaseLost = "lease_lost"
        case hash
        case taskID = "task_id"
        case exportTaskID = "export_task_id"
        case projectID = "project_id"
        case durationMilliseconds = "duration_ms"
        case httpStatus = "http_status"
        case errorCode = "error_code"
        case errorMessage = "error_message"
        case requestID = "request_id"
    }

    /// Every column, null included, so that readers see one shape.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(taskID, forKey: .taskID)
        try container.encode(exportTaskID, forKey: .exportTaskID)
        try container.encode(projectID, forKey: .projectID)
        try container.encode(attempt, forKey: .attempt)
        try container.encode(at, forKey: .at)
        try container.encode(durationMilliseconds, forKey: .durationMilliseconds)
        try container.encode(httpStatus, forKey: .httpStatus)
        try container.encode(errorCode, forKey: .errorCode)
        try container.encode(errorMessage, forKey: .errorMessage)
        try container.encode(requestID, forKey: .requestID)
        try container.encode(outcome, forKey: .outcome)
        try container.encode(delivery, forKey: .delivery)
        try container.encode(runner, forKey: .runner)
        try container.encode(leaseLost, forKey: .leaseLost)
        try container.encode(hash, forKey: .hash)
    }
}
