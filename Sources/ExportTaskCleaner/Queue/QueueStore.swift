import FoundationEssentials

/// The service's half of the storage seam, as swift-jobs' `JobQueueDriver` is: what the work
/// loop and its housekeeping need, and nothing an operator asks. A second store (PostgreSQL,
/// say) implements this alone to run the service.
///
/// Every write that ends or gives back a task is guarded by the lease token handed out by
/// `claim`, so a late or duplicate writer changes nothing.
public protocol WorkQueue: Sendable {
    /// Atomically leases up to `limit` pending tasks that are due at `now`.
    func claim(limit: Int, leaseToken: String, leaseUntil: Date, now: Date) throws -> [ClaimedTask]

    /// Applies transitions in one transaction, each with its audit row; returns, for each,
    /// whether its lease still held. Where it did not (a stale writer), the task is left as it
    /// is, and a transition with a request still gets its audit row, marked `lease_lost`.
    func apply(_ transitions: [TaskTransition]) throws -> [Bool]

    /// Extends the leases handed out under these tokens that are still held; returns the IDs of
    /// the tasks they hold.
    func renewLeases(tokens: [String], until: Date) throws -> Set<Int>

    /// Returns tasks whose lease ran out to `pending`, with a `lease_expired` audit row each.
    func expireLeases(now: Date) throws -> [ExpiredLease]

    /// Number of tasks in each state (every state present, zero when none): the status line.
    func counts() throws -> [TaskState: Int]

    /// The earliest `next_attempt_at` of a pending task.
    func nextDue() throws -> Date?

    /// Whether any task is pending (due or scheduled) or in progress.
    func hasUnfinishedTasks() throws -> Bool

    /// Changes whenever another connection commits; makes an idle poll nearly free.
    func dataVersion() throws -> Int

    /// Records that a service holds the queue, for `status`.
    func heartbeat(startedAt: Date, status: String, now: Date) throws

    /// Removes this runner's heartbeat when the service stops.
    func removeHeartbeat() throws

    /// Write transactions committed so far (for the log line at the end of a run).
    var writeTransactions: Int { get }

    /// When the oldest pending task was queued (`oldest_pending_age_seconds`).
    func oldestPendingEnqueuedAt() throws -> Date?
}

extension WorkQueue {
    public var writeTransactions: Int { 0 }
    public func oldestPendingEnqueuedAt() throws -> Date? { nil }
}

/// The operators' and feeding tools' half: `enqueue`, `requeue`, `status`, `audit`.
public protocol QueueOperations: Sendable {
    /// Queues IDs in one transaction; duplicates are counted, invalid IDs stored as `invalid`.
    func enqueue(_ items: [EnqueueItem], now: Date) throws -> EnqueueSummary

    /// Puts finished tasks back to `pending` with no attempts, with a `requeued` audit row each.
    func requeue(_ selection: RequeueSelection, now: Date) throws -> RequeueSummary

    func status(now: Date) throws -> QueueStatus

    /// Streams audit rows matching `filter`, oldest first.
    func auditEntries(_ filter: AuditFilter, _ body: (AuditEntry) throws -> Void) throws
}

/// Both halves: what `SQLiteQueueStore`, the store the product ships, implements.
public typealias QueueStore = WorkQueue & QueueOperations

/// One ID to queue, with the input line it came from (for error messages).
public struct EnqueueItem: Sendable, Equatable {
    public var exportTaskID: String
    public var projectID: String?
    public var instanceID: String?
    public var line: Int?

    public init(exportTaskID: String, projectID: String? = nil, instanceID: String? = nil, line: Int? = nil) {
        self.exportTaskID = exportTaskID
        self.projectID = projectID
        self.instanceID = instanceID
        self.line = line
    }
}

public struct EnqueueSummary: Sendable, Equatable {
    public struct Invalid: Sendable, Equatable {
        public var exportTaskID: String
        public var line: Int?
        public var problem: String
    }

    public var queued = 0
    public var alreadyQueued = 0
    public var invalid: [Invalid] = []

    public init() {}
}

/// A task leased by `claim`. Its `leaseToken` guards every write that ends or returns it.
public struct ClaimedTask: Sendable, Equatable {
    public var id: Int
    public var exportTaskID: String
    /// nil: the configured project.
    public var projectID: String?
    /// nil: the configured instance, if any.
    public var instanceID: String?
    /// Attempts this task used in this cycle before this claim (the claim wrote `attempts + 1`
    /// ahead to the database: the attempt this lease may send).
    public var attempts: Int
    /// Attempts of this cycle whose request may have reached the server but whose answer never
    /// came: a 404 now may mean that one of them deleted it.
    public var unansweredAttempts = 0
    public var leaseToken: String
    /// Why this row must not be sent — a column another tool wrote that breaks
    /// ``IdentifierRule`` or is not text — or nil when it may be. The service finishes such a
    /// task as `invalid`, with this as the audit row's message, and sends nothing.
    public var problem: String? = nil

    /// The problem with a row's identifying columns, each given as its text (nil for NULL) and
    /// whether SQLite stored it as TEXT; nil when the row may be sent.
    public static func problem(exportTaskID: String, projectID: String?, instanceID: String?,
                               nonText: [String] = []) -> String? {
        if let column = nonText.first { return "\(column): not text" }
        if let problem = IdentifierRule.exportTaskID.problem(with: exportTaskID) { return "export_task_id: \(problem)" }
        for (rule, value) in [(IdentifierRule.projectID, projectID), (.instanceID, instanceID)] {
            if let value, let problem = rule.problem(with: value) { return "\(rule.name): \(problem)" }
        }
        return nil
    }
}

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
        min(task.unansweredAttempts + (audit.delivery == .unknown ? 1 : 0), SQLiteQueueStore.maximumAttempts)
    }

    public init(task: ClaimedTask, change: Change, attempts: Int? = nil, audit: AuditRecord) {
        self.task = task
        self.change = change
        self.attempts = attempts ?? task.attempts
        self.audit = audit
    }
}

/// One `audit_log` row to write. `attempt` is nil for rows that use no attempt: changes made
/// without a request, a 401, a request cut off before it was sent.
public struct AuditRecord: Sendable, Equatable {
    public var outcome: AuditOutcome
    public var at: Date
    public var attempt: Int?
    public var durationMilliseconds: Int?
    public var httpStatus: Int?
    public var errorCode: String?
    public var errorMessage: String?
    public var requestID: String?
    public var delivery: Delivery?
    /// The answer came after the task's lease was lost: the row records it, the task row is
    /// left to whoever holds the task now (`audit_log.lease_lost`).
    public var leaseLost = false

    public init(outcome: AuditOutcome, at: Date, attempt: Int? = nil, durationMilliseconds: Int? = nil,
                httpStatus: Int? = nil, errorCode: String? = nil, errorMessage: String? = nil,
                requestID: String? = nil, delivery: Delivery? = nil) {
        self.outcome = outcome
        self.at = at
        self.attempt = attempt
        self.durationMilliseconds = durationMilliseconds
        self.httpStatus = httpStatus
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.requestID = requestID
        self.delivery = delivery
    }

    /// True when the row records a request (and so updates the task's `last_*` columns).
    var hasRequest: Bool { delivery != nil }
}

public struct ExpiredLease: Sendable, Equatable {
    public var id: Int
    public var exportTaskID: String
    public var leaseToken: String?
}

public enum RequeueSelection: Sendable, Equatable {
    case state(TaskState)
    case exportTaskIDs([String])
}

public struct RequeueSummary: Sendable, Equatable {
    public var requeued = 0
    /// Named IDs that are not in the queue.
    public var unknown: [String] = []
    /// Named IDs that are pending or in progress, so there is nothing to requeue.
    public var notFinished: [String] = []

    public init() {}
}

public struct QueueStatus: Sendable, Codable, Equatable {
    public struct LastOutcome: Sendable, Codable, Equatable {
        public var exportTaskID: String
        public var outcome: String
        public var at: String
        public var httpStatus: Int?
        public var errorCode: String?
        public var errorMessage: String?

        enum CodingKeys: String, CodingKey {
            case outcome, at
            case exportTaskID = "export_task_id"
            case httpStatus = "http_status"
            case errorCode = "error_code"
            case errorMessage = "error_message"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(exportTaskID, forKey: .exportTaskID)
            try container.encode(outcome, forKey: .outcome)
            try container.encode(at, forKey: .at)
            try container.encode(httpStatus, forKey: .httpStatus)
            try container.encode(errorCode, forKey: .errorCode)
            try container.encode(errorMessage, forKey: .errorMessage)
        }
    }

    public struct Holder: Sendable, Codable, Equatable {
        public var runner: String
        public var startedAt: String
        public var heartbeatAt: String
        public var secondsSinceHeartbeat: Double
        public var status: String?

        enum CodingKeys: String, CodingKey {
            case runner, status
            case startedAt = "started_at"
            case heartbeatAt = "heartbeat_at"
            case secondsSinceHeartbeat = "seconds_since_heartbeat"
        }
    }

    public var counts: [String: Int]
    public var oldestPendingEnqueuedAt: String?
    // Encoded by hand below so that absent values show as null.
    public var oldestPendingAgeSeconds: Double?
    public var nextRetryAt: String?
    public var lastOutcome: LastOutcome?
    public var lastError: LastOutcome?
    /// Services whose heartbeat is recent: they hold the queue now.
    public var heldBy: [Holder]
    /// The audit chain's last row (``AuditChain``): published, it shows a rebuilt chain.
    public var auditHead: AuditHead? = nil

    public struct AuditHead: Sendable, Codable, Equatable {
        public var id: Int
        public var hash: String?
    }

    enum CodingKeys: String, CodingKey {
        case auditHead = "audit_head"
        case counts
        case oldestPendingEnqueuedAt = "oldest_pending_enqueued_at"
        case oldestPendingAgeSeconds = "oldest_pending_age_seconds"
        case nextRetryAt = "next_retry_at"
        case lastOutcome = "last_outcome"
        case lastError = "last_error"
        case heldBy = "held_by"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(counts, forKey: .counts)
        try container.encode(oldestPendingEnqueuedAt, forKey: .oldestPendingEnqueuedAt)
        try container.encode(oldestPendingAgeSeconds.map { ($0 * 1000).rounded() / 1000 }, forKey: .oldestPendingAgeSeconds)
        try container.encode(nextRetryAt, forKey: .nextRetryAt)
        try container.encode(lastOutcome, forKey: .lastOutcome)
        try container.encode(lastError, forKey: .lastError)
        try container.encode(heldBy, forKey: .heldBy)
        try container.encode(auditHead, forKey: .auditHead)
    }
}

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
