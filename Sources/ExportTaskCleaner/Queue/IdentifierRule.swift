/// The rule for the identifiers that go into a request's path and headers — export task ID,
/// project ID, instance ID — wherever they come from: the configuration, the command line, or a
/// row another tool wrote (docs/operations.md, "Behaviour under failures"). IoTDA's own: 1 to
/// `maximumLength` ASCII letters, digits, `_` or `-`; so never empty, never `.` or `..`, never a
/// control character, a `/` or a space.
public struct IdentifierRule: Sendable {
    /// The configuration key or column it is checked for, for messages.
    public let name: String
    public let maximumLength: Int

    public static let exportTaskID = IdentifierRule(name: "export_task_id", maximumLength: ExportTaskID.maximumLength)
    /// Huawei Cloud project IDs are 32 hexadecimal digits; the bound leaves room.
    public static let projectID = IdentifierRule(name: "project_id", maximumLength: 64)
    /// IoTDA instance IDs are UUIDs (36 characters); the bound leaves room.
    public static let instanceID = IdentifierRule(name: "instance_id", maximumLength: 64)

    public func isValid(_ value: String) -> Bool {
        problem(with: value) == nil
    }

    /// Why `value` breaks the rule, for a message; nil when it is valid.
    public func problem(with value: String) -> String? {
        if value.isEmpty { return "empty" }
        if !value.utf8.allSatisfy(ExportTaskID.isAllowed) {
            return "only letters, digits, '_' and '-' are allowed"
        }
        if value.utf8.count > maximumLength { return "longer than \(maximumLength) characters" }
        return nil
    }
}
