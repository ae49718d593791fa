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
