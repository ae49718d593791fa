@testable import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import Testing

/// The service with `auth.method: metadata` against the simulator playing the ECS metadata
/// service on 127.0.0.1 (never 169.254.169.254), and with a clock 20 minutes off. In process:
/// the wiring `run` does, with the real HTTP stack.
@Suite("Temporary credentials and the clock, against the simulator")
struct MetadataCredentialsTests {
    static let project = "metadata-project"

    /// A simulator accepting only keys its metadata service issued, which live `lifetime`.
    static func metadataSimulator(lifetime: Duration) async throws -> IoTDASimulator {
        try await IoTDASimulator.start(
            .init(projectID: project, auth: .metadataCredentials, metadata: .init(credentialLifetime: lifetime)),
            logger: Logger(label: "sim") { _ in SwiftLogNoOpLogHandler() })
    }

    /// A simulator accepting only keys its metadata service issued, a queue, and the service
    /// wired as `run` wires it.
    struct Rig {
        let simulator: IoTDASimulator
        let setup: CredentialSetup
        let client: IoTDAClient
        let store: SQLiteQueueStore
        let service: CleanerService
        let logs: CapturedLogs

        static func start(lifetime: Duration, tasks: Int, rate: Double) async throws -> Rig {
            let simulator = try await metadataSimulator(lifetime: lifetime)
            var configuration = Configuration(endpoint: simulator.endpoint, region: "cn-north-4", projectID: project)
            configuration.auth = .init(method: .metadata, metadataEndpoint: simulator.endpoint)
            let logs = CapturedLogs()
            let setup = try await CredentialSetup.start(configuration: configuration, environment: [:], logger: logs.logger())
            let client = try IoTDAClient(
                configuration: .init(endpoint: simulator.endpoint, credentials: setup.provider, concurrency: 8,
                                     requestTimeout: .seconds(5)),
                logger: logs.logger())
            let store = try TestSupport.makeStore().store
            _ = try await store.enqueue(TestSupport.items((0..<tasks).map { String(format: "meta-%04d", $0) }), now: Date())
            let service = CleanerService(
                options: CleanerOptions(projectID: project, concurrency: 8, maxRequestsPerSecond: rate,
                                        pollInterval: .milliseconds(50), drain: true, credentialsDescription: setup.description),
                store: store, transport: client,
                retry: .exponentialJitter(maxAttempts: 8, baseDelay: .milliseconds(5), maxDelay: .milliseconds(50)),
                credentials: setup.provider, credentialSource: setup.reader, logger: logs.logger())
            return Rig(simulator: simulator, setup: setup, client: client, store: store, service: service, logs: logs)
        }

        /// Runs the service to the end of the queue beside the refresher, as `run --drain` does.
        func drain() async throws {
            let refresher = try #require(setup.refresher)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await refresher.run() }
                try await service.run()
                group.cancelAll()
            }
        }

        func stop() async throws {
            try await client.shutdown()
            try await setup.shutdown()
            try await simulator.shutdown()
        }
    }

    @Test("credentials that live 20 s, over 40 s at 15 requests/s: renewed a handful of times, never used after expiry")
    func renewedOverALongRun() async throws {
        let rig = try await Rig.start(lifetime: .seconds(20), tasks: 600, rate: 15)
        let started = ContinuousClock.now
        try await rig.drain()
        let elapsed = ContinuousClock.now - started
        let counters = rig.simulator.counters
        print("20 s credentials over \(elapsed): \(counters.metadataCredentialRequests) fetches, \(counters.expiredCredentialRequests) requests signed after expiry")
        #expect(elapsed >= .seconds(38), "\(elapsed)")
        #expect(counters.successfulDeletes == 600)
        #expect(counters.acceptedWithTemporaryKey == 600)
        #expect(counters.expiredCredentialRequests == 0)
        #expect(counters.authFailures == 0)
        // Renewed at half-life (10 s): the first fetch and about four more, not one per request.
        #expect((3...8).contains(counters.metadataCredentialRequests), "\(counters.metadataCredentialRequests) fetches")
        #expect(counters.metadataTokenRequests == 1, "one session token lives 6 hours")
        #expect(rig.logs.lines.filter { $0.message == "temporary credentials renewed" }.count == counters.metadataCredentialRequests - 1)
        #expect(!rig.logs.allText.contains("expired"))
        try await rig.stop()
    }

    @Test("when renewals fail past the expiry the service pauses with one line, then resumes with the next renewal")
    func pausesWhenExpired() async throws {
        // 8 s: renewed 4 s before the expiry, which leaves a busy test machine 3 s of slack.
        let rig = try await Rig.start(lifetime: .seconds(8), tasks: 150, rate: 15)
        rig.simulator.setMetadataFailing(true)
        let message = "temporary credentials expired and no new ones could be fetched; requests paused"
        async let drained: Void = rig.drain()
        #expect(await rig.logs.wait(for: message))
        let deletedWhenPaused = rig.simulator.counters.successfulDeletes
        #expect(deletedWhenPaused < 150)
        rig.simulator.setMetadataFailing(false)
        try await drained
        let counters = rig.simulator.counters
        #expect(counters.successfulDeletes == 150)
        #expect(counters.expiredCredentialRequests == 0)
        #expect(counters.authFailures == 0)
        #expect(rig.logs.lines.filter { $0.message == "\(message)" }.count == 1)
        #expect(rig.logs.lines.contains { $0.message == "cannot renew the temporary credentials; trying again" })
        #expect(!rig.logs.allText.contains("securitytoken") && !rig.logs.allText.contains("secret"))
        // Tasks about to be sent when the keys expired were given back, not counted as attempts.
        await #expect(try rig.store.counts()[.deleted] == 150)
        try await rig.stop()
    }

    @Test("the metadata client: one session token for many fetches, a new one once after a 401, a clear error on a 500")
    func metadataClient() async throws {
        let simulator = try await Self.metadataSimulator(lifetime: .seconds(3600))
        let client = try MetadataCredentialsClient(endpoint: simulator.endpoint)
        let first = try await client.fetch()
        let second = try await client.fetch()
        #expect(first.key.ak != second.key.ak && first.key.isTemporary)
        #expect(simulator.counters.metadataTokenRequests == 1 && simulator.counters.metadataCredentialRequests == 2)

        simulator.revokeMetadataSessionTokens()
        _ = try await client.fetch()
        #expect(simulator.counters.metadataRefusals == 1)
        #expect(simulator.counters.metadataTokenRequests == 2 && simulator.counters.metadataCredentialRequests == 3)

        simulator.setMetadataFailing(true)
        let error = await #expect(throws: CleanerError.self) { _ = try await client.fetch() }
        #expect(error?.code == .runtime)
        #expect(error?.message.contains("answered 500") == true)
        #expect(simulator.counters.requests == 0, "no delete was sent")
        try await client.shutdown()
        try await simulator.shutdown()
    }

    @Test("expired credentials sign nothing: the client sends nothing, and the task is given back without an attempt")
    func expiredSignNothing() async throws {
        let simulator = try await Self.metadataSimulator(lifetime: .seconds(3600))
        let provider = CredentialProvider(.accessKey(AccessKey(ak: "EXPIREDAK", sk: "expired-secret", securityToken: "t")),
                                          source: "test", expiresAt: Date().addingTimeInterval(0.5),
                                          signing: .sdkHMACSHA256, region: "cn-north-4")
        let client = try IoTDAClient(configuration: .init(endpoint: simulator.endpoint, credentials: provider, concurrency: 1,
                                                          requestTimeout: .seconds(5)),
                                     logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let result = await client.delete(DeleteRequest(exportTaskID: "never-sent", projectID: Self.project))
        #expect(result.classification == .authRefused && result.delivery == .notSent && result.httpStatus == nil)
        #expect(simulator.counters.requests == 0)

        let service = CleanerService(
            options: CleanerOptions(projectID: Self.project), store: try TestSupport.makeStore().store, transport: client,
            retry: .exponentialJitter(maxAttempts: 8, baseDelay: .seconds(1), maxDelay: .seconds(1)),
            credentials: provider, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let task = ClaimedTask(id: 1, exportTaskID: "never-sent", projectID: nil, instanceID: nil, attempts: 2, leaseToken: "lease")
        let transition = service.transition(for: task, result: result, cancelled: false)
        #expect(transition.change == .release && transition.attempts == 2)
        #expect(transition.audit.outcome == .released && transition.audit.attempt == nil)
        try await client.shutdown()
        try await simulator.shutdown()
    }

    @Test("keys in their last second are refused as such, not as expired by the local clock (#21)")
    func keysInTheirLastSecond() async throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(CredentialProvider.expiryProblem(expiresAt: now + 2, now: now) == nil)
        #expect(CredentialProvider.expiryProblem(expiresAt: now + 0.5, now: now)
            == "expire at 2027-01-15T08:00:00.500Z, within a second by the local clock (2027-01-15T08:00:00.000Z), and temporary keys are not used in their last second; is the local clock right?")
        #expect(CredentialProvider.expiryProblem(expiresAt: now, now: now)
            == "expire at 2027-01-15T08:00:00.000Z, which by the local clock (2027-01-15T08:00:00.000Z) has passed; is the local clock right?")

        // Keys that reach the service with half a second left by its clock: the simulator names
        // their expiry, the service's clock stands still, so a slow machine changes nothing.
        let clock = ManualClock()
        let simulator = try await IoTDASimulator.start(
            .init(projectID: Self.project, auth: .metadataCredentials,
                  metadata: .init(expiresAt: clock.now().addingTimeInterval(0.5))),
            logger: Logger(label: "sim") { _ in SwiftLogNoOpLogHandler() })
        var configuration = Configuration(endpoint: simulator.endpoint, region: "cn-north-4", projectID: Self.project)
        configuration.auth = .init(method: .metadata, metadataEndpoint: simulator.endpoint)
        let error = try await #require(throws: CleanerError.self) {
            _ = try await CredentialSetup.start(configuration: configuration, environment: [:],
                                                logger: CapturedLogs().logger(), clock: clock)
        }
        #expect(error.message.contains("expire at 2027-01-15T08:00:00.500Z"), "\(error.message)")
        #expect(error.message.hasPrefix("the ECS metadata service's credentials expire at "), "\(error.message)")
        #expect(error.message.contains("within a second by the local clock"), "\(error.message)")
        #expect(!error.message.contains("has passed"), "\(error.message)")
        try await simulator.shutdown()
    }

    @Test("a clock 20 minutes behind the server's is named in the error line and the status")
    func clockOffsetNamed() async throws {
        let harness = try await ServiceHarness.start(simulator: .init(clockOffset: .seconds(20 * 60)))
        try await harness.enqueue(["skew-1", "skew-2"])
        let service = harness.service(ServiceHarness.options(drain: true))
        await #expect(throws: CleanerError.self) { try await service.run() }
        let line = try #require(harness.logs.lines.first { $0.message == "credentials refused, the local clock is off; requests paused" })
        let offset = try #require(line.metadata["clock_offset_s"].flatMap(Int.init))
        // The Date header counts whole seconds, and a busy machine answers late (-1198 seen).
        #expect((-1205 ... -1195).contains(offset), "\(offset)")
        #expect(line.metadata["cause"]?.contains("s behind the server's (signatures are refused beyond 15 minutes)") == true)
        #expect(service.statusText(counts: [:]).contains("behind the server's"))
        #expect(harness.simulator.counters.authFailures == 1)
        try await harness.shutdown()
    }
}
