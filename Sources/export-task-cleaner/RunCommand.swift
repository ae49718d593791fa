import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Runs the service: works the queue until SIGTERM or SIGINT; SIGHUP reloads.",
        discussion: "With --drain, exits 0 once no task is pending or in progress (scheduled retries are waited for), or 3 when the service refuses the credentials.")

    @OptionGroup var config: ConfigOption

    @Flag(name: .long, help: "Exit once the queue is drained.")
    var drain = false

    func run() async throws {
        // SIGHUP is ignored since main's first statement (EntryPoint) until the reloader listens.
        let configuration = try config.load()
        LogSetup.bootstrap(level: configuration.logLevel)
        let logger = Logger(label: "export-task-cleaner")
        // First: an address in use is a configuration error before anything else is done.
        let metrics = configuration.metricsListen.map { _ in MetricsSetup() }
        var metricsServer: MetricsServer?
        if let metrics, let address = configuration.metricsListen {
            metricsServer = try await metrics.serve(at: address, logger: logger)
        }
        let credentials = try await CredentialSetup.start(configuration: configuration,
                                                          environment: ProcessInfo.processInfo.environment, logger: logger)
        let store = try await StoreOpening.open(
            configuration: configuration, purpose: .service, environment: ProcessInfo.processInfo.environment, logger: logger)
        // Pruning on a SQLite connection of its own: planning a batch reads thousands of rows,
        // and on the service's connection it would hold up claims and outcome writes meanwhile
        // (docs/database.md, "Retention": only a batch's commit may). PostgreSQL's store is a
        // pool already.
        var ownPruneStore: (any QueueStore)?
        if configuration.retention != nil, !PostgresURL.isPostgres(configuration.database) {
            do {
                ownPruneStore = try await StoreOpening.open(
                    configuration: configuration, purpose: .write, environment: ProcessInfo.processInfo.environment, logger: logger)
            } catch {
                await store.close()
                throw error
            }
        }
        let pruneStore = configuration.retention == nil ? nil : ownPruneStore ?? store
        if let head = try await store.auditHead() {
            // Published in the journal: a chain rebuilt after an edit would not end here.
            logger.notice("audit chain head", metadata: ["audit_head_id": "\(head.id)", "audit_head_hash": "\(head.hash ?? "none")"])
        }
        let client = try IoTDAClient(
            configuration: .init(endpoint: configuration.endpoint, credentials: credentials.provider,
                                 // A reload may raise the concurrency; the pool opens only the
                                 // connections the requests in flight need.
                                 concurrency: Configuration.maximumConcurrency,
                                 requestTimeout: configuration.requestTimeout,
                                 userAgent: "export-task-cleaner/\(ExportTaskCleanerVersion.current)"),
            logger: logger)
        logger.info("configuration loaded", metadata: [
            "config": "\(config.path)", "database": "\(configuration.database)", "endpoint": "\(configuration.endpoint)",
            "project_id": "\(configuration.projectID)", "credentials": "\(credentials.description)",
        ])
        do {
            // A refused `run --drain` throws the service's own error (exit 3).
            try await Self.serve(
                configuration: configuration, configurationPath: config.path, drain: drain, credentials: credentials,
                metrics: metrics, metricsServer: metricsServer, store: store, pruneStore: pruneStore, transport: client,
                logger: logger)
        } catch {
            await metricsServer?.shutdown()
            try? await credentials.shutdown()
            try? await client.shutdown()
            await store.close()
            await ownPruneStore?.close()
            throw error
        }
        try await credentials.shutdown()
        try await client.shutdown()
        await store.close()
        await ownPruneStore?.close()
    }

    /// Runs the cleaner, the systemd watchdog, the reloader (SIGHUP) and, for temporary
    /// credentials, their refresher, in a service group that turns SIGTERM and SIGINT into a
    /// graceful shutdown.
    static func serve(configuration: Configuration, configurationPath: String, drain: Bool, credentials: CredentialSetup,
                      metrics: MetricsSetup?, metricsServer: MetricsServer?, store: any QueueStore, pruneStore: (any QueueStore)?,
                      transport: any IoTDATransport & ExportTaskLister, logger: Logger) async throws {
        let notifier = SystemdNotifier()
        let liveness = LivenessMonitor()
        let options = CleanerOptions(configuration: configuration, drain: drain, credentialsDescription: credentials.description)
        let cleaner = CleanerService(
            options: options, store: store, transport: transport,
            retry: .exponentialJitter(maxAttempts: configuration.retry.maxAttempts,
                                      baseDelay: configuration.retry.baseDelay, maxDelay: configuration.retry.maxDelay),
            notifier: notifier, liveness: liveness, credentials: credentials.provider,
            credentialSource: credentials.reader, metrics: metrics?.metrics,
            sweeping: configuration.sweep.map { .init(schedule: $0, queue: store, lister: transport) }, logger: logger)
        let watchdog = WatchdogService(notifier: notifier, monitor: liveness, logger: logger)
        let reloader = ConfigurationReloader(path: configurationPath, running: configuration, cleaner: cleaner,
                                             credentials: credentials.reader, notifier: notifier, logger: logger)
        // A group shuts its services down in reverse order: the refresher and the reloader go
        // on through the cleaner's grace period.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let refresher = credentials.refresher {
            services.append(.init(service: refresher, successTerminationBehavior: .ignore))
        }
        if let metrics, let metricsServer {
            metrics.setCollector { cleaner.collectMetrics() }
            services.append(.init(service: metricsServer, successTerminationBehavior: .ignore))
        }
        services += [
            .init(service: reloader, successTerminationBehavior: .ignore),
            .init(service: cleaner, successTerminationBehavior: .gracefullyShutdownGroup,
                  failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: watchdog, successTerminationBehavior: .ignore),
        ]
        // Last, so shut down first: no prune goes on through the cleaner's grace period.
        if let retention = configuration.retention, let pruneStore {
            let pruning = RetentionService(store: pruneStore, retention: retention, metrics: metrics?.metrics, logger: logger)
            services.append(.init(service: pruning, successTerminationBehavior: .ignore))
        }
        var group = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // The cleaner ends its own grace period and, 5 s later, its writes of outcomes (docs/operations.md,
        // "Behaviour under failures"); a write may block for SQLite's busy timeout (10 s) on
        // top. Past this, cancellation takes over: a backstop, not the plan.
        group.maximumGracefulShutdownDuration = options.shutdownGrace + options.outcomeWriteGrace + .seconds(15)
        try await ServiceGroup(configuration: group).run()
    }
}
