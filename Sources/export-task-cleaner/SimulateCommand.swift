import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials
import IoTDASimulator
import Logging
import ServiceLifecycle

/// The simulator as its own process, for benchmarks and end-to-end tests. Hidden from help.
struct SimulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Runs the IoTDA simulator on 127.0.0.1 until SIGTERM or SIGINT, then prints its counters as JSON.",
        discussion: """
            The first line on standard output is `listening on http://127.0.0.1:PORT`. On SIGTERM or SIGINT \
            the counters follow as one JSON object (requests, successful_deletes, max_in_flight, \
            signature_failures, auth_failures, rate_limited, dropped_connections, connections, responses_by_status), \
            and the exit status is 0. Signatures are checked when --ak and --sk-file are given.
            """,
        shouldDisplay: false)

    enum MixName: String, ExpressibleByArgument, CaseIterable {
        /// Mostly 204, some 404 and 403, a few 429 and 503 (what `demo` uses).
        case realistic
        /// Every ID deleted once (204), 404 after.
        case delete
    }

    @Option(name: .long, help: "The port on 127.0.0.1 (0: any free port).")
    var port = 0

    @Option(name: .customLong("latency-ms"), help: "Milliseconds added before every answer.")
    var latencyMilliseconds = 0

    @Option(name: .customLong("rate-limit"), help: "Requests accepted per second; beyond it, 429 with Retry-After: 1.")
    var rateLimit: Int?

    @Option(name: .long, help: "How deletes are answered: realistic or delete.")
    var mix: MixName = .delete

    @Option(name: .long, help: "The access key ID requests must be signed with (needs --sk-file).")
    var ak: String?

    @Option(name: .customLong("sk-file"), help: ArgumentHelp("A file holding the secret key (needs --ak).", valueName: "path"))
    var skFile: String?

    @Option(name: .customLong("project-id"), help: "The project every request must name.")
    var projectID = "simulated-project"

    @Option(name: .long, help: "The region derived signing keys must be scoped to.")
    var region = "cn-north-4"

    func validate() throws {
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be from 0 to 65535") }
        guard latencyMilliseconds >= 0 else { throw ValidationError("--latency-ms must not be negative") }
        if let rateLimit, rateLimit < 1 { throw ValidationError("--rate-limit must be at least 1") }
        if (ak == nil) != (skFile == nil) { throw ValidationError("--ak and --sk-file go together") }
        if let ak, ak.isEmpty { throw ValidationError("--ak must not be empty") }
        guard !projectID.isEmpty else { throw ValidationError("--project-id must not be empty") }
    }

    func run() async throws {
        LogSetup.bootstrap(level: .warning)
        let logger = Logger(label: "iotda-simulator")
        var auth = IoTDASimulator.Configuration.Auth.unauthenticated
        if let ak, let skFile {
            let data: Data
            do { data = try Data(contentsOf: URL(filePath: skFile)) } catch {
                throw CleanerError.configuration("--sk-file: cannot read \(skFile)")
            }
            let sk = TextFormat.trimmed(String(decoding: data, as: UTF8.self))
            guard !sk.isEmpty else { throw CleanerError.configuration("--sk-file: \(skFile) is empty") }
            auth = .accessKey(AccessKey(ak: ak, sk: sk))
        }
        let simulator = try await IoTDASimulator.start(
            .init(port: port, projectID: projectID, auth: auth, region: region,
                  mix: mix == .realistic ? .realistic : nil, latency: .milliseconds(latencyMilliseconds),
                  rateLimit: rateLimit, arrivalHistoryLimit: 0),
            logger: logger)
        Self.write("listening on \(simulator.endpoint)\n")

        var group = ServiceGroupConfiguration(
            services: [.init(service: UntilShutdown(), successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        group.maximumGracefulShutdownDuration = .seconds(5)
        try await ServiceGroup(configuration: group).run()

        let counters = simulator.counters
        try await simulator.shutdown()
        Self.write(try Self.json(counters) + "\n")
    }

    /// Waits for graceful shutdown (SIGTERM or SIGINT), then returns.
    private struct UntilShutdown: Service {
        func run() async throws {
            try? await gracefulShutdown()
        }
    }

    private struct Report: Encodable {
        var requests: Int
        var successful_deletes: Int
        var max_in_flight: Int
        var signature_failures: Int
        var auth_failures: Int
        var rate_limited: Int
        var dropped_connections: Int
        var connections: Int
        var responses_by_status: [String: Int]
    }

    static func json(_ counters: IoTDASimulator.Counters) throws -> String {
        let report = Report(
            requests: counters.requests, successful_deletes: counters.successfulDeletes, max_in_flight: counters.maxInFlight,
            signature_failures: counters.signatureFailures, auth_failures: counters.authFailures,
            rate_limited: counters.rateLimited, dropped_connections: counters.droppedConnections,
            connections: counters.connections,
            responses_by_status: Dictionary(uniqueKeysWithValues: counters.responsesByStatus.map { (String($0.key), $0.value) }))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(report), as: UTF8.self)
    }

    private static func write(_ text: String) {
        Console.output(text)
    }
}
