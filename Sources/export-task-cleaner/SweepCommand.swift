import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials
import Logging

struct SweepCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Lists the project's export tasks and queues the finished ones older than an age.",
        discussion: """
            Lists every page of the project's export tasks (ListExportTasks, 50 a page) and queues each one \
            whose status is Success or Failed and whose end_time is older than --older-than. A task still \
            processing, or without an end_time, is never queued; an ID already in the queue is left as it is. \
            With --dry-run, lists and counts and queues nothing. Exits 0, 1 when a listed task was invalid or \
            the list failed, 2 for bad usage or configuration, 3 when the credentials are refused.
            """)

    @OptionGroup var config: ConfigOption

    @Option(name: .customLong("older-than"), help: ArgumentHelp(
        "Queue tasks that ended before this: an age (90s, 15m, 2h, 7d) or an ISO 8601 time.", valueName: "age"))
    var olderThan = "7d"

    @Flag(name: .customLong("dry-run"), help: "List and count; queue nothing.")
    var dryRun = false

    func run() async throws {
        guard AuditFilter.since(olderThan, now: Date()) != nil else {
            throw CleanerError.configuration("--older-than: \(AuditFilter.sinceProblem(olderThan))")
        }
        // A dry run opens no queue: it neither creates nor migrates one.
        let summary = dryRun
            ? try await sweep(configuration: config.load(), store: nil)
            : try await config.withStore(for: .write) { configuration, store in
                try await sweep(configuration: configuration, store: store)
            }
        switch summary {
        case .success(let summary):
            Self.report(summary)
            if summary.invalid > 0 { throw ExitCode(1) }
        case .failure(let failure):
            Self.report(failure.summary)
            Console.error("export-task-cleaner: sweep stopped: \(TextFormat.printable(failure.description))")
            throw ExitCode(failure.code.exitStatus)
        }
    }

    /// Lists and queues into `store` (nil: a dry run), with the configured credentials.
    private func sweep(configuration: Configuration, store: (any QueueStore)?) async throws -> Result<SweepSummary, SweepFailure> {
        let logger = Logger(label: "export-task-cleaner", factory: { _ in SwiftLogNoOpLogHandler() })
        let credentials = try await CredentialSetup.start(
            configuration: configuration, environment: ProcessInfo.processInfo.environment, logger: logger)
        let client: IoTDAClient
        do {
            client = try IoTDAClient(
                configuration: .init(endpoint: configuration.endpoint, credentials: credentials.provider, concurrency: 1,
                                     requestTimeout: configuration.requestTimeout,
                                     userAgent: "export-task-cleaner/\(ExportTaskCleanerVersion.current)"),
                logger: logger)
        } catch {
            try? await credentials.shutdown()
            throw error
        }
        let sweep = ExportTaskSweep(
            options: .init(projectID: configuration.projectID, instanceID: configuration.instanceID,
                           olderThan: olderThan, dryRun: store == nil),
            lister: client,
            retry: .exponentialJitter(maxAttempts: configuration.retry.maxAttempts,
                                      baseDelay: configuration.retry.baseDelay, maxDelay: configuration.retry.maxDelay),
            clock: SystemClock(), logger: logger)
        // Temporary credentials (`auth.method: metadata`) are renewed while the sweep lists, as
        // `run` renews them: a sweep of many pages may outlast one set.
        let refreshing = credentials.refresher.map { refresher in Task { try? await refresher.run() } }
        let result: Result<SweepSummary, SweepFailure>
        do throws(SweepFailure) {
            result = .success(try await sweep.run(store: store))
        } catch {
            result = .failure(error)
        }
        refreshing?.cancel()
        await refreshing?.value
        try? await client.shutdown()
        try? await credentials.shutdown()
        return result
    }

    private static func report(_ summary: SweepSummary) {
        for invalid in summary.invalidTasks {
            Console.error("invalid export task \(IDList.quoted(invalid.exportTaskID)): \(invalid.problem)")
        }
        if summary.invalid > summary.invalidTasks.count {
            Console.error("... and \(summary.invalid - summary.invalidTasks.count) more invalid export tasks")
        }
        print(summary.line)
    }
}
