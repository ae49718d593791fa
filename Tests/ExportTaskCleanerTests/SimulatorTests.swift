import AsyncHTTPClient
import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import Testing

/// The IoTDA simulator itself: routing, answers, counters, rate limit, latency, the mix.
@Suite("IoTDASimulator")
struct SimulatorTests {
    @Test("listens on 127.0.0.1 on a free port")
    func endpoint() async throws {
        try await withSimulator { simulator in
            #expect(simulator.port > 0)
            #expect(simulator.endpoint == "http://127.0.0.1:\(simulator.port)")
        }
    }

    @Test("unknown routes and methods get 404 with an error body and a request ID")
    func unknownRoutes() async throws {
        try await withSimulator { simulator in
            for (method, path) in [
                ("DELETE", "/v5/iot/\(project)/export-task/x"), ("DELETE", "/v5/iot/\(project)/export-tasks/"),
                ("DELETE", "/v5/iot/\(project)/export-tasks/x/y"), ("GET", "/v5/iot/\(project)/export-tasks/x"),
                ("POST", "/"), ("DELETE", "/v3/iot/\(project)/export-tasks/x"),
            ] {
                let response = try await raw(simulator, method: method, path: path)
                #expect(response.status == 404, "\(method) \(path)")
                #expect(response.body.contains(#""error_code":"APIGW.0101""#))
                #expect(isHex32(response.headers["X-Request-Id"]))
            }
            #expect(simulator.counters.attemptsByID.isEmpty)
            #expect(simulator.counters.requests == 6)
            #expect(simulator.counters.responses(status: 404) == 6)
        }
    }

    @Test("204 has no body; errors are IoTDA-style JSON; every answer has a fresh X-Request-Id")
    func answerShapes() async throws {
        try await withSimulator { simulator in
            let deleted = try await raw(simulator, method: "DELETE", path: "/v5/iot/\(project)/export-tasks/t1")
            #expect(deleted.status == 204)
            #expect(deleted.body.isEmpty)
            let gone = try await raw(simulator, method: "DELETE", path: "/v5/iot/\(project)/export-tasks/t1")
            #expect(gone.status == 404)
            #expect(gone.headers["Content-Type"] == "application/json;charset=UTF-8")
            #expect(gone.body == #"{"error_code":"IOTDA.014016","error_msg":"The export task does not exist."}"#)
            #expect(isHex32(deleted.headers["X-Request-Id"]) && isHex32(gone.headers["X-Request-Id"]))
            #expect(deleted.headers["X-Request-Id"] != gone.headers["X-Request-Id"])
        }
    }

    @Test("path segments are percent-decoded; the project must match (else 403)")
    func decodingAndProject() async throws {
        try await withSimulator { simulator in
            let ok = try await raw(simulator, method: "DELETE", path: "/v5/iot/\(project)/export-tasks/a%2Db_c")
            #expect(ok.status == 204)
            #expect(simulator.deleteCount(for: "a-b_c") == 1)
            let other = try await raw(simulator, method: "DELETE", path: "/v5/iot/another/export-tasks/x")
            #expect(other.status == 403)
            #expect(other.body.contains("IOTDA.000003"))
            let header = try await raw(
                simulator, method: "DELETE", path: "/v5/iot/\(project)/export-tasks/y", headers: [("X-Project-Id", "another")])
            #expect(header.status == 403)
        }
    }

    @Test("authentication is checked when configured: signature, token")
    func authChecks() async throws {
        let key = AccessKey(ak: "SIMAK", sk: "sim-secret")
        try await withSimulator(.init(projectID: project, auth: .accessKey(key))) { simulator in
            let unsigned = try await raw(simulator, method: "DELETE", path: "/v5/iot/\(project)/export-tasks/x")
            #expect(unsigned.status == 401)
            #expect(unsigned.body.contains("IOTDA.000002"))
            #expect(simulator.counters.signatureFailures == 1)
            #expect(simulator.deleteCount(for: "x") == 0)
        }
        try await withSimulator(.init(projectID: project, auth: .token("tok"))) { simulator in
            let none = try await raw(simulator, method: "DELETE", path: "/v5/iot/\(project)/export-tasks/x")
            #expect(none.status == 401)
            let ok = try await raw(
                simulator, method: "DELETE", path: "/v5/iot/\(project)/export-tasks/x", headers: [("X-Auth-Token", "tok")])
            #expect(ok.status == 204)
            #expect(simulator.counters.authFailures == 1)
            #expect(simulator.counters.signatureFailures == 0)
        }
    }

    @Test("a signature dated outside 15 minutes is refused")
    func clockSkew() async throws {
        let key = AccessKey(ak: "SIMAK", sk: "sim-secret")
        try await withSimulator(.init(projectID: project, auth: .accessKey(key))) { simulator in
            let skewed = try IoTDAClient(
                configuration: .init(
                    endpoint: simulator.endpoint, credentials: .accessKey(key), signing: .v11HMACSHA256,
                    region: "cn-north-4", concurrency: 1, requestTimeout: .seconds(10)),
                logger: quiet(), now: { Date().addingTimeInterval(-20 * 60) })
            let stale = await skewed.delete(DeleteRequest(exportTaskID: "x", projectID: project))
            try await skewed.shutdown()
            #expect(stale.classification == .authRefused)
            #expect(simulator.counters.signatureFailures == 1)

            let wrongRegion = try IoTDAClient(
                configuration: .init(
                    endpoint: simulator.endpoint, credentials: .accessKey(key), signing: .v11HMACSHA256,
                    region: "ap-southeast-1", concurrency: 1, requestTimeout: .seconds(10)),
                logger: quiet())
            #expect(await wrongRegion.delete(DeleteRequest(exportTaskID: "x", projectID: project)).classification == .authRefused)
            try await wrongRegion.shutdown()
        }
    }

    @Test("scripting an ID again starts its counts afresh")
    func rescript() async throws {
        try await withSimulator { simulator in
            let path = "/v5/iot/\(project)/export-tasks/r"
            simulator.script("r", .tooManyRequests(retryAfterSeconds: 3, times: 1))
            let first = try await raw(simulator, method: "DELETE", path: path)
            #expect(first.status == 429)
            #expect(first.headers["Retry-After"] == "3")
            simulator.script("r", .tooManyRequests(retryAfterSeconds: 3, times: 1))
            #expect(try await raw(simulator, method: "DELETE", path: path).status == 429)
            #expect(try await raw(simulator, method: "DELETE", path: path).status == 204)
            #expect(try await raw(simulator, method: "DELETE", path: path).status == 404)
            #expect(simulator.attempts(for: "r") == 4)
            #expect(simulator.counters.attemptsByID == ["r": 4])
        }
    }

    @Test("the rate limit answers 429 with Retry-After: 1 beyond the configured requests per second")
    func rateLimit() async throws {
        try await withSimulator(.init(projectID: project, rateLimit: 10)) { simulator in
            let client = try client(simulator, concurrency: 8)
            let started = ContinuousClock.now
            let results = await withTaskGroup(of: DeleteResult.self) { group in
                for i in 0..<40 {
                    group.addTask { await client.delete(DeleteRequest(exportTaskID: "rl-\(i)", projectID: project)) }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let elapsed = ContinuousClock.now - started
            try await client.shutdown()
            let limited = results.filter { $0.httpStatus == 429 }
            let deleted = results.filter { $0.classification == .deleted }
            #expect(limited.count + deleted.count == 40)
            #expect(!limited.isEmpty)
            #expect(limited.allSatisfy { $0.retryAfter == .seconds(1) && $0.errorCode == "IOTDA.021101" })
            // Fixed one-second windows: at most 10 accepted per window begun.
            let windows = Int(elapsed.components.seconds) + 1
            #expect(deleted.count <= 10 * windows)
            let counters = simulator.counters
            #expect(counters.rateLimited == limited.count)
            #expect(counters.arrivalTimes.count == 40)
            #expect(zip(counters.arrivalTimes, counters.arrivalTimes.dropFirst()).allSatisfy { $0 <= $1 })
        }
    }

    @Test("arrival times are bounded to the latest N")
    func arrivalHistory() async throws {
        try await withSimulator(.init(projectID: project, arrivalHistoryLimit: 5)) { simulator in
            var sent: [ContinuousClock.Instant] = []
            for i in 0..<8 {
                sent.append(.now)
                _ = try await raw(simulator, method: "DELETE", path: "/v5/iot/\(project)/export-tasks/h\(i)")
            }
            let arrivals = simulator.counters.arrivalTimes
            #expect(arrivals.count == 5)
            #expect(arrivals.first! >= sent[3])
            #expect(zip(arrivals, arrivals.dropFirst()).allSatisfy { $0 < $1 })
        }
    }

    @Test("latency delays every answer without blocking other connections")
    func latency() async throws {
        // 2 s, so that the four overlap even when a busy machine starts them far apart (CI saw
        // one start only after another's 150 ms answer had come).
        try await withSimulator(.init(projectID: project, latency: .seconds(2))) { simulator in
            let client = try client(simulator, concurrency: 4)
            let started = ContinuousClock.now
            let results = await withTaskGroup(of: DeleteResult.self) { group in
                for i in 0..<4 {
                    group.addTask { await client.delete(DeleteRequest(exportTaskID: "l\(i)", projectID: project)) }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let elapsed = ContinuousClock.now - started
            try await client.shutdown()
            #expect(results.allSatisfy { $0.classification == .deleted && $0.duration >= .seconds(2) })
            #expect(elapsed >= .seconds(2))
            // Four answers pending at once: the delay does not hold up other connections.
            #expect(simulator.counters.maxInFlight == 4)
        }
    }

    @Test("maxInFlight and inFlight follow concurrent requests; attempts per ID are counted")
    func inFlightCounters() async throws {
        try await withSimulator { simulator in
            // Long enough that a test machine busy with other suites still sees all six in flight.
            for i in 0..<6 { simulator.script("d\(i)", .delay(.seconds(2), then: .deleteOnce)) }
            let client = try client(simulator, concurrency: 6)
            async let results = withTaskGroup(of: DeleteResult.self) { group in
                for i in 0..<6 {
                    group.addTask { await client.delete(DeleteRequest(exportTaskID: "d\(i)", projectID: project)) }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            // The high-water mark, not the live count: on a machine busy with other suites the
            // first requests may be answered before the last has arrived.
            let deadline = ContinuousClock.now + .seconds(10)
            while simulator.counters.maxInFlight < 6, ContinuousClock.now < deadline { await Task.yield() }
            #expect(simulator.counters.maxInFlight == 6)
            #expect(await results.allSatisfy { $0.classification == .deleted })
            try await client.shutdown()
            let counters = simulator.counters
            #expect(counters.inFlight == 0)
            #expect(counters.maxInFlight == 6)
            #expect(counters.requests == 6)
            #expect(counters.attemptsByID.count == 6)
            #expect(counters.attemptsByID.values.allSatisfy { $0 == 1 })
            #expect(counters.deletedIDs == Set((0..<6).map { "d\($0)" }))
        }
    }

    @Test("the mix is deterministic by ID and close to its percentages")
    func mix() async throws {
        let mix = Mix.realistic
        var counts: [Behaviour: Int] = [:]
        for i in 0..<20_000 {
            let id = "export-\(i)"
            let behaviour = mix.behaviour(for: id)
            #expect(mix.behaviour(for: id) == behaviour)
            counts[behaviour, default: 0] += 1
        }
        let total = Double(mix.shares.map(\.weight).reduce(0, +))
        for share in mix.shares {
            let fraction = Double(counts[share.behaviour] ?? 0) / 20_000
            #expect(abs(fraction - Double(share.weight) / total) < 0.01, "\(share.behaviour): \(fraction)")
        }

        // The simulator applies it to IDs without a script.
        try await withSimulator(.init(projectID: project, mix: mix)) { simulator in
            let notFoundID = (0..<1000).map { "m\($0)" }.first { mix.behaviour(for: $0) == .notFound }!
            let busyID = (0..<1000).map { "m\($0)" }.first { mix.behaviour(for: $0) == .tooManyRequests(retryAfterSeconds: 1, times: 1) }!
            let client = try client(simulator, concurrency: 1)
            #expect(await client.delete(DeleteRequest(exportTaskID: notFoundID, projectID: project)).classification == .notFound)
            #expect(await client.delete(DeleteRequest(exportTaskID: busyID, projectID: project)).httpStatus == 429)
            #expect(await client.delete(DeleteRequest(exportTaskID: busyID, projectID: project)).classification == .deleted)
            simulator.script(notFoundID, .deleteOnce)
            #expect(await client.delete(DeleteRequest(exportTaskID: notFoundID, projectID: project)).classification == .deleted)
            try await client.shutdown()
        }
    }

    @Test("a dropped connection is counted and not answered")
    func dropped() async throws {
        try await withSimulator { simulator in
            simulator.script("gone", .delay(.milliseconds(20), then: .dropConnection(times: 2)))
            let client = try client(simulator, concurrency: 1)
            for _ in 0..<2 {
                let result = await client.delete(DeleteRequest(exportTaskID: "gone", projectID: project))
                #expect(result.delivery == .unknown)
            }
            #expect(await client.delete(DeleteRequest(exportTaskID: "gone", projectID: project)).classification == .deleted)
            try await client.shutdown()
            let counters = simulator.counters
            #expect(counters.droppedConnections == 2)
            #expect(counters.inFlight == 0)
            #expect(counters.successfulDeletes == 1)
        }
    }
}

// MARK: - Helpers

private let project = "sim-project"

private func quiet() -> Logger {
    var logger = Logger(label: "simulator-tests") { _ in SwiftLogNoOpLogHandler() }
    logger.logLevel = .critical
    return logger
}

private func withSimulator(
    _ configuration: IoTDASimulator.Configuration = .init(projectID: project),
    _ body: (IoTDASimulator) async throws -> Void
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

/// A client for an unauthenticated simulator (it accepts any signature).
private func client(_ simulator: IoTDASimulator, concurrency: Int) throws -> IoTDAClient {
    try IoTDAClient(
        configuration: .init(
            endpoint: simulator.endpoint, credentials: .accessKey(AccessKey(ak: "AK", sk: "SK")),
            signing: .sdkHMACSHA256, region: "cn-north-4", concurrency: concurrency, requestTimeout: .seconds(10)),
        logger: quiet())
}

private struct RawResponse {
    var status: Int
    var headers: [String: String]
    var body: String
}

/// A request the client would never send, through AsyncHTTPClient's shared client.
private func raw(
    _ simulator: IoTDASimulator, method: String, path: String, headers: [(String, String)] = []
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

private func isHex32(_ s: String?) -> Bool {
    guard let s else { return false }
    return s.utf8.count == 32 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
}
