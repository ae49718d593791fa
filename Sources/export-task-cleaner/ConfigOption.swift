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

    /// Runs `body` with the configuration and its queue, opened for `purpose`; closes the
    /// queue after it, whichever way it ends.
    func withStore<T>(for purpose: StorePurpose,
                      _ body: (Configuration, any QueueStore) async throws -> T) async throws -> T {
        let configuration = try load()
        let store = try await StoreOpening.open(configuration: configuration, purpose: purpose,
                                                environment: ProcessInfo.processInfo.environment)
        do {
            let result = try await body(configuration, store)
            await store.close()
            return result
        } catch {
            await store.close()
            throw error
        }
    }
}
