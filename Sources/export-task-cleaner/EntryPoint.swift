import ArgumentParser
import ExportTaskCleaner
import Foundation

/// Parses the command line, runs the command, and maps failures to CONTRACT.md's exit
/// statuses: 1 run-time failure, 2 bad usage or configuration, 3 credentials refused (`run --drain`).
@main
enum EntryPoint {
    static func main() async {
        do {
            var command = try ExportTaskCleanerCommand.parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch let error as CleanerError {
            Console.error("export-task-cleaner: \(error.message)")
            exit(error.exitStatus)
        } catch let error as ExitCode {
            exit(error.rawValue)
        } catch {
            let code = ExportTaskCleanerCommand.exitCode(for: error)
            if code == .success {
                ExportTaskCleanerCommand.exit(withError: error)  // --help, --version
            }
            if code == .validationFailure {
                // ArgumentParser's usage errors: CONTRACT.md says bad usage is 2.
                Console.error(ExportTaskCleanerCommand.fullMessage(for: error))
                exit(2)
            }
            Console.error("export-task-cleaner: \(error)")
            exit(1)
        }
    }
}

struct ExportTaskCleanerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-task-cleaner",
        abstract: "Deletes Huawei Cloud IoTDA export tasks queued in a SQLite database, and audits every outcome.",
        version: ExportTaskCleanerVersion.current,
        subcommands: [
            RunCommand.self, EnqueueCommand.self, StatusCommand.self, AuditCommand.self, RequeueCommand.self,
            DemoCommand.self,
            SimulateCommand.self,
            BenchStoreCommand.self,
        ]
    )
}

enum Console {
    static func error(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}
