import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials

/// `--config PATH`, shared by every command.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The configuration file.",
        discussion: "Default: $EXPORT_TASK_CLEANER_CONFIG, else /etc/export-task-cleaner/config.json.",
        valueName: "path"))
    var config: String?

    var path: String {
        ConfigurationLoader.resolvePath(config, environment: ProcessInfo.processInfo.environment)
    }

    func load() throws -> Configuration {
        try ConfigurationLoader.load(path: path)
    }

    /// The configuration and its queue, opened for `purpose`.
    func openStore(for purpose: SQLiteQueueStore.Purpose) throws -> (Configuration, SQLiteQueueStore) {
        let configuration = try load()
        return (configuration, try SQLiteQueueStore(path: configuration.database, purpose: purpose))
    }
}
