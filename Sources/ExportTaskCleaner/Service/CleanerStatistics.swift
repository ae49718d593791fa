/// What the service has done since it started, for `STATUS=`, the progress log and `demo`.
public struct CleanerStatistics: Sendable, Equatable {
    /// Requests sent (answered or not).
    public var requests = 0
    /// Audit rows written, by outcome.
    public var outcomes: [AuditOutcome: Int] = [:]
    /// Answers recorded in the audit log only, because the task's lease had been taken over
    /// meanwhile (`lease_lost`).
    public var staleOutcomes = 0
    /// Claimed tasks dropped unsent because their lease lapsed before their turn.
    public var lapsedLeases = 0
    public var inFlight = 0

    public init() {}

    public subscript(outcome: AuditOutcome) -> Int {
        outcomes[outcome, default: 0]
    }

    /// Tasks that reached a final state.
    public var finished: Int {
        AuditOutcome.allCases.filter(\.finishes).reduce(0) { $0 + self[$1] }
    }
}
