import FoundationEssentials

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
