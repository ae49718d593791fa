import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials

extension AuditFormat: ExpressibleByArgument {}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Prints the audit log, newest last: one row per request sent, and one per change made without a request.")

    @OptionGroup var config: ConfigOption

    @Option(name: .long, help: ArgumentHelp("Only rows of this export task ID.", valueName: "id"))
    var task: String?

    @Option(name: .long, help: ArgumentHelp(
        "Only rows of tasks now in this state: \(TaskState.allCases.map(\.rawValue).joined(separator: ", ")).",
        valueName: "state"))
    var state: String?

    @Option(name: .long, help: ArgumentHelp("Only rows with this outcome.", valueName: "outcome"))
    var outcome: String?

    @Option(name: .long, help: ArgumentHelp(
        "Only rows at or after TIME: ISO 8601 (2026-11-29, 2026-11-29T15:00:00Z) or an age (90s, 15m, 2h, 7d).",
        valueName: "time"))
    var since: String?

    @Option(name: .long, help: "table, json or csv.")
    var format: AuditFormat = .table

    @Flag(name: .long, help: ArgumentHelp(
        "Check the audit log's hash chain, and every task against its audit rows, instead of printing them.",
        discussion: "Exits 0 with the number of rows and tasks checked and the head hash, or 1 naming the first row changed, deleted, replaced or inserted out of order, and the tasks that disagree with their audit rows."))
    var verify = false

    func validate() throws {
        if verify, task != nil || state != nil || outcome != nil || since != nil || format != .table {
            throw ValidationError("--verify checks the whole log: give it without --task, --state, --outcome, --since or --format")
        }
    }

    func run() async throws {
        if verify {
            let (chain, tasks) = try await config.withStore(for: .inspect) { _, store in
                (try await store.verifyAuditChain(), try await store.checkConsistency())
            }
            if let problem = chain.problem {
                Console.error("audit chain broken after \(chain.rows) good rows: \(problem)")
            } else {
                print("audit chain verified: \(chain.rows) rows; head row \(chain.headID.map(String.init) ?? "none") hash \(chain.headHash ?? AuditChain.genesisText)")
            }
            if tasks.inconsistent > 0 {
                Console.error("tasks inconsistent with the audit log: \(tasks.inconsistent) of \(tasks.tasks)")
                for problem in tasks.problems { Console.error("  \(problem)") }
                if tasks.inconsistent > tasks.problems.count { Console.error("  … and \(tasks.inconsistent - tasks.problems.count) more") }
            } else {
                print("tasks consistent with the audit log: \(tasks.tasks) tasks")
            }
            if chain.problem != nil || tasks.inconsistent > 0 { throw ExitCode(1) }
            return
        }
        var filter = AuditFilter(exportTaskID: task)
        if let state {
            guard let parsed = TaskState(rawValue: state) else {
                throw CleanerError.configuration("--state: unknown state \"\(state)\"; expected one of \(TaskState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter.taskState = parsed
        }
        if let outcome {
            guard let parsed = AuditOutcome(rawValue: outcome) else {
                throw CleanerError.configuration("--outcome: unknown outcome \"\(outcome)\"; expected one of \(AuditOutcome.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            filter.outcome = parsed
        }
        if let since {
            guard let date = AuditFilter.since(since, now: Date()) else {
                throw CleanerError.configuration("--since: \(AuditFilter.sinceProblem(since))")
            }
            filter.since = date
        }
        try await config.withStore(for: .inspect) { _, store in
            var output = BufferedOutput()
            let writer = AuditWriter(format: format)
            output.write(writer.header)
            var first = true
            try await store.auditEntries(filter) { entry in
                output.write(try writer.row(entry, first: first))
                first = false
            }
            output.write(writer.footer(empty: first))
            output.flush()
        }
    }

}

/// Collects output and writes it to stdout in large pieces.
struct BufferedOutput {
    private var buffer: [UInt8] = []

    mutating func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        guard !buffer.isEmpty else { return }
        Console.output(buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}
