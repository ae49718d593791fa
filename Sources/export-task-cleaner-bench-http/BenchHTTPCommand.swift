import ArgumentParser
import AsyncHTTPClient
import ExportTaskCleaner
import NIOCore

/// The floor under the service's CPU a delete at low rates, for `scripts/bench` (e): what the
/// stack the service is built on costs a request on this machine, with none of the service's
/// own work (no signing, no database, no bookkeeping). The HTTP client has the service's
/// settings (``IoTDAClient/httpConfiguration(concurrency:connectTimeout:)``), and requests are
/// paced evenly, as the service paces them. A binary of its own, built beside the product but
/// not shipped.
@main
struct BenchHTTPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-task-cleaner-bench-http",
        abstract: "Measures the CPU a paced request costs with the service's stack alone.",
        discussion: """
            Prints one line: the mode, the requests, the CPU time a request (µs), the context \
            switches a request and the rate achieved, counted from the start to the last answer.
            """)

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        /// A Swift task that only sleeps until each slot (`Task.sleep`).
        case sleep
        /// async-http-client alone: every slot and request on one event loop, no Swift task.
        /// Requests start at their slots whether or not earlier ones were answered.
        case client
        /// As the service's runners: `--concurrency` Swift tasks, each sleeping until its next
        /// slot and then awaiting its request.
        case task
    }

    @Option(help: "What to measure: \(Mode.allCases.map(\.rawValue).joined(separator: ", ")).")
    var mode: Mode

    @Option(help: "Requests (or sleeps) a second.")
    var rate: Int

    @Option(help: "Requests (or sleeps) in all.")
    var requests: Int

    @Option(help: "Connections, and tasks in --mode task, as the service's concurrency.")
    var concurrency = 16

    @Option(help: "The server, http://127.0.0.1:PORT (needed unless --mode sleep).")
    var url: String?

    @Option(help: "The project ID in the path.")
    var projectID = "simulated-project"

    /// Each request's deadline, as the service's `request_timeout_ms`.
    static let requestTimeout = TimeAmount.seconds(10)

    func validate() throws {
        guard (1...10_000).contains(rate) else { throw ValidationError("--rate must be 1 to 10000") }
        guard (1...100_000).contains(requests) else { throw ValidationError("--requests must be 1 to 100000") }
        guard (1...1_000).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 1000") }
        guard mode == .sleep || url?.hasPrefix("http://127.0.0.1:") == true else {
            throw ValidationError("--url http://127.0.0.1:PORT is needed")
        }
    }

    func run() async throws {
        let client = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup,
            configuration: IoTDAClient.httpConfiguration(concurrency: concurrency, connectTimeout: .seconds(5)))
        let pacing = Pacing(rate: rate)
        let before = ProcessUsage()
        let answered: Int
        do {
            switch mode {
            case .sleep: answered = try await sleepOnly(pacing)
            case .client: answered = try await clientAlone(client, pacing)
            case .task: answered = try await asRunners(client, pacing)
            }
        } catch {
            try? await client.shutdown()
            throw error
        }
        let elapsed = pacing.elapsed
        let after = ProcessUsage()
        try await client.shutdown()
        guard answered == requests else {
            throw BenchFailure(message: "\(requests - answered) of \(requests) requests were not answered 204")
        }
        let cpu = (after.cpuSeconds - before.cpuSeconds) * 1e6 / Double(requests)
        let switches = Double(after.switches - before.switches) / Double(requests)
        let achieved = Double(requests) / elapsed
        print(mode.rawValue, requests, Int(cpu.rounded()), (switches * 10).rounded() / 10, (achieved * 10).rounded() / 10)
    }

    /// Sleeps until each slot, and does nothing else.
    private func sleepOnly(_ pacing: Pacing) async throws -> Int {
        for index in 1...requests {
            try await Task.sleep(until: pacing.slot(index), clock: .continuous)
        }
        return requests
    }

    /// Every slot a timer on the event loop, every request started there: no Swift task.
    private func clientAlone(_ client: HTTPClient, _ pacing: Pacing) async throws -> Int {
        let eventLoop = client.eventLoopGroup.next()
        let done = eventLoop.makePromise(of: Int.self)
        let requests = requests
        let target = target
        let start = NIODeadline.now() + pacing.untilStart
        eventLoop.execute {
            // Answers come back on this loop (`.delegate(on:)`), where the counts live.
            let counts = NIOLoopBoundBox((finished: 0, answered: 0), eventLoop: eventLoop)
            for index in 1...requests {
                eventLoop.scheduleTask(deadline: start + pacing.interval * Int64(index)) {
                    client.execute(request: try target(index), delegate: StatusDelegate(), eventLoop: .delegate(on: eventLoop),
                                   deadline: .now() + Self.requestTimeout).futureResult.whenComplete { result in
                        counts.value.finished += 1
                        if (try? result.get()) == 204 { counts.value.answered += 1 }
                        if counts.value.finished == requests { done.succeed(counts.value.answered) }
                    }
                }.futureResult.whenFailure { done.fail($0) }
            }
        }
        return try await done.futureResult.get()
    }

    /// As the service's runners: each task sleeps until its next slot, then awaits its request.
    private func asRunners(_ client: HTTPClient, _ pacing: Pacing) async throws -> Int {
        let runners = min(concurrency, requests)
        let requests = requests
        let target = target
        return try await withThrowingTaskGroup(of: Int.self) { group in
            for runner in 0..<runners {
                group.addTask {
                    var answered = 0
                    for index in stride(from: runner + 1, through: requests, by: runners) {
                        try await Task.sleep(until: pacing.slot(index), clock: .continuous)
                        let status = try await client.execute(
                            request: try target(index), delegate: StatusDelegate(), eventLoop: .indifferent,
                            deadline: .now() + Self.requestTimeout).futureResult.get()
                        if status == 204 { answered += 1 }
                    }
                    return answered
                }
            }
            return try await group.reduce(0, +)
        }
    }

    /// The request of slot `index`: a new ID each run, since a server that remembers deletes
    /// answers 404 to an ID the second time.
    private var target: @Sendable (Int) throws -> HTTPClient.Request {
        let base = "\(url ?? "")/v5/iot/\(projectID)/export-tasks/floor-\(UInt32.random(in: .min ... .max))-"
        return { index in try HTTPClient.Request(url: "\(base)\(index)", method: .DELETE) }
    }
}
