// The tasks checked against their audit rows: `audit --verify` (docs/database.md, "The database").

/// What the consistency check found.
public struct ConsistencyReport: Sendable, Equatable {
    /// Tasks checked.
    public var tasks = 0
    /// Tasks that do not agree with their audit rows.
    public var inconsistent = 0
    /// The first few of them, one line each.
    public var problems: [String] = []

    /// Lines kept in `problems` at most.
    public static let shownProblems = 20

    /// Counts one task checked, and its problem (nil: none); the first few are kept, each
    /// line naming the task, its ID shown bounded and escaped.
    package mutating func add(taskID: Int, exportTaskID: String, problem: String?) {
        tasks += 1
        guard let problem else { return }
        inconsistent += 1
        if problems.count < Self.shownProblems {
            problems.append("task \(taskID) (\(ExportTaskID.shown(exportTaskID))): \(problem)")
        }
    }

    /// What is wrong with one task, or nil: the rule of docs/database.md, "The database",
    /// given what a store read (`attemptRows`: distinct attempts on record in the task's
    /// cycle; `finalRows`: its final rows, `finalOutcome` the last one's outcome).
    package static func problem(state stateText: String, attempts: Int, leased: Bool, finalRows: Int,
                                finalOutcome: String?, attemptRows: Int) -> String? {
        guard let state = TaskState(rawValue: stateText) else { return "state \(TextFormat.printable(stateText)) is unknown" }
        if state.isFinished {
            if finalRows != 1 { return "\(state.rawValue), with \(finalRows) final audit rows since its last requeue (expected 1)" }
            if finalOutcome != state.rawValue {
                return "\(state.rawValue), but its final audit row says \(finalOutcome.map(TextFormat.printable) ?? "nothing")"
            }
        } else if finalRows != 0 {
            return "\(state.rawValue), with a final audit row (\(finalOutcome.map(TextFormat.printable) ?? "?")) since its last requeue"
        }
        if state == .inProgress {
            if !leased { return "in_progress without a lease" }
            // Counted from the rows (small, never negative), not from `attempts`, which another
            // tool may have set to any integer: no arithmetic on it can overflow.
            if attemptRows != attempts && attemptRows + 1 != attempts {
                return "attempts \(attempts), but \(attemptRows) attempts on record (in progress: one ahead of them at most)"
            }
        } else if attemptRows != attempts {
            return "attempts \(attempts), but \(attemptRows) attempts on record since its last requeue"
        }
        return nil
    }
}
