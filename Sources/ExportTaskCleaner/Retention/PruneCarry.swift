/// What the archived rows of a leaving task's current cycle counted, while its later rows and
/// its task row are still in the database (``PruneCut``): kept in the database
/// (`audit_archive_carry`, docs/database.md, "Retention") so the consistency check counts them.
/// Counted by the rule of ``ConsistencyReport``.
public struct PruneCarry: Sendable, Equatable {
    public var taskID: Int
    public var exportTaskID: String
    /// Final rows (not `lease_lost`), and the last one's outcome.
    public var finals = 0
    public var finalOutcome: String?
    /// Distinct attempt numbers on record.
    public var attempts: Set<Int> = []
    /// A `requeued` row was among them: what came before it no longer counts.
    public var restarted = false

    public init(taskID: Int, exportTaskID: String) {
        self.taskID = taskID
        self.exportTaskID = exportTaskID
    }

    /// Counts one archived row of the task, in ID order.
    package mutating func add(_ entry: AuditEntry) {
        if entry.outcome == AuditOutcome.requeued.rawValue {
            (finals, finalOutcome, attempts, restarted) = (0, nil, [], true)
            return
        }
        if AuditOutcome(rawValue: entry.outcome)?.finishes == true, !entry.leaseLost {
            finals += 1
            finalOutcome = entry.outcome
        }
        if let attempt = entry.attempt, entry.outcome != AuditOutcome.authRefused.rawValue,
           !(entry.outcome == AuditOutcome.released.rawValue && entry.delivery == Delivery.notSent.rawValue) {
            attempts.insert(attempt)
        }
    }

    /// This batch's count after an earlier batch's (`earlier`), unless this one restarted.
    package func after(_ earlier: PruneCarry?) -> PruneCarry {
        guard let earlier, !restarted else { return self }
        var merged = self
        merged.finals = earlier.finals + finals
        merged.finalOutcome = finalOutcome ?? earlier.finalOutcome
        merged.attempts = earlier.attempts.union(attempts)
        merged.restarted = earlier.restarted
        return merged
    }

    /// The attempts as stored: ascending, comma-separated.
    package var attemptsText: String { attempts.sorted().map(String.init).joined(separator: ",") }

    /// Attempts as stored, read back bounded (a column is input).
    package static func attempts(_ text: String?) -> Set<Int> {
        guard let text else { return [] }
        return Set(text.split(separator: ",").prefix(QueueLimits.maximumAttempts).compactMap { Int($0) })
    }
}
