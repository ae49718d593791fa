import ArgumentParser
import AsyncHTTPClient
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOCore
import NIOHTTP1
import Synchronization

/// The floor under the service's CPU a delete at low rates, for `scripts/bench`: what the stack
/// the service is built on costs a request on this machine, with none of the service's own
/// work (no signing, no database, no bookkeeping). Requests are paced evenly, as the service
/// paces them. A binary of its own, built beside the product but not shipped.
@main
struct BenchHTTPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-task-cleaner-bench-http",
        abstract: "Measures the CPU a paced request costs with the service's stack alone.",
        discussion: """
            Prints one line: the mode, the requests, the CPU time a request (µs) and the context \
            switches a request, counted from the first to the last request.
            """)

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        /// A Swift task that only sleeps until each slot (`Task.sleep`).
        case sleep
        /// async-http-client alone: every slot and request on its event loop, no Swift task.
        /// Requests start at their slots whether or not earlier ones were answered.
        case client
        /// What a runner does: a Swift task sleeps until the slot, then awaits the request.
        case task
    }

    @Option(help: "What to measure: \(Mode.allCases.map(\.rawValue).joined(separator: ", ")).")
    var mode: Mode

    @Option(help: "Requests (or sleeps) a second.")
    var rate: Int

    @Option(help: "Requests (or sleeps) in all.")
    var requests: Int

    @Option(help: "The server, http://127.0.0.1:PORT (needed unless --mode sleep).")
    var url: String?

    @Option(help: "Requests in flight at most (--mode task), as the service's concurrency.")
    var concurrency = 16

    @Option(help: "The project ID in the path.")
    var projectID = "simulated-project"

    func validate() throws {
        guard (1...100_000).contains(rate) else { throw ValidationError("--rate must be 1 to 100000") }
        guard (1...1_000_000).contains(requests) else { throw ValidationError("--requests must be 1 to 1000000") }
        guard (1...1_000).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 1000") }
        guard mode == .sleep || url?.hasPrefix("http://127.0.0.1:") == true else {
            throw ValidationError("--url http://127.0.0.1:PORT is needed")
        }
    }

    func run() async throws {
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        let eventLoop = client.eventLoopGroup.next()
        let interval = TimeAmount.nanoseconds(1_000_000_000 / Int64(rate))
        let base = url ?? ""
        let requests = requests
        let projectID = projectID
        // A server that remembers deletes answers 404 to an ID a second time: new IDs each run.
        let run = UInt32.random(in: .min ... .max)
        @Sendable func request(_ index: Int) throws -> HTTPClient.Request {
            try HTTPClient.Request(url: "\(base)/v5/iot/\(projectID)/export-tasks/floor-\(run)-\(index)", method: .DELETE)
        }
        let before = Usage()
        let start = NIODeadline.now()
        var answered = 0
        switch mode {
        case .sleep:
            for index in 1...requests {
                try await Task.sleep(until: .now + .nanoseconds(Int64(index) * interval.nanoseconds - (NIODeadline.now() - start).nanoseconds))
                answered += 1
            }
        case .client:
            let done = eventLoop.makePromise(of: Int.self)
            eventLoop.execute {
                let counts = NIOLoopBoundBox((finished: 0, answered: 0), eventLoop: eventLoop)
                for index in 1...requests {
                    eventLoop.scheduleTask(deadline: start + interval * Int64(index)) {
                        client.execute(request: try request(index), delegate: StatusDelegate(), eventLoop: .delegate(on: eventLoop))
                            .futureResult.whenComplete { result in
                                counts.value.finished += 1
                                if (try? result.get()) == 204 { counts.value.answered += 1 }
                                if counts.value.finished == requests { done.succeed(counts.value.answered) }
                            }
                    }.futureResult.whenFailure { done.fail($0) }
                }
            }
            answered = try await done.futureResult.get()
        case .task:
            // As the service's runners: each sleeps until its next slot, then awaits its request.
            let runners = min(concurrency, requests)
            answered = try await withThrowingTaskGroup(of: Int.self) { group in
                for runner in 0..<runners {
                    group.addTask {
                        var answered = 0
                        for index in stride(from: runner + 1, through: requests, by: runners) {
                            let wait = (start + interval * Int64(index)) - NIODeadline.now()
                            try await Task.sleep(until: .now + .nanoseconds(max(0, wait.nanoseconds)))
                            let status = try await client.execute(
                                request: try request(index), delegate: StatusDelegate(),
                                eventLoop: .delegate(on: eventLoop)).futureResult.get()
                            if status == 204 { answered += 1 }
                        }
                        return answered
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        let after = Usage()
        try await client.shutdown()
        guard answered == requests else {
            throw BenchFailure(message: "\(requests - answered) of \(requests) requests were not answered 204")
        }
        let cpu = (after.cpuSeconds - before.cpuSeconds) * 1e6 / Double(requests)
        let switches = Double(after.switches - before.switches) / Double(requests)
        print("\(mode.rawValue) \(requests) \(Int(cpu.rounded())) \((switches * 10).rounded() / 10)")
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Reads the status, drops the body.
final class StatusDelegate: HTTPClientResponseDelegate {
    typealias Response = Int
    private let status = Atomic<Int>(0)

    func didReceiveHead(task: HTTPClient.Task<Int>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        status.store(Int(head.status.code), ordering: .relaxed)
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<Int>) throws -> Int { status.load(ordering: .relaxed) }
}

/// This process's CPU time and context switches so far.
struct Usage {
    var cpuSeconds: Double
    var switches: Int

    init() {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        cpuSeconds = Double(usage.ru_utime.tv_sec) + Double(usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        switches = usage.ru_nvcsw + usage.ru_nivcsw
    }
}
