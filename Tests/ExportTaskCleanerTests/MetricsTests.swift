import AsyncHTTPClient
import Foundation
import IoTDASimulator
import Logging
import NIOCore
import NIOHTTP1
import Testing

@testable import ExportTaskCleaner

/// `GET /metrics` after a run against the simulator: the families agree with what the simulator
/// received, the audit log and the database, and the text is Prometheus' format.
@Suite("Metrics")
struct MetricsTests {
    @Test("after a run, requests_total, the histogram and tasks{state} agree with the simulator, the audit log and the database")
    func scrapeAfterARun() async throws {
        let harness = try await ServiceHarness.start()
        var ids: [String] = []
        for index in 0..<200 {
            let id = "metrics-\(index)"
            ids.append(id)
            switch index % 10 {
            case 0: harness.simulator.script(id, .notFound)
            case 1: harness.simulator.script(id, .forbidden)
            case 2: harness.simulator.script(id, .badRequest)
            case 3: harness.simulator.script(id, .serverError(status: 503, times: 1))
            case 4: harness.simulator.script(id, .serverError(status: 500, times: 100))
            default: break
            }
        }
        try await harness.enqueue(ids + ["not valid!"])
        let setup = MetricsSetup()
        let service = CleanerService(
            options: ServiceHarness.options(), store: harness.store, transport: harness.transport,
            retry: .exponentialJitter(maxAttempts: 3, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)),
            metrics: setup.metrics, logger: harness.logs.logger())
        try await service.run()
        let server = try await setup.serve(at: ListenAddress(host: "127.0.0.1", port: 0), logger: harness.logs.logger())
        setup.setCollector { service.collectMetrics() }
        let port = try #require(server.address.port)

        let response = try await Self.get("http://127.0.0.1:\(port)/metrics")
        #expect(response.status == 200)
        #expect(response.contentType == "text/plain; version=0.0.4; charset=utf-8")
        let samples = try PrometheusText.parse(response.body)

        let received = harness.simulator.counters.requests
        let requests = samples.filter { $0.name == "export_task_cleaner_requests_total" }
        #expect(requests.reduce(0) { $0 + $1.value } == Double(received))
        let audit = try Self.auditOutcomes(harness.path)
        for outcome in ServiceMetrics.requestOutcomes {
            let scraped = requests.first { $0.labels["outcome"] == outcome.rawValue }?.value
            #expect(scraped == Double(audit[outcome.rawValue] ?? 0), "\(outcome.rawValue)")
        }
        #expect(samples.first { $0.name == "export_task_cleaner_request_duration_seconds_count" }?.value == Double(received))
        let counts = try await harness.store.inner.counts()
        for state in TaskState.allCases {
            let scraped = samples.first { $0.name == "export_task_cleaner_tasks" && $0.labels["state"] == state.rawValue }?.value
            #expect(scraped == Double(counts[state] ?? 0), "\(state.rawValue)")
        }
        #expect(samples.first { $0.name == "export_task_cleaner_in_flight" }?.value == 0)
        #expect(samples.first { $0.name == "export_task_cleaner_concurrency_limit" }?.value == 8)
        #expect(samples.first { $0.name == "export_task_cleaner_credentials_paused" }?.value == 0)
        #expect(samples.first { $0.name == "export_task_cleaner_oldest_pending_age_seconds" }?.value == 0)
        #expect((samples.first { $0.name == "process_resident_memory_bytes" }?.value ?? 0) > 1_000_000)

        #expect(try await Self.get("http://127.0.0.1:\(port)/other").status == 404)
        #expect(try await Self.get("http://127.0.0.1:\(port)/metrics", method: .POST).status == 405)
        // The port is taken now: a second endpoint there is a configuration error.
        let error = await #expect(throws: CleanerError.self) {
            _ = try await setup.serve(at: ListenAddress(host: "127.0.0.1", port: port), logger: harness.logs.logger())
        }
        #expect(error?.code == .configuration && error?.message.contains("metrics.listen 127.0.0.1:\(port)") == true)
        await server.shutdown()
        try await harness.shutdown()
    }

    @Test("metrics.listen: HOST:PORT, checked where it is written", arguments: [
        (#""127.0.0.1:9464""#, "127.0.0.1:9464"), (#""[::1]:9464""#, "[::1]:9464"), (#""localhost:1""#, "localhost:1"),
        (#""0.0.0.0:9464""#, "0.0.0.0:9464"), (#""127.0.0.1""#, nil), (#""127.0.0.1:0""#, nil), (#""host:9464""#, nil),
        (#""127.0.0.1:65536""#, nil), ("9464", nil),
    ])
    func listenAddress(text: String, parsed: String?) throws {
        let json = #"{"region": "cn-north-4", "project_id": "p1", "metrics": {"listen": \#(text)}}"#
        if let parsed {
            #expect(try ConfigurationLoader.parse(Array(json.utf8), source: "c.json").metricsListen?.description == parsed)
        } else {
            let error = #expect(throws: CleanerError.self) { try ConfigurationLoader.parse(Array(json.utf8), source: "c.json") }
            #expect(error?.message.contains("c.json:1: metrics.listen") == true, "\(error?.message ?? "")")
        }
    }

    @Test("no metrics key: no endpoint")
    func absent() throws {
        let json = #"{"region": "cn-north-4", "project_id": "p1"}"#
        #expect(try ConfigurationLoader.parse(Array(json.utf8), source: "c.json").metricsListen == nil)
    }

    // MARK: Helpers

    static func get(_ url: String, method: HTTPMethod = .GET) async throws -> (status: Int, contentType: String?, body: String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), response.headers.first(name: "Content-Type"), String(buffer: body))
    }

    /// Audit rows that stand for a request, per outcome.
    static func auditOutcomes(_ path: String) throws -> [String: Int] {
        let db = try SQLiteConnection(path: path)
        let statement = try db.prepare("SELECT outcome, count(*) FROM audit_log WHERE delivery IS NOT NULL GROUP BY outcome")
        var counts: [String: Int] = [:]
        while try statement.step() { counts[statement.string(0)] = statement.int(1) }
        statement.reset()
        return counts
    }
}

/// A strict reader of Prometheus' text format 0.0.4, enough to check what the endpoint writes.
enum PrometheusText {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    struct Malformed: Error, CustomStringConvertible {
        var line: String
        var description: String { "not Prometheus text: \(line)" }
    }

    static func parse(_ text: String) throws -> [Sample] {
        let name = /[a-zA-Z_:][a-zA-Z0-9_:]*/
        let typeLine = /# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)/
        let label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"/
        var samples: [Sample] = []
        var typed: Set<Substring> = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") { continue }
            if line.hasPrefix("#") {
                guard let match = line.wholeMatch(of: typeLine) else { throw Malformed(line: String(line)) }
                typed.insert(match.output.0.split(separator: " ")[2])
                continue
            }
            guard let nameMatch = line.prefixMatch(of: name) else { throw Malformed(line: String(line)) }
            var rest = line[nameMatch.range.upperBound...]
            var labels: [String: String] = [:]
            if rest.hasPrefix("{") {
                guard let close = rest.firstIndex(of: "}") else { throw Malformed(line: String(line)) }
                let body = rest[rest.index(after: rest.startIndex)..<close]
                for part in body.split(separator: ",") where !part.isEmpty {
                    guard let match = part.wholeMatch(of: label) else { throw Malformed(line: String(line)) }
                    labels[String(match.output.1)] = String(match.output.2)
                }
                rest = rest[rest.index(after: close)...]
            }
            guard rest.hasPrefix(" "), let value = Double(rest.dropFirst().split(separator: " ").first ?? "") else {
                throw Malformed(line: String(line))
            }
            let sampleName = String(nameMatch.output)
            let family = ["_bucket", "_sum", "_count"].reduce(sampleName) { name, suffix in
                name.hasSuffix(suffix) && typed.contains(Substring(name.dropLast(suffix.count))) ? String(name.dropLast(suffix.count)) : name
            }
            guard typed.contains(Substring(family)) else { throw Malformed(line: "no # TYPE before: \(line)") }
            samples.append(Sample(name: sampleName, labels: labels, value: value))
        }
        return samples
    }
}
