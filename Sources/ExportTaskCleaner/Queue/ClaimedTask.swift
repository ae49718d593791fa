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
