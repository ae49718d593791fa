import Foundation
import Logging
import Synchronization
import Testing

@testable import ExportTaskCleaner

/// The pieces of credentials that change while the service runs: the provider, the circuit's
/// answers to new and expired credentials, the refresh schedule, the clock diagnosis, the
/// metadata answer's parsing, the reload and the check's verdicts.
@Suite("Credential lifecycle")
struct CredentialLifecycleTests {
    static let keyA = AccessKey(ak: "AKAAAAAAAAAAAAAAAAAA", sk: "secret-a")
    static let keyB = AccessKey(ak: "AKBBBBBBBBBBBBBBBBBB", sk: "secret-b")
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    // MARK: Provider

    @Test("the provider hands out nothing at or after the expiry, and tells its listener what changed")
    func provider() {
        let provider = CredentialProvider(.accessKey(Self.keyA), source: "test", expiresAt: Self.t0,
                                          signing: .sdkHMACSHA256, region: "cn-north-4")
        #expect(provider.authorization(at: Self.t0.addingTimeInterval(-1.001)) != nil)
        #expect(provider.authorization(at: Self.t0.addingTimeInterval(-1)) == nil)
        #expect(!provider.isUsable(at: Self.t0.addingTimeInterval(-1)))

        let changes = Mutex<[CredentialProvider.Change]>([])
        provider.setListener { change in changes.withLock { $0.append(change) } }
        provider.expire(at: Self.t0.addingTimeInterval(-1.5))  // not expired yet: nothing
        provider.expire(at: Self.t0)
        provider.replace(.accessKey(Self.keyA), source: "test")
        provider.replace(.accessKey(Self.keyB), source: "test")
        provider.replace(.accessKey(Self.keyA), source: "metadata", expiresAt: Self.t0, renewal: true)
        #expect(changes.withLock { $0 } == [
            .expired(generation: 0), .replaced(newKey: false, renewal: false, generation: 1),
            .replaced(newKey: true, renewal: false, generation: 2), .replaced(newKey: false, renewal: true, generation: 3),
        ])
        #expect(provider.current.generation == 3)
        #expect(provider.expiredGeneration(at: Self.t0) == 3)
        #expect("\(provider)".contains("AKAA…") && "\(provider)".contains("signed SDK-HMAC-SHA256") && !"\(provider)".contains("secret"))
    }

    // MARK: Circuit

    @Test("credentials read again end a pause at once, a renewal only a wait for credentials; a new key is verified first")
    func circuitAnswersCredentials() {
        let now = ContinuousClock.now
        var circuit = CredentialCircuit()
        circuit.accepted()
        circuit.credentialsReplaced(newKey: false, renewal: true, generation: 1)
        #expect(circuit.state == .verified)
        circuit.credentialsReplaced(newKey: true, renewal: false, generation: 2)
        #expect(circuit.state == .unverified)

        circuit.accepted()
        #expect(circuit.refused(now: now, generation: 2) == CredentialCircuit.initialPause)
        #expect(circuit.allowance(now: now) == 0)
        circuit.credentialsReplaced(newKey: false, renewal: true, generation: 3)
        #expect(circuit.isOpen, "a renewal does not end a refusal's pause")
        circuit.credentialsReplaced(newKey: true, renewal: false, generation: 4)
        #expect(circuit.state == .probing)
        #expect(circuit.allowance(now: now) == 1)

        let paused = circuit.credentialsExpired(generation: 4), pausedAgain = circuit.credentialsExpired(generation: 4)
        #expect(paused && !pausedAgain)
        #expect(circuit.allowance(now: now.advanced(by: .seconds(3600))) == 0)
        #expect(circuit.state.holdsRequests)
        circuit.credentialsReplaced(newKey: false, renewal: true, generation: 5)
        #expect(circuit.state == .probing)
        #expect(!circuit.state.holdsRequests)
    }

    @Test("answers to requests signed before the expiry end no wait for new credentials: a 204, a 401")
    func answersWhileAwaiting() {
        let now = ContinuousClock.now
        var circuit = CredentialCircuit()
        circuit.accepted()
        let paused = circuit.credentialsExpired(generation: 0)
        #expect(paused)
        circuit.accepted()
        #expect(circuit.state == .awaitingCredentials, "a 204 in flight at the expiry")
        let pause = circuit.refused(now: now, generation: 0)
        #expect(pause == nil)
        #expect(circuit.state == .awaitingCredentials && circuit.consecutiveRefusals == 0, "a 401 in flight at the expiry")
        let pausedAgain = circuit.credentialsExpired(generation: 0)
        #expect(!pausedAgain, "the next task finding them expired says nothing again")
        circuit.credentialsReplaced(newKey: false, renewal: true, generation: 1)
        #expect(circuit.state == .probing)
        circuit.accepted()
        #expect(circuit.state == .verified)
    }

    @Test("news about older credentials changes nothing: a late expiry, a late 401")
    func olderGenerations() {
        let now = ContinuousClock.now
        var circuit = CredentialCircuit()
        circuit.accepted()
        circuit.credentialsReplaced(newKey: false, renewal: true, generation: 2)
        let stale = circuit.credentialsExpired(generation: 1)
        #expect(!stale && circuit.state == .verified)
        #expect(circuit.refused(now: now, generation: 1) == nil)
        #expect(circuit.state == .verified && circuit.consecutiveRefusals == 0)
        #expect(circuit.refused(now: now, generation: 2) != nil)
    }

    @Test("a pause that has ended opens its probe only for the work loop")
    func probeOnlyFromTheLoop() {
        let now = ContinuousClock.now
        var circuit = CredentialCircuit()
        _ = circuit.refused(now: now)
        let later = now.advanced(by: CredentialCircuit.initialPause)
        #expect(circuit.allowance(now: later, mayStartProbe: false) == 0)
        #expect(circuit.isOpen)
        #expect(circuit.allowance(now: later) == 1)
        #expect(circuit.state == .probing)
    }

    @Test("the source is read again once, as the pause ends and before the probe goes")
    func beforeProbe() {
        let reads = Atomic<Int>(0)
        let traffic = TrafficControl(rate: 100, concurrency: 4, beforeProbe: { reads.add(1, ordering: .relaxed) })
        let now = ContinuousClock.now
        #expect(traffic.observe(DeleteResult(classification: .authRefused, delivery: .answered, httpStatus: 401), now: now)
            == .circuitOpened(pause: CredentialCircuit.initialPause, refusals: 1))
        #expect(traffic.freeSlots(inFlight: 0, now: now).free == 0)
        #expect(reads.load(ordering: .relaxed) == 0)
        let later = now.advanced(by: CredentialCircuit.initialPause)
        #expect(traffic.freeSlots(inFlight: 0, now: later).free == 1)
        #expect(traffic.freeSlots(inFlight: 0, now: later).free == 1)
        #expect(reads.load(ordering: .relaxed) == 1)
    }

    @Test("a reload's limits apply at once; a 429 slow-down in progress stays below them")
    func reconfigureLimits() {
        var limits = AdaptiveLimits(maxRate: 20, maxConcurrency: 8)
        limits.reconfigure(maxRate: 50, maxConcurrency: 16)
        #expect(limits.rate == 50 && limits.concurrency == 16)
        let throttled = limits.throttled(now: .now)
        #expect(throttled)
        limits.reconfigure(maxRate: 100, maxConcurrency: 32)
        #expect(limits.rate == 25 && limits.concurrency == 8 && limits.maxRate == 100)
        limits.reconfigure(maxRate: 10, maxConcurrency: 2)
        #expect(limits.rate == 10 && limits.concurrency == 2)
    }

    @Test("a reload's concurrency changes what the loop claims ahead")
    func reconfiguredPrefetch() {
        var machine = WorkLoopStateMachine(
            configuration: .init(prefetch: 4, drain: false, idleTick: .seconds(1), shutdownGrace: .seconds(10)),
            state: .init(phase: .awaitingEvent))
        let now = Date()
        #expect(machine.on(.reconfigured(prefetch: 16), now: now, credentialsPaused: false) == .init(then: .measureSlots))
        #expect(machine.on(.slotsFree(free: 2, verified: true, waiting: 0)) == .init(then: .claim(limit: 18, now: now)))
        var other = WorkLoopStateMachine(
            configuration: .init(prefetch: 4, drain: false, idleTick: .seconds(1), shutdownGrace: .seconds(10)),
            state: .init(phase: .awaitingEvent))
        #expect(other.on(.credentialsChanged, now: now, credentialsPaused: false) == .init(then: .measureSlots))
    }

    // MARK: Refresh schedule

    @Test("renewal: 40 minutes before expiry, or half the lifetime for short-lived credentials",
          arguments: [(21_600.0, 19_200.0), (4_800.0, 2_400.0), (3_600.0, 1_800.0), (20.0, 10.0), (0.0, 0.0)])
    func renewalTime(lifetime: Double, renewAfter: Double) {
        let at = CredentialRefresher.renewalTime(fetchedAt: Self.t0, expiresAt: Self.t0.addingTimeInterval(lifetime))
        #expect(at == Self.t0.addingTimeInterval(renewAfter))
    }

    @Test("a failed renewal is retried after 1 s, doubling to 60 s")
    func retryDelays() {
        #expect((1...9).map { CredentialRefresher.retryDelay(failures: $0) }
            == [1, 2, 4, 8, 16, 32, 60, 60, 60].map { Duration.seconds($0) })
        #expect(CredentialRefresher.retryDelay(failures: .max) == .seconds(60))
    }

    // MARK: Clock

    @Test("a clock offset beyond 5 minutes is named, with its direction")
    func clockOffset() {
        let behind = ClockOffset(local: Self.t0, server: Self.t0.addingTimeInterval(1200))
        #expect(behind.seconds == -1200 && behind.isSignificant)
        #expect(behind.explanation == "the local clock is 1200 s behind the server's (signatures are refused beyond 15 minutes)")
        let ahead = ClockOffset(local: Self.t0.addingTimeInterval(301), server: Self.t0)
        #expect(ahead.isSignificant && ahead.explanation.contains("301 s ahead of"))
        #expect(!ClockOffset(local: Self.t0.addingTimeInterval(300), server: Self.t0).isSignificant)
        // A server's date from another millennium cannot trap.
        #expect(ClockOffset(local: Self.t0, server: .distantFuture).seconds < 0)
        #expect(ClockOffset(local: .distantFuture, server: .distantPast).seconds > 0)
    }

    // MARK: Metadata answers

    @Test("the metadata service's answer: the SDKs' shape, every value checked, nothing secret in errors")
    func securityKeyAnswer() throws {
        let good = #"{"credential": {"access": "TMPAK", "secret": "TOPSECRET", "securitytoken": "TOKEN", "expires_at": "2026-11-29T12:00:00.000000Z"}}"#
        let fetched = try MetadataCredentialsClient.parseSecurityKey(Array(good.utf8))
        #expect(fetched.key == AccessKey(ak: "TMPAK", sk: "TOPSECRET", securityToken: "TOKEN"))
        #expect(Timestamp.format(fetched.expiresAt) == "2026-11-29T12:00:00.000Z")

        let bad = [
            #"{"credential": {"access": "TMPAK", "secret": "TOPSECRET", "expires_at": "2026-11-29T12:00:00Z"}}"#,
            #"{"credential": {"access": "", "secret": "TOPSECRET", "securitytoken": "T", "expires_at": "2026-11-29T12:00:00Z"}}"#,
            #"{"credential": {"access": "A", "secret": "TOP\nSECRET", "securitytoken": "T", "expires_at": "2026-11-29T12:00:00Z"}}"#,
            #"{"credential": {"access": "A", "secret": "TOPSECRET", "securitytoken": "T", "expires_at": "tomorrow"}}"#,
            "TOPSECRET", "",
        ]
        for body in bad {
            let error = #expect(throws: CleanerError.self) { try MetadataCredentialsClient.parseSecurityKey(Array(body.utf8)) }
            #expect(error.map { !$0.message.contains("TOPSECRET") } ?? false)
        }
    }

    @Test("the metadata endpoint: https, or http on loopback or 169.254.169.254 only")
    func metadataEndpoint() throws {
        #expect(try MetadataCredentialsClient.endpoint(parsing: "http://169.254.169.254").baseURL == "http://169.254.169.254")
        #expect(try MetadataCredentialsClient.endpoint(parsing: "http://127.0.0.1:8080/").baseURL == "http://127.0.0.1:8080")
        #expect(try MetadataCredentialsClient.endpoint(parsing: "https://metadata.example").scheme == "https")
        #expect(throws: Endpoint.Problem.self) { try MetadataCredentialsClient.endpoint(parsing: "http://10.0.0.1") }
        #expect(throws: Endpoint.Problem.self) { try Endpoint(parsing: "http://169.254.169.254") }
    }

    @Test("auth.method metadata in the configuration: its endpoint key, and no credentials file")
    func metadataConfiguration() throws {
        func parse(_ auth: String) throws -> Configuration {
            try ConfigurationLoader.parse(Array(#"{"region": "cn-north-4", "project_id": "p1", "auth": \#(auth)}"#.utf8), source: "c.json")
        }
        let plain = try parse(#"{"method": "metadata"}"#)
        #expect(plain.auth.method == .metadata && plain.auth.metadataEndpoint == "http://169.254.169.254")
        #expect(try parse(#"{"method": "metadata", "metadata_endpoint": "http://127.0.0.1:9/"}"#).auth.metadataEndpoint == "http://127.0.0.1:9")
        #expect(try parse(#"{"method": "metadata", "credentials_file": null}"#).auth.credentialsFile == nil)
        for (auth, named) in [(#"{"method": "metadata", "metadata_endpoint": "http://10.1.1.1"}"#, "auth.metadata_endpoint"),
                              (#"{"metadata_endpoint": "http://127.0.0.1"}"#, "auth.metadata_endpoint"),
                              (#"{"method": "metadata", "credentials_file": "/etc/x"}"#, "auth.credentials_file"),
                              (#"{"method": "ecs"}"#, "auth.method")] {
            let error = #expect(throws: CleanerError.self) { try parse(auth) }
            #expect(error?.message.contains(named) == true, "\(auth)")
        }
        #expect(throws: CleanerError.self) { try CredentialsLoader.load(method: .metadata, credentialsFile: nil, environment: [:]) }
    }

    // MARK: Check

    @Test("check --probe explains each answer")
    func probeVerdicts() {
        func verdict(_ status: Int?, code: String? = nil, offset: Int? = nil) -> SetupCheck.Verdict {
            var result = status.map { DeleteResult(classification: DeleteClassification(httpStatus: $0), delivery: .answered, httpStatus: $0, errorCode: code) }
                ?? .noResponse(delivery: .notSent, message: "connection refused", duration: .zero)
            result.clockOffset = offset.map(ClockOffset.init(seconds:))
            return SetupCheck.explain(result)
        }
        #expect(verdict(404, code: "IOTDA.014040").exitCode == 0)
        #expect(verdict(404, code: "IOTDA.014040").explanation.contains("credentials and the permission"))
        #expect(verdict(404, code: "APIGW.0101").exitCode == 1)
        #expect(verdict(403).explanation.contains("iotda:exporttasks:delete"))
        #expect(verdict(401, offset: -1200).exitCode == 3)
        #expect(verdict(401, offset: -1200).explanation.contains("1200 s behind"))
        #expect(verdict(401, offset: 2).explanation.contains("so it is the key"))
        #expect(verdict(nil).explanation.contains("cannot be reached"))
        #expect(SetupCheck.probeExportTaskID().count == 26)
        #expect(IdentifierRule.exportTaskID.isValid(SetupCheck.probeExportTaskID()))
    }

    @Test("check's database findings: missing, this release's, another application's; nothing is created")
    func databaseFindings() throws {
        let folder = try TestSupport.makeFolder("check")
        let path = folder.appendingPathComponent("queue.sqlite3").path
        let missing = SetupCheck.database(path: path)
        #expect(missing.count == 1 && missing[0].ok && missing[0].value.contains("does not exist yet"))
        #expect(!FileManager.default.fileExists(atPath: path))

        _ = try SQLiteQueueStore(path: path)
        let queue = SetupCheck.database(path: path)
        #expect(queue.allSatisfy { $0.ok }, "\(queue)")
        #expect(queue.contains { $0.label == "schema" && $0.value == "version \(SQLiteQueueStore.schemaVersion), this release's" })

        let foreign = folder.appendingPathComponent("other.sqlite3").path
        try SQLiteConnection(path: foreign).execute("CREATE TABLE invoices(id INTEGER)")
        #expect(SetupCheck.database(path: foreign).contains { $0.label == "schema" && !$0.ok })
    }

    // MARK: Log level

    @Test("the log level follows its control")
    func logLevel() {
        let control = LogLevelControl(.info)
        let handler = LevelFollowingLogHandler(base: StreamLogHandler.standardError(label: "x"), control: control)
        #expect(handler.logLevel == .info)
        control.set(.debug)
        #expect(handler.logLevel == .debug)
        control.set(.critical)
        #expect(handler.logLevel == .critical)
    }
}
