/// A pruned `export_tasks` row as an archive holds it (docs/database.md, "Retention"): one
/// JSON line `{"task": {...}}` beside the audit rows, every column by its name, null included.
public struct ArchivedTask: Sendable, Codable, Equatable {
    public var id: Int
    public var exportTaskID: String
    public var projectID: String?
    public var instanceID: String?
    public var state: String
    public var attempts: Int?
    public var unansweredAttempts: Int?
    public var enqueuedAt: String?
    public var nextAttemptAt: String?
    public var finishedAt: String?
    public var lastHTTPStatus: Int?
    public var lastErrorCode: String?
    public var lastErrorMessage: String?
    public var lastRequestID: String?

    enum CodingKeys: String, CodingKey {
        case id, state, attempts
        case exportTaskID = "export_task_id"
        case projectID = "project_id"
        case instanceID = "instance_id"
        case unansweredAttempts = "unanswered_attempts"
        case enqueuedAt = "enqueued_at"
        case nextAttemptAt = "next_attempt_at"
        case finishedAt = "finished_at"
        case lastHTTPStatus = "last_http_status"
        case lastErrorCode = "last_error_code"
        case lastErrorMessage = "last_error_message"
        case lastRequestID = "last_request_id"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(exportTaskID, forKey: .exportTaskID)
        try container.encode(projectID, forKey: .projectID)
        try container.encode(instanceID, forKey: .instanceID)
        try container.encode(state, forKey: .state)
        try container.encode(attempts, forKey: .attempts)
        try container.encode(unansweredAttempts, forKey: .unansweredAttempts)
        try container.encode(enqueuedAt, forKey: .enqueuedAt)
        try container.encode(nextAttemptAt, forKey: .nextAttemptAt)
        try container.encode(finishedAt, forKey: .finishedAt)
        try container.encode(lastHTTPStatus, forKey: .lastHTTPStatus)
        try container.encode(lastErrorCode, forKey: .lastErrorCode)
        try container.encode(lastErrorMessage, forKey: .lastErrorMessage)
        try container.encode(lastRequestID, forKey: .lastRequestID)
    }
}

/// One line of an archive file: an audit row (the keys of `audit --format json`) or a task.
package struct ArchiveLine: Decodable {
    package var task: ArchivedTask?
}
