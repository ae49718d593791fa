import ArgumentParser
import CMalloc
import ExportTaskCleaner
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Parses the command line, runs the command, and maps failures to the exit
/// statuses of docs/commands.md: 1 run-time failure, 2 bad usage or configuration, 3 credentials refused (`run --drain`).
@main
enum EntryPoint {
    static func main() async {
        // SIGHUP reloads `run` (docs/operations.md, "Reloading"), and its default action ends the process:
        // ignored from main's first statement, before argument parsing and before any thread,
        // until the reloader takes it over. Other commands keep the default.
        if CommandLine.arguments.dropFirst().first == "run" { signal(SIGHUP, SIG_IGN) }
        tuneMalloc()
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
                // ArgumentParser's usage errors: docs/commands.md says bad usage is 2.
                Console.error(ExportTaskCleanerCommand.fullMessage(for: error))
                exit(2)
            }
            Console.error("export-task-cleaner: \(error)")
            exit(1)
        }
    }
}

/// glibc gives freed memory back to the system as soon as 128 KiB are free at the top of a
/// heap, and each of the service's threads has its own heap: under load that means a steady
/// churn of returning pages and faulting them in again (about a tenth of the service's CPU
/// time, measured with `perf`). Keeping up to 64 MiB free costs nothing here: the service's
/// heaps stay far smaller than that.
private func tuneMalloc() {
    _ = mallopt(M_TRIM_THRESHOLD, 64 << 20)
}

struct ExportTaskCleanerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-task-cleaner",
        abstract: "Deletes Huawei Cloud IoTDA export tasks queued in a SQLite database, and audits every outcome.",
        version: ExportTaskCleanerVersion.current,
        subcommands: [
            RunCommand.self, CheckCommand.self, EnqueueCommand.self, SweepCommand.self, StatusCommand.self, AuditCommand.self,
            RequeueCommand.self, PruneCommand.self, BackupCommand.self,
            DemoCommand.self,
            SimulateCommand.self,
        ]
    )
}

/// Standard output and error, written with write(2): FoundationEssentials has no FileHandle.
enum Console {
    static func error(_ text: String) {
        write(Array((text + "\n").utf8), to: STDERR_FILENO)
    }

    static func output(_ text: String) {
        write(Array(text.utf8), to: STDOUT_FILENO)
    }

    static func output(_ bytes: [UInt8]) {
        write(bytes, to: STDOUT_FILENO)
    }

    /// Everything on standard input until its end, refusing it as soon as one line is longer
    /// than `maximumLine` bytes: nothing more is read, so one endless line costs no memory.
    static func readStandardInput(maximumLine: Int) throws -> [UInt8] {
        var input: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var lineStart = 0
        var lines = 1
        while true {
            let count = chunk.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
            if count > 0 {
                for (offset, byte) in chunk[0..<count].enumerated() where byte == UInt8(ascii: "\n") {
                    guard input.count + offset - lineStart <= maximumLine else { break }
                    lineStart = input.count + offset + 1
                    lines += 1
                }
                input.append(contentsOf: chunk[0..<count])
                if input.count - lineStart > maximumLine {
                    throw CleanerError.configuration(
                        "standard input, line \(lines): longer than \(maximumLine) bytes, so not an export task ID (at most \(ExportTaskID.maximumLength) characters); nothing was queued")
                }
            } else if count == 0 {
                return input
            } else if errno != EINTR {
                throw CleanerError.runtime("cannot read standard input (errno \(errno))")
            }
        }
    }

    private static func write(_ bytes: [UInt8], to descriptor: Int32) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if written > 0 {
                offset += written
            } else if written < 0, errno == EINTR {
                continue
            } else {
                return  // a closed pipe: nothing more can be said
            }
        }
    }
}
