import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials
import Logging

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Checks the configuration, the credentials and the database; with --probe, sends one delete of a made-up export task and one list of export tasks, and explains the answers.",
        discussion: "Exits 0 when everything checked works, 2 when the configuration, the credentials or the database do not; with --probe, 1 when the answer shows a problem (permission, network, server) and 3 when the credentials are refused. Nothing is written to the queue.")

    @OptionGroup var config: ConfigOption

    @Flag(name: .long, help: "Send one signed DELETE of a made-up export task ID and one list of export tasks, and explain the answers.")
    var probe = false

    func run() async throws {
        let configuration = try config.load()
        print("configuration  \(TextFormat.printable(config.path))")
        print("endpoint       \(TextFormat.printable(configuration.endpoint)) (region \(configuration.region), project \(configuration.projectID)\(configuration.instanceID.map { ", instance \($0)" } ?? ""))")
        let logger = Logger(label: "export-task-cleaner", factory: { _ in SwiftLogNoOpLogHandler() })
        let credentials: CredentialSetup
        do {
            credentials = try await CredentialSetup.start(
                configuration: configuration, environment: ProcessInfo.processInfo.environment, logger: logger)
        } catch let error as CleanerError {
            print("credentials    \(TextFormat.printable(error.message))  <- problem")
            throw ExitCode(2)
        }
        print("credentials    \(credentials.description)")
        if let expiresAt = credentials.provider.current.expiresAt {
            print("expires        \(Timestamp.format(expiresAt)) (renewed before then)")
        }
        var healthy = true
        // A PostgreSQL URL or a SQLite file's path (docs/configuration.md).
        let findings = PostgresURL.isPostgres(configuration.database)
            ? await PostgresSetupCheck.findings(
                database: configuration.database, environment: ProcessInfo.processInfo.environment,
                credentialsFile: configuration.auth.credentialsFile, logger: logger)
            : SetupCheck.database(path: configuration.database)
        for finding in findings {
            print("\(TextFormat.padRight(finding.label, to: 14)) \(finding.value)\(finding.ok ? "" : "  <- problem")")
            healthy = healthy && finding.ok
        }
        guard probe else {
            try? await credentials.shutdown()
            if !healthy { throw ExitCode(2) }
            return
        }

        let client = try IoTDAClient(
            configuration: .init(endpoint: configuration.endpoint, credentials: credentials.provider, concurrency: 1,
                                 requestTimeout: configuration.requestTimeout,
                                 userAgent: "export-task-cleaner/\(ExportTaskCleanerVersion.current)"),
            logger: logger)
        let id = SetupCheck.probeExportTaskID()
        let result = await client.delete(DeleteRequest(exportTaskID: id, projectID: configuration.projectID,
                                                       instanceID: configuration.instanceID))
        let verdict = SetupCheck.explain(result)
        print("probe          DELETE export task \(id): \(verdict.explanation)")
        // The sweep's request too (docs/commands.md, "check"): one page of one export task. Not
        // after a 401: IAM locks a key after a few refused signatures.
        var listVerdict = verdict
        if verdict.exitCode != 3 {
            let listed = await client.list(ListExportTasksRequest(projectID: configuration.projectID,
                                                                  instanceID: configuration.instanceID, limit: 1))
            listVerdict = SetupCheck.explainList(listed)
            print("probe          GET export tasks (limit 1): \(listVerdict.explanation)")
        } else {
            print("probe          GET export tasks: not sent, the credentials were refused")
        }
        try? await client.shutdown()
        try? await credentials.shutdown()
        if !healthy { throw ExitCode(2) }
        // The worse of the two: credentials refused (3) before a problem (1).
        let codes = [verdict.exitCode, listVerdict.exitCode]
        let worst: Int32 = codes.contains(3) ? 3 : (codes.max() ?? 0)
        if worst != 0 { throw ExitCode(worst) }
    }
}
