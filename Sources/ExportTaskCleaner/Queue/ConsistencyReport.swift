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
}
