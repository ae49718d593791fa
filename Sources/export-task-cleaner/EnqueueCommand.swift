import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials

struct EnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Queues export task IDs for deletion, from the arguments or from standard input.",
        discussion: """
            Without IDs, reads standard input: one ID a line; blank lines and lines starting with # are \
            skipped; surrounding whitespace is trimmed. All IDs are queued in one transaction. Invalid IDs \
            are recorded as 'invalid', listed on standard error with their line numbers, and make the exit \
            status 1.
            """)

    @OptionGroup var config: ConfigOption

    @Option(name: .customLong("project-id"), help: "The project of these tasks (default: the configured project_id).")
    var projectID: String?

    @Option(name: .customLong("instance-id"), help: "The Instance-Id to send for these tasks (default: the configured instance_id).")
    var instanceID: String?

    @Argument(help: "Export task IDs. Without any, IDs are read from standard input.")
    var ids: [String] = []

    /// The longest input line read: an ID has at most 36 characters, so anything much longer
    /// is not a list of IDs (and is refused before it fills the memory).
    static let maximumLine = 256

    func run() async throws {
        for (name, value, rule) in [("--project-id", projectID, IdentifierRule.projectID), ("--instance-id", instanceID, .instanceID)] {
            if let value, let problem = rule.problem(with: value) {
                throw CleanerError.configuration("\(name): \(problem) (1 to \(rule.maximumLength) letters, digits, '-' or '_')")
            }
        }
        let fromArguments = !ids.isEmpty
        let summary = try await config.withStore(for: .write) { configuration, store in
            // The configured project is stored as NULL, so a change of project_id carries it along.
            let project = projectID == configuration.projectID ? nil : projectID
            let instance = instanceID == configuration.instanceID ? nil : instanceID

            if fromArguments {
                let items = ids.enumerated().map {
                    EnqueueItem(exportTaskID: IDList.trimmed($0.element), projectID: project,
                                instanceID: instance, line: $0.offset + 1)
                }
                return try await store.enqueue(items, now: Date())
            } else {
                // Items are made as the store takes them: a list of millions is held once, as read.
                let input = try Console.readStandardInput(maximumLine: Self.maximumLine)
                return try await store.enqueue(EnqueueList(lines: input, projectID: project, instanceID: instance), now: Date())
            }
        }
        for invalid in summary.invalid {
            let place = fromArguments ? "argument \(invalid.line ?? 0)" : "line \(invalid.line ?? 0)"
            Console.error("\(place): invalid export task ID \(IDList.quoted(invalid.exportTaskID)): \(invalid.problem)")
        }
        print("queued \(summary.queued), already queued \(summary.alreadyQueued), invalid \(summary.invalid.count)")
        if !summary.invalid.isEmpty { throw ExitCode(1) }
    }
}
