import ExportTaskCleaner
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A stand-in for IoTDA's export-task delete and list APIs on 127.0.0.1, built on SwiftNIO.
///
/// Answers `DELETE /v5/iot/{project_id}/export-tasks/{export_task_id}` as IoTDA would: it checks
/// authentication (a signature by ``SignatureVerifier``, or a token), that the path's project
/// (and `X-Project-Id`) is the configured one — 403 `IOTDA.000003` otherwise, as IoTDA refuses a
/// project the credentials do not belong to — and the `Instance-Id` when one is configured
/// (also 403); then answers by the ID's ``Behaviour``. `GET /v5/iot/{project_id}/export-tasks`
/// (ListExportTasks) is checked the same way and answers pages of ``ExportTask``s by `limit`,
/// `marker` and `offset`, or the answers scripted by ``scriptList(_:)``. Every answer carries an `X-Request-Id`
/// and a `Date` from the simulator's clock (the real clock plus ``Configuration/clockOffset``).
/// With ``Configuration/metadata`` set, the ECS metadata service's credential routes are served
/// too (``MetadataService``). Anything else gets 404 `APIGW.0101`.
///
/// Tests, the `demo` command and benchmarks share it. Runs on NIO's shared event loop group.
public final class IoTDASimulator: Sendable {
    /// The port listened on.
    public let port: Int
    private let core: SimulatorCore
    private let serverChannel: any Channel
    private let connections: ConnectionRegistry
    private let logger: Logger

    /// `http://127.0.0.1:PORT`.
    public var endpoint: String { "http://127.0.0.1:\(port)" }

    private init(port: Int, core: SimulatorCore, serverChannel: any Channel, connections: ConnectionRegistry, logger: Logger) {
        self.port = port
        self.core = core
        self.serverChannel = serverChannel
        self.connections = connections
        self.logger = logger
    }

    /// Starts listening on 127.0.0.1 (port 0: any free port).
    public static func start(_ configuration: Configuration, logger: Logger) async throws -> IoTDASimulator {
        let core = SimulatorCore(configuration: configuration, logger: logger)
        let registry = ConnectionRegistry()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                registry.add(channel)
                core.connectionAccepted()
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withPipeliningAssistance: true, withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(SimulatorHandler(core: core))
                }
            }
            .bind(host: "127.0.0.1", port: configuration.port)
            .get()
        guard let port = channel.localAddress?.port else {
            try? await channel.close()
            throw CleanerError.runtime("the IoTDA simulator could not determine its port")
        }
        logger.info(
            "IoTDA simulator listening",
            metadata: [
                "endpoint": "http://127.0.0.1:\(port)", "project_id": "\(configuration.projectID)",
                "latency_ms": "\(configuration.latency.components.seconds * 1000 + configuration.latency.components.attoseconds / 1_000_000_000_000_000)",
                "rate_limit": "\(configuration.rateLimit.map(String.init) ?? "none")",
            ])
        return IoTDASimulator(port: port, core: core, serverChannel: channel, connections: registry, logger: logger)
    }

    /// Stops listening and closes every open connection (answers still scheduled are lost).
    public func shutdown() async throws {
        try? await serverChannel.close()
        for channel in connections.all {
            try? await channel.close()
        }
        logger.debug("IoTDA simulator stopped", metadata: ["port": "\(port)"])
    }

    /// Sets how deletes of `exportTaskID` are answered from now on (its counts start afresh).
    public func script(_ exportTaskID: String, _ behaviour: Behaviour) {
        core.script(exportTaskID, behaviour)
    }

    /// Adds export tasks to what ListExportTasks lists (an ID listed already is replaced).
    public func addExportTasks(_ tasks: [ExportTask]) {
        core.addExportTasks(tasks)
    }

    /// The export tasks listed now, newest first (a delete answered 204 removes one).
    public var exportTasks: [ExportTask] { core.exportTasks }

    /// Answers the next list requests (after authentication) with these, in order, instead of
    /// the page asked for.
    public func scriptList(_ answers: [ListAnswer]) {
        core.scriptList(answers)
    }

    /// What the simulator has seen and answered so far.
    public var counters: Counters { core.counters }

    /// Requests received for `exportTaskID`.
    public func attempts(for exportTaskID: String) -> Int { core.counters.attempts(for: exportTaskID) }

    /// Deletions performed for `exportTaskID` (0 or 1 unless something is badly wrong).
    public func deleteCount(for exportTaskID: String) -> Int { core.counters.deleteCount(for: exportTaskID) }

    /// Every ID deleted at least once.
    public var deletedIDs: Set<String> { core.counters.deletedIDs }

    /// The configuration it started with (``setAuth(_:)`` and ``setClockOffset(_:)`` do not
    /// change it).
    public var configuration: Configuration { core.configuration }

    // MARK: Credentials and the clock

    /// Replaces the credentials requests must authenticate with, from the next request on: a key
    /// rotation (the old key gets 401 afterwards).
    public func setAuth(_ auth: Configuration.Auth) {
        core.setAuth(auth)
    }

    /// Sets the simulator's clock to the real clock plus `offset`, from the next request on:
    /// `X-Sdk-Date` is checked against it, answers' `Date` and issued keys' expiry follow it.
    public func setClockOffset(_ offset: Duration) {
        core.setClockOffset(offset)
    }

    // MARK: The metadata service

    /// Makes every metadata session token handed out so far unknown: the next
    /// `GET /openstack/latest/securitykey` with one gets 401, until the client asks a new token.
    public func revokeMetadataSessionTokens() {
        core.metadata.revokeSessions()
    }

    /// While `failing`, both metadata routes answer 500.
    public func setMetadataFailing(_ failing: Bool) {
        core.metadata.setFailing(failing)
    }

    /// While `interval` is set, both metadata routes send their answer's head at once and then
    /// its body one byte every `interval`: a metadata service that answers and never seems to
    /// finish. Requests already dripping go on dripping.
    public func setMetadataDripping(every interval: Duration?) {
        core.metadata.setDrip(interval)
    }

    /// The access key IDs of the temporary keys the metadata service issued, oldest first
    /// (those still held: keys expired more than five minutes before a newer one was issued
    /// are forgotten).
    public var issuedAccessKeyIDs: [String] { core.metadata.issuedAccessKeyIDs }
}

/// The open connections, so ``IoTDASimulator/shutdown()`` can close them. Shared between the
/// bootstrap's initializer (which runs before the simulator object exists) and the simulator.
private final class ConnectionRegistry: Sendable {
    let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

    func add(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        channels.withLock { $0[key] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = channels.withLock { $0.removeValue(forKey: key) }
        }
    }

    var all: [any Channel] { channels.withLock { Array($0.values) } }
}
