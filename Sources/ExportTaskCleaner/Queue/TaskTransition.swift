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

    /// The audit rows a batch writes, given for each transition whether its lease held
    /// (docs/database.md, "The database"): every answer is on record, those after a lost lease
    /// marked `lease_lost`; a change made without a request is not, when its lease is gone.
    package static func auditRows(_ transitions: [TaskTransition], held: [Bool]) -> [(task: ClaimedTask, record: AuditRecord)] {
        zip(transitions, held).compactMap { transition, held in
            var record = transition.audit
            if !held {
                guard record.hasRequest else { return nil }
                record.leaseLost = true
            }
            return (transition.task, record)
        }
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
