import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import ExportTaskCleaner

/// The metrics endpoint against clients that do not play by the rules (docs/metrics.md, "Metrics"): a
/// request that never ends, a flood of pipelined requests, and the thread the endpoint runs on.
/// Raw connections on 127.0.0.1; every wait is bounded by a deadline.
@Suite("Metrics endpoint, hostile clients")
struct MetricsServerHostileTests {
    /// The whole-request deadline, short so that the tests do not wait 10 s.
    static let limits = MetricsServer.Limits(requestTimeout: .milliseconds(200))
    /// Far beyond the deadline: a connection not closed by then never will be.
    static let patience: TimeAmount = .seconds(5)

    static let announcedBody = "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
    static let chunkedNoChunks = "POST /metrics HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    static let scrape = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"

    @Test("a head announcing a body that never comes, and a chunked head with no chunks, are closed by the whole-request deadline; 32 of them do not stop a later scrape")
    func silentBodiesAreClosed() async throws {
        let setup = MetricsSetup()
        let server = try await setup.serve(at: ListenAddress(host: "127.0.0.1", port: 0), limits: Self.limits, logger: quietLogger())
        let port = try #require(server.address.port)
        do {
            for head in [Self.announcedBody, Self.chunkedNoChunks] {
                let client = try await RawClient.connect(port: port)
                client.send(head)
                #expect(try await client.closed(within: Self.patience), "\(head.split(separator: "\r\n")[2])")
            }
            // Every connection the endpoint allows, each waiting on a body.
            var clients: [RawClient] = []
            for index in 0..<MetricsServer.Limits.standard.maxConnections {
                let client = try await RawClient.connect(port: port)
                client.send(index.isMultiple(of: 2) ? Self.announcedBody : Self.chunkedNoChunks)
                clients.append(client)
            }
            for client in clients {
                #expect(try await client.closed(within: Self.patience))
            }
            // A client sees its connection closed a moment before the endpoint has counted it
            // gone: on a busy machine the first scrape after may still find every slot taken and
            // be closed unanswered. Within a few tries (bounded), it is served.
            var answer = ""
            for _ in 0..<50 where !answer.hasPrefix("HTTP/1.1 200 OK\r\n") {
                answer = try await RawClient.fetch(port: port, request: Self.scrape)
            }
            #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer.prefix(80))")
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test("5,000 pipelined GET /metrics, never read: a few rendered, the connection closed, and another client served meanwhile")
    func pipelinedFloodIsBounded() async throws {
        let setup = MetricsSetup()
        let renders = RenderCount()
        setup.setCollector { renders.value.add(1, ordering: .relaxed) }
        // Every request renders: the budget alone bounds the renders here.
        let server = try await setup.serve(at: ListenAddress(host: "127.0.0.1", port: 0), limits: MetricsServer.Limits(renderReuse: .zero),
                                           logger: quietLogger())
        let port = try #require(server.address.port)
        do {
            let attacker = try await RawClient.connect(port: port, reading: false)
            attacker.send(String(repeating: Self.scrape, count: 5_000))
            // While the attacker is connected (or just cut off), a scrape is answered.
            let answer = try await RawClient.fetch(port: port, request: "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer.prefix(80))")
            #expect(try await attacker.closed(within: Self.patience))
            // The attacker's renders, at most the connection's burst, and the one scrape.
            let rendered = renders.value.load(ordering: .relaxed)
            #expect(rendered >= 1 && rendered <= MetricsServer.Limits.standard.requestBurst + 1, "\(rendered) renders")
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test("a render serves the scrapes that follow within renderReuse (100 ms), on any connection")
    func rendersReused() async throws {
        let setup = MetricsSetup()
        let renders = RenderCount()
        setup.setCollector { renders.value.add(1, ordering: .relaxed) }
        let server = try await setup.serve(at: ListenAddress(host: "127.0.0.1", port: 0), limits: MetricsServer.Limits(renderReuse: .seconds(600)),
                                           logger: quietLogger())
        let port = try #require(server.address.port)
        var answers: [String] = []
        for _ in 0..<3 {
            answers.append(try await RawClient.fetch(port: port, request: "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
        }
        await server.shutdown()
        #expect(answers.allSatisfy { $0.hasPrefix("HTTP/1.1 200 OK\r\n") && $0 == answers[0] })
        #expect(renders.value.load(ordering: .relaxed) == 1)
    }

    @Test("a connection's budget: a burst of 16 requests, then one a second")
    func requestBudget() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let budget = MetricsRequestBudget(burst: 16, interval: .seconds(1), now: start)
        #expect((0..<16).allSatisfy { _ in budget.spend(now: start) })
        #expect(!budget.spend(now: start))
        #expect(!budget.spend(now: start + .milliseconds(999)))
        #expect(budget.spend(now: start + .milliseconds(1_001)))
        #expect(!budget.spend(now: start + .milliseconds(1_002)))
        // A long pause refills the burst, no more.
        let later = start + .seconds(3_600)
        #expect((0..<16).allSatisfy { _ in budget.spend(now: later) })
        #expect(!budget.spend(now: later))
        // One a second goes on for ever.
        #expect((1...100).allSatisfy { budget.spend(now: later + .seconds(Int64($0))) })
    }

    @Test("the endpoint runs on a thread of its own, not on the IoTDA client's event loops; shutting down twice is harmless")
    func ownEventLoop() async throws {
        let setup = MetricsSetup()
        let server = try await setup.serve(at: ListenAddress(host: "127.0.0.1", port: 0), logger: quietLogger())
        let shared = Set(MultiThreadedEventLoopGroup.singleton.makeIterator().map { ObjectIdentifier($0) })
        let own = Array(server.group.makeIterator())
        #expect(own.count == 1)
        #expect(own.allSatisfy { !shared.contains(ObjectIdentifier($0)) })
        #expect(server.group !== MultiThreadedEventLoopGroup.singleton)
        let port = try #require(server.address.port)
        let answer = try await RawClient.fetch(port: port, request: "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"))
        await server.shutdown()
        await server.shutdown()
    }
}

/// Scrapes rendered: the collector's calls.
final class RenderCount: Sendable {
    let value = Atomic<Int>(0)
}

/// A raw TCP connection to 127.0.0.1, on NIO's shared loops, that keeps what it receives.
final class RawClient: Sendable {
    let channel: any Channel
    private let received: Received

    /// What a connection received, and whether its peer closed it.
    final class Received: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let bytes = Mutex<[UInt8]>([])

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            bytes.withLock { $0.append(contentsOf: buffer.readableBytesView) }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    private init(channel: any Channel, received: Received) {
        self.channel = channel
        self.received = received
    }

    /// Connects; with `reading` false, nothing is ever read from the socket.
    static func connect(port: Int, reading: Bool = true) async throws -> RawClient {
        let received = Received()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.autoRead, value: reading)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(received) }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        return RawClient(channel: channel, received: received)
    }

    /// Sends `text` without waiting for it to be written (a peer that reads nothing would hold
    /// the write for ever).
    func send(_ text: String) {
        channel.writeAndFlush(ByteBuffer(string: text), promise: nil)
    }

    /// Whether the connection is closed within `timeout`.
    func closed(within timeout: TimeAmount) async throws -> Bool {
        let loop = channel.eventLoop
        let answered = Once()
        let promise = loop.makePromise(of: Bool.self)
        let timer = loop.scheduleTask(in: timeout) {
            if answered.first() { promise.succeed(false) }
        }
        channel.closeFuture.whenComplete { _ in
            timer.cancel()
            if answered.first() { promise.succeed(true) }
        }
        return try await promise.futureResult.get()
    }

    /// True the first time only.
    final class Once: Sendable {
        private let done = Atomic<Bool>(false)
        func first() -> Bool { !done.exchange(true, ordering: .relaxed) }
    }

    var text: String { String(decoding: received.bytes.withLock { $0 }, as: UTF8.self) }

    /// A request on a new connection that asks to be closed after the answer: the answer as
    /// text, once the server closed the connection (within 30 s: a machine busy with every
    /// other suite has taken more than 10 s to schedule the endpoint's thread beside a flood).
    static func fetch(port: Int, request: String) async throws -> String {
        let client = try await connect(port: port)
        client.send(request)
        guard try await client.closed(within: .seconds(30)) else {
            try? await client.channel.close()
            throw CleanerError.runtime("no complete answer from the metrics endpoint in 30 s")
        }
        return client.text
    }
}
