import AsyncHTTPClient
import ExportTaskCleaner
import FoundationEssentials
import IoTDASimulator
import Logging
import Testing

/// The simulator's ECS metadata service, key rotation, clock offset and `Date` header, over
/// real HTTP on 127.0.0.1. Time is moved by signing dates and the clock offset, never by waiting.
@Suite("IoTDASimulator metadata, rotation and clock")
struct SimulatorMetadataTests {
    @Test("PUT token, then GET securitykey: a plain-text token, the credential JSON, expires_at exact")
    func tokenThenKey() async throws {
        try await withSimulator(metadataConfiguration()) { simulator async throws in
            let put = try await raw(simulator, "PUT", tokenPath, [(ttlHeader, "21600")])
            #expect(put.status == 200)
            #expect(put.headers["Content-Type"] == "text/plain")
            #expect(put.body.utf8.count >= 32)

            let first = try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", put.body)])
            #expect(first.status == 200)
            #expect(first.headers["Content-Type"] == "application/json")
            let credential = try JSONDecoder().decode(SecurityKey.self, from: Data(first.body.utf8)).credential
            #expect(credential.access.wholeMatch(of: #/[A-Z0-9]{20}/#) != nil)
            #expect(credential.secret.utf8.count == 40)
            #expect(credential.securitytoken.utf8.count >= 100)
            #expect(credential.expires_at.wholeMatch(of: #/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z/#) != nil)
            let expiresAt = try #require(parseExpiresAt(credential.expires_at))
            #expect(abs(expiresAt.timeIntervalSinceNow - 3600) < 30)

            // Every GET hands out a fresh key.
            let second = try await fetchKey(simulator, token: put.body)
            #expect(second.key.ak != credential.access && second.key.sk != credential.secret)
            #expect(second.key.securityToken != credential.securitytoken)
            #expect(simulator.issuedAccessKeyIDs == [credential.access, second.key.ak])

            let counters = simulator.counters
            #expect(counters.metadataTokenRequests == 1)
            #expect(counters.metadataCredentialRequests == 2)
            #expect(counters.metadataRefusals == 0)
            // Metadata requests are not IoTDA requests.
            #expect(counters.requests == 0)
            #expect(counters.responsesByStatus.isEmpty && counters.attemptsByID.isEmpty)
            #expect(counters.arrivalTimes.isEmpty && counters.maxInFlight == 0)
        }
    }

    @Test("the token's TTL header must be a number of seconds in 1...21600")
    func tokenTTL() async throws {
        try await withSimulator(metadataConfiguration()) { simulator async throws in
            #expect(try await raw(simulator, "PUT", tokenPath).status == 400)
            for bad in ["0", "21601", "-5", "+5", "abc", "", "999999999999999999999"] {
                #expect(try await raw(simulator, "PUT", tokenPath, [(ttlHeader, bad)]).status == 400, "\(bad)")
            }
            for good in ["1", "21600", "300"] {
                #expect(try await raw(simulator, "PUT", tokenPath, [(ttlHeader, good)]).status == 200, "\(good)")
            }
            #expect(simulator.counters.metadataTokenRequests == 3)
            #expect(simulator.counters.requests == 0)
        }
    }

    @Test("securitykey needs a known, unexpired session token; revoking forces a new PUT")
    func sessionTokens() async throws {
        try await withSimulator(metadataConfiguration()) { simulator async throws in
            let none = try await raw(simulator, "GET", keyPath)
            #expect(none.status == 401)
            #expect(none.body == #"{"error":"unauthorized"}"#)
            #expect(try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", "not-a-token")]).status == 401)

            let token = try await fetchToken(simulator)
            #expect(try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", token)]).status == 200)
            simulator.revokeMetadataSessionTokens()
            #expect(try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", token)]).status == 401)
            let fresh = try await fetchToken(simulator)
            #expect(try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", fresh)]).status == 200)

            // A session expires by the simulator's clock.
            let short = try await fetchToken(simulator, ttl: 1)
            simulator.setClockOffset(.seconds(5))
            #expect(try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", short)]).status == 401)
            #expect(try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", fresh)]).status == 200)

            let counters = simulator.counters
            #expect(counters.metadataRefusals == 4)
            #expect(counters.metadataCredentialRequests == 3)
            #expect(counters.metadataTokenRequests == 3)
            #expect(counters.requests == 0)
        }
    }

    @Test("while failing, both metadata routes answer 500")
    func failing() async throws {
        try await withSimulator(metadataConfiguration()) { simulator async throws in
            let token = try await fetchToken(simulator)
            simulator.setMetadataFailing(true)
            #expect(try await raw(simulator, "PUT", tokenPath, [(ttlHeader, "21600")]).status == 500)
            #expect(try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", token)]).status == 500)
            simulator.setMetadataFailing(false)
            #expect(try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", token)]).status == 200)
            #expect(simulator.counters.metadataRefusals == 0)
            #expect(simulator.counters.requests == 0)
        }
    }

    @Test("other methods on the metadata paths get 405; without a metadata service, 404")
    func routes() async throws {
        try await withSimulator(metadataConfiguration()) { simulator async throws in
            #expect(try await raw(simulator, "GET", tokenPath).status == 405)
            #expect(try await raw(simulator, "DELETE", keyPath).status == 405)
            #expect(simulator.counters.requests == 0)
        }
        try await withSimulator(.init(projectID: project)) { simulator async throws in
            let put = try await raw(simulator, "PUT", tokenPath, [(ttlHeader, "21600")])
            #expect(put.status == 404)
            #expect(put.body.contains("APIGW.0101"))
            #expect(try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", "x")]).status == 404)
            #expect(simulator.counters.metadataTokenRequests == 0)
        }
    }

    @Test("a delete signed with an issued key and its security token is accepted; without the token, 401")
    func temporaryKeyDeletes() async throws {
        try await withSimulator(metadataConfiguration()) { simulator async throws in
            let issued = try await fetchKey(simulator, token: try await fetchToken(simulator)).key
            #expect(try await signedDelete(simulator, "t1", issued, algorithm: .v11HMACSHA256).status == 204)
            #expect(try await signedDelete(simulator, "t2", issued, algorithm: .sdkHMACSHA256).status == 204)

            let withoutToken = AccessKey(ak: issued.ak, sk: issued.sk)
            let refused = try await signedDelete(simulator, "t3", withoutToken)
            #expect(refused.status == 401)
            #expect(refused.body.contains("IOTDA.000002"))
            let other = try await fetchKey(simulator, token: try await fetchToken(simulator)).key
            let crossed = AccessKey(ak: issued.ak, sk: issued.sk, securityToken: other.securityToken)
            #expect(try await signedDelete(simulator, "t4", crossed).status == 401)
            // A key the metadata service never issued.
            #expect(try await signedDelete(simulator, "t5", AccessKey(ak: "PERMANENTKEY", sk: "secret")).status == 401)

            let counters = simulator.counters
            #expect(counters.acceptedWithTemporaryKey == 2)
            #expect(counters.expiredCredentialRequests == 0)
            #expect(counters.authFailures == 3)
            #expect(counters.signatureFailures == 1)
            #expect(counters.requests == 5)
            #expect(simulator.deletedIDs == ["t1", "t2"])
        }
    }

    @Test("a key used after its expiry by the simulator's clock is refused and counted")
    func expiredKey() async throws {
        try await withSimulator(metadataConfiguration(lifetime: .seconds(1))) { simulator async throws in
            let (issued, expiresAt) = try await fetchKey(simulator, token: try await fetchToken(simulator))
            simulator.setClockOffset(.seconds(10))
            let late = try await signedDelete(simulator, "x", issued, date: expiresAt.addingTimeInterval(9))
            #expect(late.status == 401)
            #expect(late.body.contains("expired"))
            #expect(simulator.counters.expiredCredentialRequests == 1)
            #expect(simulator.counters.acceptedWithTemporaryKey == 0)
            #expect(simulator.deleteCount(for: "x") == 0)
        }
    }

    @Test("a key signed after its expiry but arriving before it is accepted, and counted as expired")
    func signedAfterExpiry() async throws {
        try await withSimulator(metadataConfiguration(lifetime: .seconds(60))) { simulator async throws in
            let (issued, expiresAt) = try await fetchKey(simulator, token: try await fetchToken(simulator))
            let ahead = try await signedDelete(simulator, "y", issued, date: expiresAt.addingTimeInterval(60))
            #expect(ahead.status == 204)
            #expect(simulator.counters.expiredCredentialRequests == 1)
            #expect(simulator.counters.acceptedWithTemporaryKey == 1)
        }
    }

    @Test("setAuth rotates the key: the old one gets 401 from the next request on")
    func rotation() async throws {
        let old = AccessKey(ak: "OLDKEY", sk: "old-secret")
        let new = AccessKey(ak: "NEWKEY", sk: "new-secret")
        try await withSimulator(.init(projectID: project, auth: .accessKey(old))) { simulator async throws in
            #expect(try await signedDelete(simulator, "a", old).status == 204)
            simulator.setAuth(.accessKey(new))
            #expect(try await signedDelete(simulator, "b", old).status == 401)
            #expect(try await signedDelete(simulator, "b", new).status == 204)
            if case .accessKey(let initial) = simulator.configuration.auth { #expect(initial == old) } else { Issue.record("auth") }
            simulator.setAuth(.token("tok"))
            #expect(try await raw(simulator, "DELETE", deletePath("c"), [("X-Auth-Token", "tok")]).status == 204)
            #expect(try await signedDelete(simulator, "d", new).status == 401)
        }
    }

    @Test("a clock 20 minutes ahead: Date says so, and a signature by the local clock gets 401")
    func clockOffset() async throws {
        let key = AccessKey(ak: "SIMAK", sk: "sim-secret")
        let offset: TimeInterval = 20 * 60
        try await withSimulator(.init(projectID: project, auth: .accessKey(key), clockOffset: .seconds(20 * 60))) { simulator async throws in
            let local = try await signedDelete(simulator, "x", key)
            #expect(local.status == 401)
            let date = try #require(local.headers["Date"].flatMap(RetryAfter.parseHTTPDate))
            #expect(abs(date.timeIntervalSinceNow - offset) < 5)
            #expect(try await signedDelete(simulator, "x", key, date: Date().addingTimeInterval(offset)).status == 204)

            simulator.setClockOffset(.zero)
            let now = try await signedDelete(simulator, "y", key)
            #expect(now.status == 204)
            let back = try #require(now.headers["Date"].flatMap(RetryAfter.parseHTTPDate))
            #expect(abs(back.timeIntervalSinceNow) < 5)
        }
    }

    @Test("every answer carries an IMF-fixdate Date: 204, 401, 404 and the metadata routes")
    func dateHeaders() async throws {
        try await withSimulator(metadataConfiguration()) { simulator async throws in
            // Each Date must fall within the requests' time (to the second), however long a
            // busy machine takes to make them.
            let before = Date().addingTimeInterval(-1)
            let token = try await raw(simulator, "PUT", tokenPath, [(ttlHeader, "60")])
            let key = try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", token.body)])
            let issued = try await fetchKey(simulator, token: token.body).key
            let answers = [
                token, key,
                try await raw(simulator, "GET", keyPath),
                try await raw(simulator, "PUT", tokenPath),
                try await signedDelete(simulator, "ok", issued),
                try await raw(simulator, "DELETE", deletePath("unsigned")),
                try await raw(simulator, "GET", "/nowhere"),
            ]
            let after = Date().addingTimeInterval(1)
            #expect(answers.map(\.status) == [200, 200, 401, 400, 204, 401, 404])
            for answer in answers {
                let value = try #require(answer.headers["Date"], "\(answer.status)")
                #expect(value.wholeMatch(of: #/(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT/#) != nil)
                let date = try #require(RetryAfter.parseHTTPDate(value))
                #expect(date >= before && date <= after, "\(value) not between \(before) and \(after)")
            }
        }
    }

    @Test("IMF-fixdate: known dates, and RetryAfter's parser reads it back")
    func imfFixdate() {
        #expect(IMFFixdate.format(secondsSince1970: 784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(IMFFixdate.format(secondsSince1970: 0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(IMFFixdate.format(secondsSince1970: 1_709_208_000) == "Thu, 29 Feb 2024 12:00:00 GMT")
        #expect(IMFFixdate.format(secondsSince1970: 253_402_300_799) == "Fri, 31 Dec 9999 23:59:59 GMT")
        #expect(IMFFixdate.format(secondsSince1970: -1) == "Wed, 31 Dec 1969 23:59:59 GMT")
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            let seconds = Int64.random(in: -2_000_000_000...253_402_300_799, using: &generator)
            let text = IMFFixdate.format(secondsSince1970: seconds)
            #expect(RetryAfter.parseHTTPDate(text) == Date(timeIntervalSince1970: TimeInterval(seconds)), "\(text)")
        }
    }
}

// MARK: - Helpers

private let project = "sim-project"
private let tokenPath = "/meta-data/latest/api/token"
private let keyPath = "/openstack/latest/securitykey"
private let ttlHeader = "X-Metadata-Token-Ttl-Seconds"

private func deletePath(_ id: String) -> String { "/v5/iot/\(project)/export-tasks/\(id)" }

private func metadataConfiguration(lifetime: Duration = .seconds(3600)) -> IoTDASimulator.Configuration {
    .init(projectID: project, auth: .metadataCredentials, metadata: .init(credentialLifetime: lifetime))
}

/// `GET /openstack/latest/securitykey`'s body.
private struct SecurityKey: Decodable {
    struct Credential: Decodable {
        var access: String
        var secret: String
        var securitytoken: String
        var expires_at: String
    }

    var credential: Credential
}

private func quiet() -> Logger {
    var logger = Logger(label: "simulator-metadata-tests") { _ in SwiftLogNoOpLogHandler() }
    logger.logLevel = .critical
    return logger
}

private func withSimulator(
    _ configuration: IoTDASimulator.Configuration, _ body: (IoTDASimulator) async throws -> Void
) async throws {
    let simulator = try await IoTDASimulator.start(configuration, logger: quiet())
    do {
        try await body(simulator)
        try await simulator.shutdown()
    } catch {
        try? await simulator.shutdown()
        throw error
    }
}

private struct RawResponse {
    var status: Int
    var headers: [String: String]
    var body: String
}

private func raw(
    _ simulator: IoTDASimulator, _ method: String, _ path: String, _ headers: [(String, String)] = []
) async throws -> RawResponse {
    var request = HTTPClientRequest(url: simulator.endpoint + path)
    request.method = .init(rawValue: method)
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
    let body = try await response.body.collect(upTo: 1 << 20)
    var fields: [String: String] = [:]
    for header in response.headers { fields[header.name] = header.value }
    return RawResponse(status: Int(response.status.code), headers: fields, body: String(buffer: body))
}

private func fetchToken(_ simulator: IoTDASimulator, ttl: Int = 21600) async throws -> String {
    let response = try await raw(simulator, "PUT", tokenPath, [(ttlHeader, String(ttl))])
    try #require(response.status == 200)
    return response.body
}

/// A fresh temporary key and its expiry.
private func fetchKey(_ simulator: IoTDASimulator, token: String) async throws -> (key: AccessKey, expiresAt: Date) {
    let response = try await raw(simulator, "GET", keyPath, [("X-Metadata-Token", token)])
    try #require(response.status == 200)
    let credential = try JSONDecoder().decode(SecurityKey.self, from: Data(response.body.utf8)).credential
    let expiresAt = try #require(parseExpiresAt(credential.expires_at))
    return (AccessKey(ak: credential.access, sk: credential.secret, securityToken: credential.securitytoken), expiresAt)
}

/// `2026-11-29T12:00:00.000000Z`.
private func parseExpiresAt(_ text: String) -> Date? {
    guard let match = text.wholeMatch(of: #/(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})Z/#),
        let whole = UTCCalendar.date(.init(
            year: Int(match.1)!, month: Int(match.2)!, day: Int(match.3)!,
            hour: Int(match.4)!, minute: Int(match.5)!, second: Int(match.6)!))
    else { return nil }
    return whole.addingTimeInterval(TimeInterval(Int(match.7)!) / 1_000_000)
}

/// A delete of `id` signed with `key` at `date` (its security token, if any, is sent and signed).
private func signedDelete(
    _ simulator: IoTDASimulator, _ id: String, _ key: AccessKey,
    algorithm: SigningAlgorithm = .v11HMACSHA256, date: Date = Date()
) async throws -> RawResponse {
    let signer = RequestSigner(algorithm: algorithm, accessKey: key, region: "cn-north-4")
    let headers = signer.sign(
        method: "DELETE", pathSegments: ["v5", "iot", project, "export-tasks", id], query: [], headers: [],
        body: [], date: date)
    return try await raw(simulator, "DELETE", deletePath(id), headers)
}
