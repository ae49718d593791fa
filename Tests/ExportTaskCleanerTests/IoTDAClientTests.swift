import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The client against the simulator, over a real HTTP stack on 127.0.0.1.
@Suite("IoTDAClient")
struct IoTDAClientTests {
    // MARK: Outcomes

    @Test("204 is deleted; a second delete is 404 not found with error code and request ID")
    func deletedThenNotFound() async throws {
        try await withClientAndSimulator { client, simulator in
            let first = await client.delete(request("task-1"))
            #expect(first.classification == .deleted)
            #expect(first.delivery == .answered)
            #expect(first.httpStatus == 204)
            #expect(first.errorCode == nil)
            #expect(first.errorMessage == nil)
            #expect(isRequestID(first.requestID))
            #expect(first.retryAfter == nil)
            #expect(first.duration > .zero)

            let second = await client.delete(request("task-1"))
            #expect(second.classification == .notFound)
            #expect(second.delivery == .answered)
            #expect(second.httpStatus == 404)
            #expect(second.errorCode == "IOTDA.014016")
            #expect(second.errorMessage == "The export task does not exist.")
            #expect(isRequestID(second.requestID))
            #expect(second.requestID != first.requestID)

            let counters = simulator.counters
            #expect(counters.attempts(for: "task-1") == 2)
            #expect(counters.deleteCount(for: "task-1") == 1)
            #expect(counters.successfulDeletes == 1)
            #expect(counters.responses(status: 404) == 1)
            #expect(counters.signatureFailures == 0)
        }
    }

    @Test("403 is forbidden")
    func forbidden() async throws {
        try await withClientAndSimulator { client, simulator in
            simulator.script("no-permission", .forbidden)
            let result = await client.delete(request("no-permission"))
            #expect(result.classification == .forbidden)
            #expect(result.httpStatus == 403)
            #expect(result.errorCode == "IOTDA.000003")
            #expect(result.errorMessage?.isEmpty == false)
            #expect(isRequestID(result.requestID))
        }
    }

    @Test("400 is rejected")
    func badRequest() async throws {
        try await withClientAndSimulator { client, simulator in
            simulator.script("bad", .badRequest)
            let result = await client.delete(request("bad"))
            #expect(result.classification == .rejected)
            #expect(result.delivery == .answered)
            #expect(result.httpStatus == 400)
            #expect(result.errorCode == "IOTDA.000006")
            #expect(result.errorMessage == "Invalid input data.")
        }
    }

    @Test("429 is retryable with Retry-After parsed; then the delete succeeds")
    func tooManyRequests() async throws {
        try await withClientAndSimulator { client, simulator in
            simulator.script("busy", .tooManyRequests(retryAfterSeconds: 7, times: 1))
            let first = await client.delete(request("busy"))
            #expect(first.classification == .retryable)
            #expect(first.delivery == .answered)
            #expect(first.httpStatus == 429)
            #expect(first.retryAfter == .seconds(7))
            #expect(first.errorCode == "IOTDA.021101")
            let second = await client.delete(request("busy"))
            #expect(second.classification == .deleted)
            #expect(second.retryAfter == nil)
            #expect(simulator.counters.attempts(for: "busy") == 2)
        }
    }

    @Test("5xx is retryable", arguments: [500, 502, 503, 504])
    func serverErrors(status: Int) async throws {
        try await withClientAndSimulator { client, simulator in
            simulator.script("flaky", .serverError(status: status, times: 2))
            for _ in 0..<2 {
                let result = await client.delete(request("flaky"))
                #expect(result.classification == .retryable)
                #expect(result.delivery == .answered)
                #expect(result.httpStatus == status)
                #expect(result.errorCode == "IOTDA.000001")
            }
            #expect(await client.delete(request("flaky")).classification == .deleted)
            #expect(simulator.counters.attempts(for: "flaky") == 3)
        }
    }

    @Test("a redirect is not followed: 3xx is rejected", arguments: [301, 302, 307])
    func redirect(status: Int) async throws {
        try await withClientAndSimulator { client, simulator in
            simulator.script("moved", .serverError(status: status, times: 1))
            let result = await client.delete(request("moved"))
            #expect(result.classification == .rejected)
            #expect(result.delivery == .answered)
            #expect(result.httpStatus == status)
            #expect(simulator.counters.attempts(for: "moved") == 1)
        }
    }

    @Test("401 from a wrong secret key is authRefused with IOTDA.000002")
    func wrongSecretKey() async throws {
        let wrong = AccessKey(ak: testKey.ak, sk: "not-the-right-secret")
        try await withClientAndSimulator(credentials: .accessKey(wrong)) { client, simulator in
            let result = await client.delete(request("task-1"))
            #expect(result.classification == .authRefused)
            #expect(result.delivery == .answered)
            #expect(result.httpStatus == 401)
            #expect(result.errorCode == "IOTDA.000002")
            #expect(isRequestID(result.requestID))
            let counters = simulator.counters
            #expect(counters.signatureFailures == 1)
            #expect(counters.deleteCount(for: "task-1") == 0)
        }
    }

    @Test("an unknown access key ID is authRefused")
    func unknownAccessKey() async throws {
        let other = AccessKey(ak: "SOMEOTHERAK", sk: testKey.sk)
        try await withClientAndSimulator(credentials: .accessKey(other)) { client, simulator in
            #expect(await client.delete(request("task-1")).classification == .authRefused)
            #expect(simulator.counters.signatureFailures == 1)
        }
    }

    @Test("a timeout after sending is retryable with delivery unknown")
    func timeout() async throws {
        try await withClientAndSimulator(requestTimeout: .milliseconds(300)) { client, simulator in
            simulator.script("slow", .delay(.seconds(10), then: .deleteOnce))
            let started = ContinuousClock.now
            let result = await client.delete(request("slow"))
            #expect(ContinuousClock.now - started < .seconds(5))
            #expect(result.classification == .retryable)
            #expect(result.delivery == .unknown)
            #expect(result.httpStatus == nil)
            #expect(result.errorMessage == "timed out after 300 ms")
            #expect(result.duration >= .milliseconds(250))
            // The server acted on it: the task is gone even though no answer came.
            #expect(simulator.counters.deleteCount(for: "slow") == 1)
        }
    }

    @Test("a delay shorter than the timeout is answered")
    func delayWithinTimeout() async throws {
        try await withClientAndSimulator(requestTimeout: .seconds(10)) { client, simulator in
            simulator.script("slowish", .delay(.milliseconds(100), then: .notFound))
            let result = await client.delete(request("slowish"))
            #expect(result.classification == .notFound)
            #expect(result.duration >= .milliseconds(100))
        }
    }

    @Test("a dropped connection is retryable with delivery unknown; the retry succeeds")
    func droppedConnection() async throws {
        try await withClientAndSimulator { client, simulator in
            simulator.script("drop", .dropConnection(times: 1))
            let result = await client.delete(request("drop"))
            #expect(result.classification == .retryable)
            #expect(result.delivery == .unknown)
            #expect(result.httpStatus == nil)
            #expect(result.errorMessage == "connection closed before a response")
            let retry = await client.delete(request("drop"))
            #expect(retry.classification == .deleted)
            let counters = simulator.counters
            #expect(counters.droppedConnections == 1)
            #expect(counters.attempts(for: "drop") == 2)
        }
    }

    @Test("a refused connection is retryable and not sent")
    func refusedConnection() async throws {
        // A bound socket that does not listen: connecting to it is refused, and the port
        // cannot be taken by a simulator of a test running in parallel.
        let socket = try BoundButNotListening()
        defer { socket.close() }
        let client = try makeClient(endpoint: "http://127.0.0.1:\(socket.port)")
        let result = await client.delete(request("task-1"))
        try await client.shutdown()
        #expect(result.classification == .retryable)
        #expect(result.delivery == .notSent)
        #expect(result.httpStatus == nil)
        #expect(result.errorMessage == "connection refused")
    }

    @Test("cancelling the calling task abandons the request as retryable")
    func cancellation() async throws {
        try await withClientAndSimulator(requestTimeout: .seconds(30)) { client, simulator in
            simulator.script("hang", .delay(.seconds(30), then: .deleteOnce))
            let task = Task { await client.delete(request("hang")) }
            // Wait (bounded, without sleeping blindly) until the request reached the server.
            let deadline = ContinuousClock.now + .seconds(10)
            while simulator.counters.inFlight == 0, ContinuousClock.now < deadline { await Task.yield() }
            task.cancel()
            let result = await task.value
            #expect(result.classification == .retryable)
            #expect(result.delivery == .unknown)
            #expect(result.errorMessage == "cancelled")

            let already = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return await client.delete(request("never"))
            }
            let notSent = await already.value
            #expect(notSent.delivery == .notSent)
            #expect(notSent.classification == .retryable)
            #expect(simulator.counters.attempts(for: "never") == 0)
        }
    }

    // MARK: Authentication variants

    @Test("derived signing (V11-HMAC-SHA256) is accepted", arguments: SigningAlgorithm.allCases)
    func signingAlgorithms(algorithm: SigningAlgorithm) async throws {
        try await withClientAndSimulator(signing: algorithm) { client, simulator in
            let result = await client.delete(request("signed-\(algorithm.rawValue)"))
            #expect(result.classification == .deleted)
            #expect(simulator.counters.signatureFailures == 0)
        }
    }

    @Test("token authentication sends X-Auth-Token")
    func tokenAuth() async throws {
        let token = "MIIEXAMPLE-token-value-0123456789"
        try await withSimulator(auth: .token(token)) { simulator in
            let client = try makeClient(endpoint: simulator.endpoint, credentials: .token(token))
            let ok = await client.delete(request("task-1"))
            try await client.shutdown()
            #expect(ok.classification == .deleted)

            let wrong = try makeClient(endpoint: simulator.endpoint, credentials: .token("MIIEXAMPLE-wrong"))
            let refused = await wrong.delete(request("task-2"))
            try await wrong.shutdown()
            #expect(refused.classification == .authRefused)
            #expect(refused.errorCode == "IOTDA.000002")
            #expect(simulator.counters.authFailures == 1)
        }
    }

    @Test("a temporary key sends its security token")
    func securityToken() async throws {
        let temporary = AccessKey(ak: testKey.ak, sk: testKey.sk, securityToken: "security-token-abc")
        try await withSimulator(auth: .accessKey(temporary)) { simulator in
            let client = try makeClient(endpoint: simulator.endpoint, credentials: .accessKey(temporary))
            let ok = await client.delete(request("task-1"))
            try await client.shutdown()
            #expect(ok.classification == .deleted)

            let withoutToken = try makeClient(endpoint: simulator.endpoint, credentials: .accessKey(testKey))
            let refused = await withoutToken.delete(request("task-2"))
            try await withoutToken.shutdown()
            #expect(refused.classification == .authRefused)
        }
    }

    @Test("Instance-Id is sent, signed and checked")
    func instanceID() async throws {
        try await withClientAndSimulator(instanceID: "instance-1") { client, simulator in
            let ok = await client.delete(request("task-1", instance: "instance-1"))
            #expect(ok.classification == .deleted)
            let missing = await client.delete(request("task-2"))
            #expect(missing.classification == .forbidden)
            #expect(missing.errorCode == "IOTDA.000003")
            let wrong = await client.delete(request("task-3", instance: "instance-2"))
            #expect(wrong.classification == .forbidden)
            #expect(simulator.counters.signatureFailures == 0)
        }
    }

    @Test("a project other than the configured one is forbidden")
    func wrongProject() async throws {
        try await withClientAndSimulator { client, simulator in
            let result = await client.delete(DeleteRequest(exportTaskID: "task-1", projectID: "other-project"))
            #expect(result.classification == .forbidden)
            #expect(simulator.counters.deleteCount(for: "task-1") == 0)
        }
    }

    @Test("IDs with '-' and '_' go through unchanged")
    func idCharacters() async throws {
        try await withClientAndSimulator { client, simulator in
            let ids = ["a-b_c", "_-_", "A1b2-C3d4_E5f6-0123456789abcdef01234", "x"]
            for id in ids {
                #expect(await client.delete(request(id)).classification == .deleted)
                #expect(simulator.counters.attempts(for: id) == 1)
                #expect(simulator.deleteCount(for: id) == 1)
            }
        }
    }

    // MARK: Concurrency

    @Test("requests run concurrently up to the configured concurrency")
    func concurrency() async throws {
        try await withSimulator(latency: .milliseconds(400)) { simulator in
            let client = try makeClient(endpoint: simulator.endpoint, concurrency: 8)
            let results = await withTaskGroup(of: DeleteResult.self) { group in
                for i in 0..<24 { group.addTask { await client.delete(request("c-\(i)")) } }
                var all: [DeleteResult] = []
                for await result in group { all.append(result) }
                return all
            }
            try await client.shutdown()
            #expect(results.allSatisfy { $0.classification == .deleted })
            let counters = simulator.counters
            #expect(counters.maxInFlight == 8)
            #expect(counters.inFlight == 0)
            #expect(counters.requests == 24)
            #expect(counters.successfulDeletes == 24)
            #expect(counters.deletedIDs.count == 24)
        }
    }

    // MARK: Configuration

    @Test("http:// is refused at init for hosts that are not loopback")
    func httpOnlyForLoopback() async throws {
        for endpoint in [
            "http://iotda.cn-north-4.myhuaweicloud.com", "http://10.0.0.1:8080", "http://128.0.0.1",
            "http://localhost.example.com", "http://[::2]:80",
        ] {
            let error = #expect(throws: CleanerError.self) { try makeClient(endpoint: endpoint) }
            #expect(error?.code == .configuration)
            #expect(error?.message.contains("endpoint") == true)
        }
        for endpoint in ["http://127.0.0.1:1", "http://127.9.8.7", "http://localhost:8080", "http://[::1]:8080", "HTTP://LOCALHOST/"] {
            let client = try makeClient(endpoint: endpoint)
            try await client.shutdown()
            try await client.shutdown()  // idempotent
        }
    }

    @Test("malformed endpoints are refused naming endpoint")
    func malformedEndpoints() throws {
        for endpoint in [
            "iotda.example.com", "ftp://iotda.example.com", "https://", "https://host/v5", "https://user@host",
            "https://host:0", "https://host:99999", "https://host:abc", "https://host?x=1", "https://ho st",
        ] {
            let error = #expect(throws: CleanerError.self, "\(endpoint)") { try makeClient(endpoint: endpoint) }
            #expect(error?.message.contains("endpoint") == true)
        }
        let endpoint = try Endpoint(parsing: "https://IoTDA.cn-north-4.myhuaweicloud.com:8443/")
        #expect(endpoint.host == "iotda.cn-north-4.myhuaweicloud.com")
        #expect(endpoint.port == 8443)
        #expect(endpoint.hostHeader == "iotda.cn-north-4.myhuaweicloud.com:8443")
        #expect(endpoint.baseURL == "https://iotda.cn-north-4.myhuaweicloud.com:8443")
        let v6 = try Endpoint(parsing: "http://[::1]:9000")
        #expect(v6.host == "::1")
        #expect(v6.hostHeader == "[::1]:9000")
    }

    // MARK: Logs

    @Test("logs never contain the secret key, the security token or the IAM token")
    func logsHoldNoSecrets() async throws {
        let capture = CapturedLogs()
        let secretKey = "SECRET-sk-7f3a9c1e5b"
        let securityToken = "SECRET-securitytoken-42"
        let iamToken = "SECRET-iamtoken-99"
        let key = AccessKey(ak: "AKVISIBLE01", sk: secretKey, securityToken: securityToken)
        try await withSimulator(auth: .accessKey(key), logger: capture.logger()) { simulator in
            let client = try makeClient(
                endpoint: simulator.endpoint, credentials: .accessKey(key), requestTimeout: .milliseconds(200),
                logger: capture.logger())
            simulator.script("slow", .delay(.seconds(5), then: .deleteOnce))
            _ = await client.delete(request("ok"))
            _ = await client.delete(request("ok"))
            _ = await client.delete(request("slow"))
            try await client.shutdown()

            let wrong = AccessKey(ak: "AKVISIBLE01", sk: secretKey + "x", securityToken: securityToken)
            let bad = try makeClient(endpoint: simulator.endpoint, credentials: .accessKey(wrong), logger: capture.logger())
            #expect(await bad.delete(request("ok2")).classification == .authRefused)
            try await bad.shutdown()

            let tokenClient = try makeClient(endpoint: simulator.endpoint, credentials: .token(iamToken), logger: capture.logger())
            #expect(await tokenClient.delete(request("ok3")).classification == .authRefused)
            try await tokenClient.shutdown()
        }
        let text = capture.allText
        #expect(!text.isEmpty)
        #expect(text.contains("IoTDA client ready"))
        for secret in [secretKey, securityToken, iamToken] {
            #expect(!text.contains(secret))
        }
    }

    // MARK: Parsing

    @Test("error bodies: IoTDA, code/message, IAM's nested error, junk")
    func errorBodies() {
        func parse(_ s: String) -> ErrorBody { ErrorBody.parse(Array(s.utf8)) }
        #expect(parse(#"{"error_code":"IOTDA.014016","error_msg":"not found"}"#) == ErrorBody(code: "IOTDA.014016", message: "not found"))
        #expect(parse(#" { "code" : 123 , "message" : "x\"y\u00e9\n" } "#) == ErrorBody(code: "123", message: "x\"yé\n"))
        #expect(parse(#"{"error":{"code":"401","message":"The request you have made requires authentication.","title":"Unauthorized"}}"#)
            == ErrorBody(code: "401", message: "The request you have made requires authentication."))
        #expect(parse(#"{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information","request_id":"abc"}"#)
            == ErrorBody(code: "APIGW.0301", message: "Incorrect IAM authentication information", requestID: "abc"))
        #expect(parse(#"{"details":[{"code":"inner"}],"nested":{"error_code":"no"},"error_code":"top"}"#).code == "top")
        #expect(parse(#"{"error_msg":"\ud83d\ude00"}"#).message == "😀")
        #expect(parse("<html><body>502 Bad Gateway</body></html>") == ErrorBody())
        #expect(parse("") == ErrorBody())
        #expect(parse(#"{"error_code":"IOTDA.1","error_msg":"trunc"#).code == "IOTDA.1")
        #expect(parse(String(repeating: "[", count: 10_000)) == ErrorBody())
        #expect(parse("{" + String(repeating: #""a":{"#, count: 100)) == ErrorBody())
    }

    @Test("Retry-After: delta-seconds and the three HTTP-date forms")
    func retryAfter() {
        let now = Date(timeIntervalSince1970: 784_111_777)  // Sun, 06 Nov 1994 08:49:37 GMT
        #expect(RetryAfter.parse("120", now: now) == .seconds(120))
        #expect(RetryAfter.parse(" 0 ", now: now) == .zero)
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:49:47 GMT", now: now) == .seconds(10))
        #expect(RetryAfter.parse("Sunday, 06-Nov-94 08:50:37 GMT", now: now) == .seconds(60))
        #expect(RetryAfter.parse("Sun Nov  6 08:49:38 1994", now: now) == .seconds(1))
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:00:00 GMT", now: now) == .zero)
        #expect(RetryAfter.parseHTTPDate("Thu, 01 Jan 1970 00:00:00 GMT") == Date(timeIntervalSince1970: 0))
        #expect(RetryAfter.parseHTTPDate("Tue, 29 Feb 2028 23:59:59 GMT") == Date(timeIntervalSince1970: 1_835_481_599))
        #expect(RetryAfter.parse("-5", now: now) == nil)
        #expect(RetryAfter.parse("1.5", now: now) == nil)
        #expect(RetryAfter.parse("soon", now: now) == nil)
        #expect(RetryAfter.parse("", now: now) == nil)
        #expect(RetryAfter.parse("99999999999999999999", now: now) != nil)
    }

    @Test("classification of statuses")
    func classification() {
        let expected: [Int: DeleteClassification] = [
            200: .deleted, 202: .deleted, 204: .deleted, 404: .notFound, 403: .forbidden, 401: .authRefused,
            400: .rejected, 405: .rejected, 409: .rejected, 422: .rejected, 408: .retryable, 429: .retryable,
            500: .retryable, 503: .retryable, 599: .retryable, 100: .rejected, 301: .rejected, 304: .rejected,
        ]
        for (status, classification) in expected {
            #expect(DeleteClassification(httpStatus: status) == classification, "\(status)")
        }
        #expect(Delivery.notSent.rawValue == "not_sent")
    }
}

// MARK: - Helpers

private let testKey = AccessKey(ak: "TESTAK0123456789", sk: "test-secret-key-0123456789abcdef")
private let testProject = "test-project-0001"

private func request(_ id: String, instance: String? = nil) -> DeleteRequest {
    DeleteRequest(exportTaskID: id, projectID: testProject, instanceID: instance)
}

private func isRequestID(_ id: String?) -> Bool {
    guard let id else { return false }
    return id.utf8.count == 32 && id.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
}

private func quietLogger() -> Logger {
    var logger = Logger(label: "iotda-client-tests") { _ in SwiftLogNoOpLogHandler() }
    logger.logLevel = .critical
    return logger
}

private func makeClient(
    endpoint: String,
    credentials: Credentials = .accessKey(testKey),
    signing: SigningAlgorithm = .sdkHMACSHA256,
    concurrency: Int = 4,
    requestTimeout: Duration = .seconds(10),
    logger: Logger = quietLogger()
) throws -> IoTDAClient {
    try IoTDAClient(
        configuration: .init(
            endpoint: endpoint, credentials: credentials, signing: signing, region: "cn-north-4",
            concurrency: concurrency, requestTimeout: requestTimeout, connectTimeout: .seconds(2)),
        logger: logger)
}

private func withSimulator<T: Sendable>(
    auth: IoTDASimulator.Configuration.Auth = .accessKey(testKey),
    instanceID: String? = nil,
    latency: Duration = .zero,
    logger: Logger = quietLogger(),
    _ body: (IoTDASimulator) async throws -> T
) async throws -> T {
    let simulator = try await IoTDASimulator.start(
        .init(projectID: testProject, instanceID: instanceID, auth: auth, region: "cn-north-4", latency: latency),
        logger: logger)
    do {
        let result = try await body(simulator)
        try await simulator.shutdown()
        return result
    } catch {
        try? await simulator.shutdown()
        throw error
    }
}

private func withClientAndSimulator(
    credentials: Credentials = .accessKey(testKey),
    signing: SigningAlgorithm = .sdkHMACSHA256,
    instanceID: String? = nil,
    requestTimeout: Duration = .seconds(10),
    _ body: (IoTDAClient, IoTDASimulator) async throws -> Void
) async throws {
    try await withSimulator(instanceID: instanceID) { simulator in
        let client = try makeClient(
            endpoint: simulator.endpoint, credentials: credentials, signing: signing, requestTimeout: requestTimeout)
        do {
            try await body(client, simulator)
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}

/// A TCP socket bound to 127.0.0.1 on a free port, not listening: connections are refused.
private final class BoundButNotListening: Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        #if canImport(Glibc)
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = Darwin.socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw CleanerError.runtime("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            _ = closeFD(fd)
            throw CleanerError.runtime("bind() failed")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            _ = closeFD(fd)
            throw CleanerError.runtime("getsockname() failed")
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { _ = closeFD(fd) }
}

private func closeFD(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    Glibc.close(fd)
    #else
    Darwin.close(fd)
    #endif
}
