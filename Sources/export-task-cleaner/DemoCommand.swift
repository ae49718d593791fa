import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials
import IoTDASimulator
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Runs the whole service against the built-in IoTDA simulator on loopback, with a fresh database and no credentials, and prints a summary.",
        discussion: """
            Starts the simulator on 127.0.0.1 (realistic mix of answers: mostly 204, some 404 and 403, a few \
            429 and 503; 20 ms latency; signatures checked with a made-up key), queues the IDs demo-000001 and on \
            in a new SQLite database in a temporary folder, sweeps in the finished export tasks older than \
            7 days of the 120 the simulator lists (as the sweep command does), and drains it with the real service. Needs no \
            configuration file and no credentials (--config is accepted, as by every command, but not read: \
            the demo writes its own in the temporary folder). Ctrl-C stops it gracefully; the summary is \
            printed either way. \
            With --database, the queue is that database instead: a PostgreSQL URL \
            (postgresql://USER@HOST:PORT/DBNAME?sslmode=MODE, its password from PGPASSWORD or systemd's \
            credential database_password, never from the URL) or a SQLite file's path. It must never have \
            been used: a database holding any task or audit row, or held by a running service, is refused \
            (exit 2), since the demo's audit rows can never be removed. Give it an empty database of its \
            own (CREATE DATABASE name OWNER your_role).
            """)

    @OptionGroup var config: ConfigOption

    @Option(name: .long, help: ArgumentHelp("How many export tasks to queue (1 to 1,000,000).", valueName: "n"))
    var tasks = 1_000

    @Option(name: .long, help: ArgumentHelp("Requests in flight at most (1 to 1,000).", valueName: "c"))
    var concurrency = 16

    @Option(name: .long, help: ArgumentHelp(
        "The queue: an empty PostgreSQL database's URL (password from PGPASSWORD) or a new SQLite file (default: a new SQLite file in a temporary folder).",
        valueName: "url-or-path"))
    var database: String?

    func validate() throws {
        guard Demo.taskRange.contains(tasks) else {
            throw ValidationError("--tasks must be from 1 to 1,000,000 (got \(tasks))")
        }
        guard Demo.concurrencyRange.contains(concurrency) else {
            throw ValidationError("--concurrency must be from 1 to 1,000 (got \(concurrency))")
        }
        if let database, database.isEmpty {
            throw ValidationError("--database must not be empty: give a PostgreSQL URL or a SQLite file's path, or leave it out")
        }
    }

    func run() async throws {
        // Warnings and errors only, to standard error: the summary on stdout stays clean. The
        // service's own warnings (a 429 halving the rate) are part of the show, so it logs errors only.
        LogSetup.bootstrap(level: .warning)
        let groupLogger = Logger(label: "export-task-cleaner")
        var serviceLogger = Logger(label: "export-task-cleaner")
        serviceLogger.logLevel = .error

        let live = isatty(1) == 1
        var progress: (@Sendable (Demo.Progress) -> Void)?
        if live {
            progress = { snapshot in Self.write("\r" + snapshot.line + "\u{1B}[K") }
        }
        Self.write("Demo: \(tasks) tasks, concurrency \(concurrency), against the IoTDA simulator on 127.0.0.1 …\n")
        let report = try await Demo.run(
            .init(tasks: tasks, concurrency: concurrency, database: database, environment: ProcessInfo.processInfo.environment),
            logger: serviceLogger, progress: progress,
            runService: { service in
                var group = ServiceGroupConfiguration(
                    services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup,
                                     failureTerminationBehavior: .gracefullyShutdownGroup)],
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    logger: groupLogger)
                group.maximumGracefulShutdownDuration = .seconds(10)
                try await ServiceGroup(configuration: group).run()
            })
        if live { Self.write("\r\u{1B}[K") }
        var shown = report
        if let path = Self.executablePath() { shown.executable = path }
        Self.write(shown.summary)
    }

    /// The path of the running binary (`/proc/self/exe`), so the printed commands work as shown.
    private static func executablePath() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func write(_ text: String) {
        Console.output(text)
    }
}
