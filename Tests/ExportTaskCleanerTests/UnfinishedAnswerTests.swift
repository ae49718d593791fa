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

    @Test("the metadata client's bound covers the body: an answer dripping a byte every 200 ms is cut off at 2 s")
    func metadataBodyBounded() async throws {
        let simulator = try await Self.metadataSimulator()
        let client = try MetadataCredentialsClient(endpoint: simulator.endpoint, requestTimeout: .seconds(2))
        // Both requests: the session token's PUT, then (with a token in hand) the securitykey GET.
        // Their bodies (48 and some 250 bytes) would take 10 and 50 s; a bound of 2 s leaves a
        // loaded machine time for the head.
        simulator.setMetadataDripping(every: .milliseconds(200))
        let token = try await #require(throws: CleanerError.self) { try await client.fetch() }
        #expect(token.message == "the ECS metadata service at \(simulator.endpoint) did not answer in full within 2000 ms (PUT /meta-data/latest/api/token)")
        #expect(token.exitStatus == 1)
        simulator.setMetadataDripping(every: nil)
        _ = try await client.fetch()
        simulator.setMetadataDripping(every: .milliseconds(200))
        let key = try await #require(throws: CleanerError.self) { try await client.fetch() }
        #expect(key.message == "the ECS metadata service at \(simulator.endpoint) did not answer in full within 2000 ms (GET /openstack/latest/securitykey)")
        try await client.shutdown()
        try await simulator.shutdown()
    }

    @Test("a reload during a renewal hung on an unfinished answer cancels it and renews at once")
    func reloadCancelsHungRenewal() async throws {
        let simulator = try await Self.metadataSimulator()
        // A bound far beyond the test's own wait: only the cancellation can end the hung renewal.
        let client = try MetadataCredentialsClient(endpoint: simulator.endpoint, requestTimeout: .seconds(600))
        let first = try await client.fetch()
        let provider = CredentialProvider(.accessKey(first.key), source: "metadata", expiresAt: first.expiresAt,
                                          signing: .sdkHMACSHA256, region: "cn-north-4")
        let events = EventLog<String>()
        provider.setListener { change in
            if case .replaced = change { events.append("replaced") }
        }
        let logs = CapturedLogs()
        let refresher = CredentialRefresher(provider: provider, fetchedAt: Date(), source: "metadata", logger: logs.logger()) {
            events.append("fetch")
            return try await client.fetch()
        }
        let running = Task { try await refresher.run() }

        simulator.setMetadataDripping(every: .seconds(1))
        refresher.renewSoon(probe: false)
        #expect(await events.wait { $0.contains("fetch") })
        // The securitykey GET has reached the simulator and hangs on its answer (the session
        // token is the one in hand): a bounded watch, as the server sends no events.
        #expect(try await eventually(timeout: .seconds(20)) { simulator.counters.metadataCredentialRequests == 2 })
        simulator.setMetadataDripping(every: nil)
        refresher.renewSoon(probe: true)
        #expect(await events.wait { $0.contains("replaced") })
        #expect(events.events == ["fetch", "fetch", "replaced"])
        #expect(provider.current.credentials != .accessKey(first.key))
        // A renewal cancelled for a newer one is not a failure.
        #expect(!logs.allText.contains("cannot renew"), "\(logs.allText)")

        running.cancel()
        _ = try? await running.value
        try await client.shutdown()
        try await simulator.shutdown()
    }

    @Test("a renewal cancelled by a reload: the fetch in flight ends as cancelled, the next one starts at once")
    func reloadCancelsFetchInFlight() async throws {
        let now = Date()
        let old = AccessKey(ak: "OLDKEY000000000000", sk: "old-secret", securityToken: "old-token")
        let fresh = AccessKey(ak: "NEWKEY000000000000", sk: "new-secret", securityToken: "new-token")
        let provider = CredentialProvider(.accessKey(old), source: "metadata", expiresAt: now + 3600,
                                          signing: .sdkHMACSHA256, region: "cn-north-4")
        let events = EventLog<String>()
        provider.setListener { change in
            if case .replaced = change { events.append("replaced") }
        }
        let (never, keepOpen) = AsyncStream<Never>.makeStream()
        let refresher = CredentialRefresher(provider: provider, fetchedAt: now, source: "metadata",
                                            logger: CapturedLogs().logger()) {
            let call = events.events.filter { $0 == "started" }.count + 1
            events.append("started")
            if call == 1 {
                // A metadata service that answered and never finishes: waits until cancelled.
                for await _ in never {}
                events.append("cancelled")
                throw CancellationError()
            }
            return MetadataCredentialsClient.Fetched(key: fresh, expiresAt: Date() + 3600)
        }
        let running = Task { try await refresher.run() }
        refresher.renewSoon(probe: false)
        #expect(await events.wait { $0.contains("started") })
        refresher.renewSoon(probe: true)
        #expect(await events.wait { $0.contains("replaced") })
        #expect(events.events == ["started", "cancelled", "started", "replaced"])
        #expect(provider.current.credentials == .accessKey(fresh))
        running.cancel()
        _ = try? await running.value
        keepOpen.finish()
    }

    @Test("a reload's renewal that fails still ends the pause with the next one: its probe is carried over")
    func supersededRenewalKeepsItsProbe() async throws {
        let now = Date()
        let old = AccessKey(ak: "OLDKEY000000000000", sk: "old-secret", securityToken: "old-token")
        let provider = CredentialProvider(.accessKey(old), source: "metadata", expiresAt: now + 3600,
                                          signing: .sdkHMACSHA256, region: "cn-north-4")
        let events = EventLog<String>()
        provider.setListener { change in
            if case .replaced(_, let renewal, _) = change { events.append("replaced, renewal \(renewal)") }
        }
        let (answer, finishAnswer) = AsyncStream<Never>.makeStream()
        let refresher = CredentialRefresher(provider: provider, fetchedAt: now, source: "metadata",
                                            logger: CapturedLogs().logger()) {
            let call = events.events.filter { $0 == "started" }.count + 1
            events.append("started")
            if call == 1 {
                for await _ in answer {}
                throw CleanerError.runtime("the ECS metadata service at http://127.0.0.1 did not answer: connection reset by peer")
            }
            return MetadataCredentialsClient.Fetched(
                key: AccessKey(ak: "NEWKEY000000000000", sk: "new-secret", securityToken: "new-token"), expiresAt: Date() + 3600)
        }
        let running = Task { try await refresher.run() }
        refresher.renewSoon(probe: true)  // a reload
        #expect(await events.wait { $0.contains("started") })
        refresher.renewSoon(probe: false)  // a refusal, while the reload's renewal is in flight
        finishAnswer.finish()  // which then fails: tried again after the backoff (1 s)
        #expect(await events.wait { $0.contains { $0.hasPrefix("replaced") } })
        // Not a scheduled renewal: the reload's probe goes with the new credentials.
        #expect(events.events == ["started", "started", "replaced, renewal false"])
        running.cancel()
        _ = try? await running.value
    }

    @Test("check --probe: a server that answers and does not finish is named so, not 'cannot be reached'")
    func probeUnfinishedAnswer() async throws {
        try await withClientSimulator { simulator in
            simulator.script("unfinished-1", .drip(every: .milliseconds(500), then: .notFound))
            let client = try makeClient(endpoint: simulator.endpoint, requestTimeout: .seconds(2))
            let result = await client.delete(clientRequest("unfinished-1"))
            try await client.shutdown()
            // The status line is the server's decision: the outcome, with the body missing.
            #expect(result.httpStatus == 404 && result.classification == .notFound)
            #expect(result.delivery == .answered)
            #expect(result.requestID != nil)
            #expect(result.unfinishedAnswerStatus == 404)
            #expect(result.errorMessage == "answered HTTP 404 but did not finish its answer within 2000 ms")
            let verdict = SetupCheck.explain(result)
            #expect(verdict.exitCode == 1)
            #expect(verdict.explanation.hasPrefix("answered HTTP 404 but did not finish its answer within 2000 ms: the endpoint can be reached"), "\(verdict.explanation)")
            #expect(!verdict.explanation.contains("cannot be reached"))
        }
    }
}
