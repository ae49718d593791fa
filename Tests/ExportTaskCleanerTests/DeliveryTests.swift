import AsyncHTTPClient
@testable import ExportTaskCleaner
import Foundation
import IoTDASimulator
import NIOCore
import Synchronization
import Testing

/// `delivery` of a request without an answer (docs/database.md, "The database"): `not_sent` only when the
/// request provably never left.
@Suite("Delivery of unanswered requests")
struct DeliveryTests {
    @Test("not_sent only for failures that prove the request never left; any doubt is unknown", arguments: [
        (HTTPClientError.connectTimeout as any Error, false, Delivery.notSent),
        (HTTPClientError.getConnectionFromPoolTimeout, false, .notSent),
        (HTTPClientError.tlsHandshakeTimeout, false, .notSent),
        (HTTPClientError.alreadyShutdown, false, .notSent),
        (ChannelError.connectTimeout(.seconds(5)), false, .notSent),
        (IOError(errnoCode: ECONNREFUSED, reason: "connect"), false, .notSent),
        // A cancellation may arrive while the head is being written, before the client says so.
        (HTTPClientError.cancelled, false, .unknown),
        (CancellationError(), false, .unknown),
        (HTTPClientError.deadlineExceeded, false, .unknown),
        (HTTPClientError.remoteConnectionClosed, false, .unknown),
        (HTTPClientError.readTimeout, false, .unknown),
        (IOError(errnoCode: ECONNRESET, reason: "read"), false, .unknown),
        (ChannelError.ioOnClosedChannel, false, .unknown),
        (ChannelError.eof, false, .unknown),
        // Once the head was written, nothing proves the server did not act.
        (HTTPClientError.connectTimeout, true, .unknown),
        (HTTPClientError.cancelled, true, .unknown),
    ])
    func classification(error: any Error, headWritten: Bool, expected: Delivery) {
        #expect(FailedDelivery.classify(error, headWritten: headWritten) == expected)
    }

    @Test("cancelled at many points of its life, a request the server received is never recorded as not_sent")
    func cancellationSweep() async throws {
        try await withClientAndSimulator(requestTimeout: .seconds(30)) { client, simulator in
            let rounds = 300
            for index in 0..<rounds {
                // Held by the server, so that no answer races the cancellation.
                simulator.script("cut-\(index)", .delay(.seconds(10), then: .deleteOnce))
            }
            var results: [String: Delivery] = [:]
            let clock = ContinuousClock()
            for index in 0..<rounds {
                let id = "cut-\(index)"
                let task = Task { await client.delete(clientRequest(id)) }
                // From at once to about 3 ms into the request: before, while and after its
                // connection is made and its head written.
                let cutAt = clock.now.advanced(by: .microseconds((index * 37) % 3_000))
                while clock.now < cutAt { await Task.yield() }
                task.cancel()
                let result = await task.value
                #expect(result.classification == .retryable)
                results[id] = result.delivery
            }
            // Every request the server will ever count has arrived once the connections are gone.
            try await client.shutdown()
            let deadline = clock.now.advanced(by: .seconds(5))
            var seen = -1
            while simulator.counters.requests != seen, clock.now < deadline {
                seen = simulator.counters.requests
                try await Task.sleep(for: .milliseconds(100))
            }
            let received = results.keys.filter { simulator.counters.attempts(for: $0) > 0 }
            #expect(!received.isEmpty)
            for id in received {
                #expect(results[id] != .notSent, "\(id) reached the server but was recorded as not sent")
            }
        }
    }
}
