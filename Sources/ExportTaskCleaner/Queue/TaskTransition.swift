import FoundationEssentials

/// What happens to a leased task, written together with its audit row.
public struct TaskTransition: Sendable {
    public enum Change: Sendable, Equatable {
        /// The task ends in this state.
        case finish(TaskState)
        /// The task goes back to `pending`, due at the given time.
        case retry(at: Date)
        /// The task goes back to `pending` as it was: no request was sent for it.
        case release
    }

    public var task: ClaimedTask
    public var change: Change
    /// The task's `attempts` afterwards: attempts it used in this cycle (the one written ahead
    /// at the claim is given back when no request may have left).
    public var attempts: Int
    public var audit: AuditRecord

    /// The task's `unanswered_attempts` afterwards.
    public var unansweredAttempts: Int {
        min(task.unansweredAttempts + (audit.delivery == .unknown ? 1 : 0), QueueLimits.maximumAttempts)
    }

    public init(task: ClaimedTask, change: Change, attempts: Int? = nil, audit: AuditRecord) {
        self.task = task
        self.change = change
        self.attempts = attempts ?? task.attempts
        self.audit = audit
    }
}

public struct ExpiredLease: Sendable, Equatable {
    public var id: Int
    public var exportTaskID: String
    public var leaseToken: String?
}
