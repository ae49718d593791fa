@testable import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import Testing

/// Answers that start and never finish (#21): the metadata client's bound covers the whole
/// request, connect to last byte; a reload cancels a renewal hung on such an answer and renews at
/// once; `check --probe` says the server answered but did not finish. Against the simulator on
/// 127.0.0.1, which sends the head at once and then the body a byte at a time.
@Suite("Answers that start and never finish")
struct UnfinishedAnswerTests {
    static func metadataSimulator() async throws -> IoTDASimulator {
        try await IoTDASimulator.start(
            .init(projectID: "unfinished", auth: .metadataCredentials, metadata: .init()),
            logger: Logger(label: "sim") { _ in SwiftLogNoOpLogHandler() })
    }

    @Test("the metadata client's bound covers the body: an answer dripping a byte every 50 ms is cut off at 300 ms")
    func metadataBodyBounded() async throws {
        let simulator = try await Self.metadataSimulator()
        let client = try MetadataCredentialsClient(endpoint: simulator.endpoint, requestTimeout: .milliseconds(300))
        // Both requests: the session token's PUT, then (with a token in hand) the securitykey GET.
        simulator.setMetadataDripping(every: .milliseconds(50))
        let token = try await #require(throws: CleanerError.self) { try await client.fetch() }
        #expect(token.message == "the ECS metadata service at \(simulator.endpoint) did not answer in full within 300 ms (PUT /meta-data/latest/api/token)")
        #expect(token.exitStatus == 1)
        simulator.setMetadataDripping(every: nil)
        _ = try await client.fetch()
        simulator.setMetadataDripping(every: .milliseconds(50))
        let key = try await #require(throws: CleanerError.self) { try await client.fetch() }
        #expect(key.message == "the ECS metadata service at \(simulator.endpoint) did not answer in full within 300 ms (GET /openstack/latest/securitykey)")
        try await client.shutdown()
        try await simulator.shutdown()
    }

    /// Checks `condition` every 10 ms until it holds or 20 s pass: a bounded watch on the
    /// simulator, which sends no events of its own.
    static func eventually(_ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now.advanced(by: .seconds(20))
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }
}
