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
            let first = await client.delete(clientRequest("task-1"))
            #expect(first.classification == .deleted)
            #expect(first.delivery == .answered)
            #expect(first.httpStatus == 204)
            #expect(first.errorCode == nil)
            #expect(first.errorMessage == nil)
            #expect(isRequestID(first.requestID))
            #expect(first.retryAfter == nil)
            #expect(first.duration > .zero)

            let second = await client.delete(clientRequest("task-1"))
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
            let result = await client.delete(clientRequest("no-permission"))
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
            let result = await client.delete(clientRequest("bad"))
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
            let first = await client.delete(clientRequest("busy"))
            #expect(first.classification == .retryable)
            #expect(first.delivery == .answered)
            #expect(first.httpStatus == 429)
            #expect(first.retryAfter == .seconds(7))
            #expect(first.errorCode == "IOTDA.021101")
            let second = await client.delete(clientRequest("busy"))
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
                let result = await client.delete(clientRequest("flaky"))
                #expect(result.classification == .retryable)
                #expect(result.delivery == .answered)
                #expect(result.httpStatus == status)
                #expect(result.errorCode == "IOTDA.000001")
            }
            #expect(await client.delete(clientRequest("flaky")).classification == .deleted)
            #expect(simulator.counters.attempts(for: "flaky") == 3)
        }
    }

    @Test("a redirect is not followed: 3xx is rejected", arguments: [301, 302, 307])
    func redirect(status: Int) async throws {
        try await withClientAndSimulator { client, simulator in
            simulator.script("moved", .serverError(status: status, times: 1))
            let result = await client.delete(clientRequest("moved"))
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
            let result = await client.delete(clientRequest("task-1"))
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
            #expect(await client.delete(clientRequest("task-1")).classification == .authRefused)
            #expect(simulator.counters.signatureFailures == 1)
        }
    }

    @Test("a timeout after sending is retryable with delivery unknown")
    func timeout() async throws {
        try await withClientAndSimulator(requestTimeout: .milliseconds(300)) { client, simulator in
            simulator.script("slow", .delay(.seconds(10), then: .deleteOnce))
            let started = ContinuousClock.now
            let result = await client.delete(clientRequest("slow"))
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
            let result = await client.delete(clientRequest("slowish"))
            #expect(result.classification == .notFound)
            #expect(result.duration >= .milliseconds(100))
        }
    }

    @Test("a dropped connection is retryable with delivery unknown; the retry succeeds")
    func droppedConnection() async throws {
        try await withClientAndSimulator { client, simulator in
            simulator.script("drop", .dropConnection(times: 1))
            let result = await client.delete(clientRequest("drop"))
            #expect(result.classification == .retryable)
            #expect(result.delivery == .unknown)
            #expect(result.httpStatus == nil)
            #expect(result.errorMessage == "connection closed before a response")
            let retry = await client.delete(clientRequest("drop"))
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
        let result = await client.delete(clientRequest("task-1"))
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
            let task = Task { await client.delete(clientRequest("hang")) }
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
                return await client.delete(clientRequest("never"))
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
            let result = await client.delete(clientRequest("signed-\(algorithm.rawValue)"))
            #expect(result.classification == .deleted)
            #expect(simulator.counters.signatureFailures == 0)
        }
    }

    @Test("token authentication sends X-Auth-Token")
    func tokenAuth() async throws {
        let token = "MIIEXAMPLE-token-value-0123456789"
        try await withClientSimulator(auth: .token(token)) { simulator in
            let client = try makeClient(endpoint: simulator.endpoint, credentials: .token(token))
            let ok = await client.delete(clientRequest("task-1"))
            try await client.shutdown()
            #expect(ok.classification == .deleted)

            let wrong = try makeClient(endpoint: simulator.endpoint, credentials: .token("MIIEXAMPLE-wrong"))
            let refused = await wrong.delete(clientRequest("task-2"))
            try await wrong.shutdown()
            #expect(refused.classification == .authRefused)
            #expect(refused.errorCode == "IOTDA.000002")
            #expect(simulator.counters.authFailures == 1)
        }
    }

    @Test("a temporary key sends its security token")
    func securityToken() async throws {
        let temporary = AccessKey(ak: testKey.ak, sk: testKey.sk, securityToken: "security-token-abc")
        try await withClientSimulator(auth: .accessKey(temporary)) { simulator in
            let client = try makeClient(endpoint: simulator.endpoint, credentials: .accessKey(temporary))
            let ok = await client.delete(clientRequest("task-1"))
            try await client.shutdown()
            #expect(ok.classification == .deleted)

            let withoutToken = try makeClient(endpoint: simulator.endpoint, credentials: .accessKey(testKey))
            let refused = await withoutToken.delete(clientRequest("task-2"))
            try await withoutToken.shutdown()
            #expect(refused.classification == .authRefused)
        }
    }

    @Test("Instance-Id is sent, signed and checked")
    func instanceID() async throws {
        try await withClientAndSimulator(instanceID: "instance-1") { client, simulator in
            let ok = await client.delete(clientRequest("task-1", instance: "instance-1"))
            #expect(ok.classification == .deleted)
            let missing = await client.delete(clientRequest("task-2"))
            #expect(missing.classification == .forbidden)
            #expect(missing.errorCode == "IOTDA.000003")
            let wrong = await client.delete(clientRequest("task-3", instance: "instance-2"))
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
                #expect(await client.delete(clientRequest(id)).classification == .deleted)
                #expect(simulator.counters.attempts(for: id) == 1)
                #expect(simulator.deleteCount(for: id) == 1)
            }
        }
    }

    // MARK: Concurrency

    @Test("requests run concurrently up to the configured concurrency")
    func concurrency() async throws {
        try await withClientSimulator(latency: .milliseconds(400)) { simulator in
            let client = try makeClient(endpoint: simulator.endpoint, concurrency: 8)
            let results = await withTaskGroup(of: DeleteResult.self) { group in
                for i in 0..<24 { group.addTask { await client.delete(clientRequest("c-\(i)")) } }
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
}
