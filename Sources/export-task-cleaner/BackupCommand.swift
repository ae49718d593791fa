import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Writes a consistent copy of the queue (SQLite) to a new file, while the service runs.",
        discussion: """
            The copy is one snapshot of the database, compact and with no -wal file beside it; the service and \
            the feeders go on writing meanwhile. PATH must not exist: a backup never replaces a file, and a \
            crash leaves PATH whole or absent. A PostgreSQL queue is backed up with pg_dump instead. To \
            restore, see docs/operations.md, "Backup and restore".
            """)

    @OptionGroup var config: ConfigOption

    @Argument(help: ArgumentHelp("The file to write.", valueName: "path"))
    var path: String

    func run() async throws {
        let configuration = try config.load()
        if PostgresURL.isPostgres(configuration.database) {
            throw CleanerError.configuration(
                "backup: the queue is in PostgreSQL; back it up with pg_dump (docs/operations.md, \"Backup and restore\")")
        }
        let (location, summary) = try await config.withStore(for: .inspect) { _, store in
            guard let backup = store as? any QueueBackup else {
                throw CleanerError.configuration("backup: this store cannot be backed up by export-task-cleaner")
            }
            return (store.location, try await backup.backup(to: path))
        }
        let head = summary.auditHead.map { "audit row \($0.id), hash \(TextFormat.printable($0.hash ?? "none"))" } ?? "no audit rows"
        print("backup of \(TextFormat.printable(location)) written to \(TextFormat.printable(summary.path)): "
              + "\(summary.bytes) bytes, \(summary.tasks) tasks, \(head)")
    }
}
