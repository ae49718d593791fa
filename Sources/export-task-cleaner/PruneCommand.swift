import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials
import Logging

struct PruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Moves tasks finished longer ago than an age, with their audit history, from the database into the archive folder.",
        discussion: "The archive continues the audit chain: `audit --verify --archive DIR` checks both as one. See docs/database.md, \"Retention\".")

    @OptionGroup var config: ConfigOption

    @Option(name: .long, help: ArgumentHelp(
        "Tasks finished longer ago than AGE (90s, 15m, 2h, 7d; 0s: every finished task). Default: retention.keep_finished.",
        valueName: "age"))
    var olderThan: String?

    @Flag(name: .long, help: "Say what would be moved, and change nothing.")
    var dryRun = false

    // For the tests' crash points: many small batches.
    @Option(name: .long, help: .hidden)
    var batchRows: Int = Pruner.defaultBatchRows

    func validate() throws {
        guard (1...1_000_000).contains(batchRows) else { throw ValidationError("--batch-rows: from 1 to 1000000") }
    }

    func run() async throws {
        let configuration = try config.load()
        LogSetup.bootstrap(level: configuration.logLevel)
        let retention = configuration.retention ?? Configuration.Retention()
        let folder = configuration.retention?.archiveDirectory ?? retention.archiveFolder(database: configuration.database)
        let age: TimeInterval
        if let olderThan {
            guard let seconds = AuditFilter.ageSeconds(olderThan) else {
                throw CleanerError.configuration("--older-than: expected an age such as 90s, 15m, 2h or 7d (at most 100 years), got \(IDList.quoted(olderThan))")
            }
            age = seconds
        } else {
            guard configuration.retention != nil else {
                throw CleanerError.configuration("retention is off in the configuration (\"retention\": null): give --older-than AGE to prune anyway")
            }
            age = retention.keepFinished
        }
        let now = Date()
        let cutoff = now.addingTimeInterval(-age)
        let summary: PruneSummary
        do {
            summary = try await config.withStore(for: .write) { _, store in
                // At log_level debug, one line a batch with its lock hold (docs/commands.md).
                let pruner = Pruner(store: store, folder: folder, batchRows: batchRows, logger: Logger(label: "export-task-cleaner"))
                return try await pruner.prune(cutoff: cutoff, dryRun: dryRun, now: { Date() })
            }
        } catch let busy as Pruner.Busy {
            throw CleanerError.runtime("prune: \(busy.description); try again when it has finished")
        }
        for leftover in summary.leftoversRemoved {
            print("set aside \(TextFormat.printable(leftover)): no checkpoint records it (an interrupted prune's, or rows this database no longer has)")
        }
        let what = "\(summary.auditRows) audit rows" + (summary.firstID.map { " (rows \($0) to \(summary.lastID ?? $0))" } ?? "")
            + " and \(summary.tasks) tasks finished before \(Timestamp.format(cutoff))"
        if dryRun {
            print("would move \(what) to \(TextFormat.printable(folder))")
        } else if summary.batches == 0 {
            print("nothing to move: no task finished before \(Timestamp.format(cutoff)) has history left in the database")
        } else {
            print("moved \(what) to \(TextFormat.printable(folder)): \(summary.files.count) files, \(summary.files.first ?? "") to \(summary.files.last ?? ""); the longest batch held the write lock \(summary.longestLockHold.milliseconds) ms")
        }
        if let held = summary.heldAt {
            print("audit rows from \(held) on stay for now: a task there is not finished, finished too recently, or the queue's newest")
        }
    }
}
