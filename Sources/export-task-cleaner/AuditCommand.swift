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

    @Option(name: .long, help: ArgumentHelp(
        "The archive folder (docs/database.md, \"Retention\"): with --verify, check the archives and the database as one chain from the first row; with --task, print the task's archived rows too.",
        valueName: "dir"))
    var archive: String?

    func validate() throws {
        if verify, task != nil || state != nil || outcome != nil || since != nil || format != .table {
            throw ValidationError("--verify checks the whole log: give it without --task, --state, --outcome, --since or --format")
        }
        if archive != nil, !verify, task == nil {
            throw ValidationError("--archive goes with --verify or --task")
        }
    }

    func run() async throws {
        if verify {
            let (chain, tasks, archived) = try await config.withStore(for: .inspect) { _, store in
                var archived: ArchiveVerification?
                if let archive {
                    let verification = ArchiveVerification.verify(try await store.archiveCheckpoints(), folder: archive)
                    archived = verification
                    if let problem = verification.problem {
                        return (AuditVerification(rows: verification.rows, problem: problem), try await store.checkConsistency(), archived)
                    }
                }
                return (try await store.verifyAuditChain(continuing: archived?.walker), try await store.checkConsistency(), archived)
            }
            if let archived {
                for leftover in archived.leftovers {
                    print("\(TextFormat.printable(leftover)): past the checkpoint and recorded by none (an interrupted prune's, its rows still in the database, or rows this database no longer has); the next prune sets it aside")
                }
                if archived.problem == nil {
                    print("archives verified: \(archived.files) files, \(archived.rows) audit rows, \(archived.tasks) tasks")
                }
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
            if let task {
                if let archive {
                    let checkpoints = try await store.archiveCheckpoints()
                    for found in try TaskArchiveSearch.rows(of: task, checkpoints: checkpoints, folder: archive) {
                        Console.error("\(IDList.quoted(task)): \(found.rows.count) audit row\(found.rows.count == 1 ? "" : "s") archived at \(TextFormat.printable(found.checkpoint.archivedAt)) in \(TextFormat.printable(archive + "/" + found.checkpoint.file))")
                        for entry in found.rows where filter.matches(entry) {
                            output.write(try writer.row(entry, first: first))
                            first = false
                        }
                    }
                } else if let last = try await store.lastArchiveCheckpoint() {
                    Console.error("audit rows 1 to \(last.lastID) were archived (the last of them at \(TextFormat.printable(last.archivedAt))) to \(last.sequence) files; `audit --task ID --archive DIR` reads them too")
                }
            }
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
