import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials

struct RequeueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "requeue",
        abstract: "Puts finished tasks back to pending, with their attempt count at 0.",
        discussion: "Each requeued task gets a 'requeued' row in the audit log. IDs are of the configured project.")

    @OptionGroup var config: ConfigOption

    @Option(name: .long, help: ArgumentHelp(
        "Requeue every task in this finished state: \(TaskState.finished.map(\.rawValue).joined(separator: ", ")).",
        valueName: "state"))
    var state: String?

    @Argument(help: "Export task IDs to requeue.")
    var ids: [String] = []

    func validate() throws {
        if state != nil, !ids.isEmpty { throw ValidationError("give either --state or IDs, not both") }
        if state == nil, ids.isEmpty { throw ValidationError("give --state S or at least one ID") }
    }

    func run() async throws {
        let selection: RequeueSelection
        if let state {
            guard let parsed = TaskState(rawValue: state) else {
                throw CleanerError.configuration("--state: unknown state \"\(state)\"; expected one of \(TaskState.finished.map(\.rawValue).joined(separator: ", "))")
            }
            guard parsed.isFinished else {
                throw CleanerError.configuration("--state: only finished tasks can be requeued (\(TaskState.finished.map(\.rawValue).joined(separator: ", "))), not \(parsed.rawValue)")
            }
            selection = .state(parsed)
        } else {
            selection = .exportTaskIDs(ids)
        }
        let summary = try await config.withStore(for: .write) { _, store in
            try await store.requeue(selection, now: Date())
        }
        for id in summary.notFinished {
            Console.error("\(IDList.quoted(id)): not requeued: it is pending or in progress")
        }
        for id in summary.unknown {
            Console.error("\(IDList.quoted(id)): not in the queue")
        }
        print("requeued \(summary.requeued)")
        if !summary.unknown.isEmpty { throw ExitCode(1) }
    }
}
