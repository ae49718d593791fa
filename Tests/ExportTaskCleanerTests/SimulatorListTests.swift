import AsyncHTTPClient
import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Testing

/// The simulator's ListExportTasks (the sweep's counterpart, docs/commands.md): pages by
/// `limit`, `marker` and `offset`, newest first; a query IoTDA would refuse gets 400; the
/// project is checked as for a delete.
@Suite("IoTDASimulator: ListExportTasks")
struct SimulatorListTests {
    static func tasks(_ count: Int) -> [IoTDASimulator.ExportTask] {
        var tasks: [IoTDASimulator.ExportTask] = []
        for number in 1...count {
            let finished = number % 2 == 0
            let created = Date(timeIntervalSince1970: 1_700_000_000 + Double(number))
            tasks.append(.init(exportTaskID: IoTDASimulator.ExportTask.recordID(number), status: finished ? "Success" : "Processing",
                               createTime: created, endTime: finished ? created.addingTimeInterval(100) : nil))
        }
        return tasks
    }

    /// A request as it comes, unsigned: its status and body.
    func raw(_ simulator: IoTDASimulator, method: String, path: String) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: simulator.endpoint + path)
        request.method = .init(rawValue: method)
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), String(buffer: body))
    }

    func ids(_ body: String) throws -> [String] {
        let page = try ExportTaskPageParser.parse(Array(body.utf8), limit: 50)
        return page.tasks.map(\.exportTaskID)
    }

    @Test("pages newest first by marker and offset; the last ID of a page is its marker; an empty page has none")
    func paging() async throws {
        try await withClientSimulator(auth: .unauthenticated) { simulator in
            simulator.addExportTasks(Self.tasks(7))
            let id = IoTDASimulator.ExportTask.recordID
            let path = "/v5/iot/\(testProject)/export-tasks"
            let first = try await raw(simulator, method: "GET", path: path + "?limit=3")
            #expect(first.status == 200)
            #expect(try ids(first.body) == [id(7), id(6), id(5)])
            #expect(first.body.contains(#""page":{"count":7,"marker":"\#(id(5))"}"#))
            #expect(first.body.contains(#""end_time":null"#) && first.body.contains(#""status":"Processing""#))
            let next = try await raw(simulator, method: "GET", path: path + "?limit=3&marker=\(id(5))")
            #expect(try ids(next.body) == [id(4), id(3), id(2)])
            let skipped = try await raw(simulator, method: "GET", path: path + "?marker=\(id(5))&offset=2&limit=50")
            #expect(try ids(skipped.body) == [id(2), id(1)])
            let defaults = try await raw(simulator, method: "GET", path: path)
            #expect(try ids(defaults.body).count == 7)
            let empty = try await raw(simulator, method: "GET", path: path + "?marker=\(id(1))")
            #expect(empty.body == #"{"export_tasks":[],"page":{"count":7}}"#)
            // A delete answered 204 takes the task off the list.
            #expect(try await raw(simulator, method: "DELETE", path: path + "/\(id(7))").status == 204)
            #expect(try ids(try await raw(simulator, method: "GET", path: path + "?limit=1").body) == [id(6)])
            #expect(simulator.counters.listRequests == 6)
        }
    }

    @Test("a query IoTDA would refuse gets 400; another project 403", arguments: [
        "?limit=0", "?limit=51", "?limit=x", "?offset=501", "?offset=-1", "?marker=123", "?marker=zzzzzzzzzzzzzzzzzzzzzzzz", "?color=red",
    ])
    func refusedQueries(query: String) async throws {
        try await withClientSimulator(auth: .unauthenticated) { simulator in
            let answer = try await raw(simulator, method: "GET", path: "/v5/iot/\(testProject)/export-tasks\(query)")
            #expect(answer.status == 400, "\(query)")
            let other = try await raw(simulator, method: "GET", path: "/v5/iot/another/export-tasks")
            #expect(other.status == 403)
        }
    }

    @Test("signed: the query is part of the signature; an unsigned list request gets 401")
    func signature() async throws {
        try await withClientAndSimulator { client, simulator in
            simulator.addExportTasks(Self.tasks(3))
            let listed = await client.list(ListExportTasksRequest(projectID: testProject, limit: 2,
                                                                  marker: "ffffffffffffffffffffffff"))
            #expect(listed.response.httpStatus == 200)
            #expect(listed.page?.tasks.count == 2)
            let unsigned = try await raw(simulator, method: "GET", path: "/v5/iot/\(testProject)/export-tasks?limit=2")
            #expect(unsigned.status == 401)
            #expect(simulator.counters.signatureFailures == 1)
        }
    }
}
