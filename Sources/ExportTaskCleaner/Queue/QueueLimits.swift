import FoundationEssentials

/// Bounds every store keeps, so that the service reads the same queue the same way on any of
/// them (docs/database.md, "The database").
public enum QueueLimits {
    /// `attempts` and `unanswered_attempts` stop counting here: a column another tool set
    /// huge cannot overflow the arithmetic on it.
    public static let maximumAttempts = 1_000_000

    /// A service whose heartbeat is older than this no longer holds the queue (`status`).
    public static let heartbeatFreshness: TimeInterval = 30
}
