/// Where a task is in its life. Stored as text in `export_tasks.state`.
public enum TaskState: String, Sendable, CaseIterable, Codable {
    case pending
    case inProgress = "in_progress"
    case deleted
    case notFound = "not_found"
    /// A 404 after an earlier attempt of this cycle whose answer never came (docs/database.md, "The
    /// database"): that request may be what deleted it.
    case notFoundAfterUnknown = "not_found_after_unknown"
    case forbidden
    case rejected
    case invalid
    case failed

    /// States a task ends in; `requeue` takes these.
    public static let finished: [TaskState] = [.deleted, .notFound, .notFoundAfterUnknown, .forbidden, .rejected, .invalid, .failed]

    public var isFinished: Bool { Self.finished.contains(self) }
}

/// What one audit row records. Stored as text in `audit_log.outcome`.
public enum AuditOutcome: String, Sendable, CaseIterable, Codable {
    // With a request.
    case deleted
    case notFound = "not_found"
    case notFoundAfterUnknown = "not_found_after_unknown"
    case forbidden
    case rejected
    case retry
    case failed
    case authRefused = "auth_refused"
    // Without a request.
    case invalid
    case requeued
    /// Queued by a sweep (docs/database.md): the row's `error_message` says which sweep and what
    /// the list said of the task. Tasks fed by `enqueue` get no row.
    case queued
    case leaseExpired = "lease_expired"
    case released
}

extension AuditOutcome {
    /// Outcomes that end a task (in the state of the same name).
    public var finishes: Bool { TaskState(rawValue: rawValue)?.isFinished ?? false }
}
