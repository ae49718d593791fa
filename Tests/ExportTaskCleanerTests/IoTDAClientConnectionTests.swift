import ExportTaskCleaner
import IoTDASimulator
import Testing

/// How the client uses its connections: keep-alive connections are reused, so a request never
/// pays for a connection of its own (as it would on a loop AsyncHTTPClient is told to require).
@Suite("IoTDAClient connections")
struct IoTDAClientConnectionTests {
    @Test("requests one after another share one keep-alive connection")
    func sequentialRequestsShareAConnection() async throws {
        try await withClientAndSimulator { client, simulator in
            for index in 0..<20 {
                let result = await client.delete(clientRequest("seq-\(index)"))
                #expect(result.classification == .deleted)
            }
            #expect(simulator.counters.requests == 20)
            #expect(simulator.counters.connections == 1)
        }
    }

    @Test("concurrent requests open at most the configured connections, and keep them")
    func concurrentRequestsStayWithinTheConnections() async throws {
        try await withClientSimulator(latency: .milliseconds(20)) { simulator in
            let client = try makeClient(endpoint: simulator.endpoint, concurrency: 4)
            for round in 0..<5 {
                let deleted = await withTaskGroup(of: Bool.self) { group in
                    for index in 0..<8 {
                        group.addTask { await client.delete(clientRequest("c-\(round)-\(index)")).classification == .deleted }
                    }
                    return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
                }
                #expect(deleted == 8)
            }
            try await client.shutdown()
            #expect(simulator.counters.requests == 40)
            #expect(simulator.counters.connections >= 1)
            #expect(simulator.counters.connections <= 4)
        }
    }
}
