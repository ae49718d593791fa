import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials
import Logging
import ServiceLifecycle

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Runs the service: works the queue until SIGTERM or SIGINT.",
        discussion: "With --drain, exits 0 once no task is pending or in progress (scheduled retries are waited for), or 3 when the service refuses the credentials.")

    @OptionGroup var config: ConfigOption

    @Flag(name: .long, help: "Exit once the queue is drained.")
    var drain = false

    func run() async throws {
        let configuration = try config.load()
        LogSetup.bootstrap(level: configuration.logLevel)
        let logger = Logger(label: "export-task-cleaner")
        let environment = ProcessInfo.processInfo.environment
        let (credentials, source) = try CredentialsLoader.load(
            method: configuration.auth.method, credentialsFile: configuration.auth.credentialsFile, environment: environment)
        let store = try SQLiteQueueStore(path: configuration.database, purpose: .write)
        if let head = try store.auditHead() {
            // Published in the journal: a chain rebuilt after an edit would not end here.
            logger.notice("audit chain head", metadata: ["audit_head_id": "\(head.id)", "audit_head_hash": "\(head.hash ?? "none")"])
        }
        for repair in store.repairs {
            logger.notice("queue file permissions set", metadata: ["file": "\(repair.path)", "change": "\(repair.change)"])
        }
        let client = try IoTDAClient(
            configuration: .init(endpoint: configuration.endpoint, credentials: credentials,
                                 signing: configuration.signingAlgorithm, region: configuration.region,
                                 concurrency: configuration.concurrency, requestTimeout: configuration.requestTimeout,
                                 userAgent: "export-task-cleaner/\(ExportTaskCleanerVersion.current)"),
            logger: logger)
        let authDescription = configuration.auth.method == .token
            ? "X-Auth-Token from \(source.rawValue)"
            : "\(credentials) from \(source.rawValue), signed \(configuration.signingAlgorithm.rawValue)"
        logger.info("configuration loaded", metadata: [
            "config": "\(config.path)", "database": "\(configuration.database)", "endpoint": "\(configuration.endpoint)",
            "project_id": "\(configuration.projectID)", "credentials": "\(authDescription)",
        ])
        let outcome = try await Self.serve(
            options: CleanerOptions(configuration: configuration, drain: drain, credentialsDescription: authDescription),
            retry: .exponentialJitter(maxAttempts: configuration.retry.maxAttempts,
                                      baseDelay: configuration.retry.baseDelay, maxDelay: configuration.retry.maxDelay),
            store: store, transport: client, logger: logger)
        try await client.shutdown()
        if outcome == .credentialsRefused {
            throw CleanerError(.credentialsRefused, "the service refused our credentials (\(authDescription)); the tasks were left pending")
        }
    }

    /// Runs the cleaner (and the systemd watchdog) in a service group that turns SIGTERM and
    /// SIGINT into a graceful shutdown.
    static func serve(options: CleanerOptions, retry: some RetryStrategy, store: any WorkQueue,
                      transport: any IoTDATransport, logger: Logger) async throws -> CleanerService.RunOutcome? {
        let notifier = SystemdNotifier()
        let liveness = LivenessMonitor()
        let cleaner = CleanerService(options: options, store: store, transport: transport, retry: retry,
                                     notifier: notifier, liveness: liveness, logger: logger)
        let watchdog = WatchdogService(notifier: notifier, monitor: liveness, logger: logger)
        var group = ServiceGroupConfiguration(
            services: [
                .init(service: cleaner, successTerminationBehavior: .gracefullyShutdownGroup,
                      failureTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: watchdog, successTerminationBehavior: .ignore),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        // The cleaner ends its own grace period and, 5 s later, its writes of outcomes (README,
        // "Behaviour under failures"); a write may block for SQLite's busy timeout (10 s) on
        // top. Past this, cancellation takes over: a backstop, not the plan.
        group.maximumGracefulShutdownDuration = options.shutdownGrace + options.outcomeWriteGrace + .seconds(15)
        do {
            try await ServiceGroup(configuration: group).run()
        } catch let error as CleanerError where error.code == .credentialsRefused {
            return .credentialsRefused
        }
        return cleaner.outcome
    }
}

enum LogSetup {
    /// Logs to standard error (journald under systemd) at the configured level.
    static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
