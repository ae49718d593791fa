import ExportTaskCleaner
import Foundation
import IoTDASimulator
import ServiceLifecycleTestKit
import Testing

/// Input from outside — rows other tools wrote, server answers, configuration — that once
/// made a wrong URL, a crash or a task parked for years (docs/operations.md, "Behaviour under failures").
@Suite("Hostile input, in the library")
struct HostileInputTests {
    @Test("rows written with plain SQL whose IDs would make a wrong URL or header are invalid, never sent")
    func badIdentifiersFromTheDatabase() async throws {
        let harness = try await ServiceHarness.start()
        try await harness.enqueue(["fine"])
        let db = try SQLiteConnection(path: harness.path)
        let rows: [(String, String)] = [
            ("dots", "'..'"), ("dot", "'.'"), ("blob-dots", "x'2e2e'"), ("empty", "''"), ("slash", "'a/b'"),
            ("crlf", "'p' || char(13, 10) || 'X-Injected: 1'"), ("nul", "'p' || char(0) || 'q'"),
            ("long", "'\(String(repeating: "p", count: 65))'"),
        ]
        for (id, project) in rows {
            try db.execute("INSERT INTO export_tasks(export_task_id, project_id) VALUES ('\(id)', \(project))")
        }
        try db.execute("INSERT INTO export_tasks(export_task_id, instance_id) VALUES ('instance-crlf', 'i' || char(13, 10) || 'j')")
        try db.execute("INSERT INTO export_tasks(export_task_id) VALUES (x'74312d626c6f62')")  // 't1-blob' as a BLOB

        try await harness.service(ServiceHarness.options()).run()

        #expect(harness.simulator.counters.requests == 1)
        #expect(harness.simulator.attempts(for: "fine") == 1)
        let states = try harness.rows()
        #expect(states["fine"]?.state == "deleted")
        for id in rows.map(\.0) + ["instance-crlf"] {
            #expect(states[id]?.state == "invalid", "\(id)")
            let audit = try await harness.audit(id)
            #expect(audit.map(\.outcome) == ["invalid"], "\(id)")
            #expect(audit.first?.delivery == nil)
        }
        await #expect(try harness.audit("dots").first?.errorMessage == "project_id: only letters, digits, '_' and '-' are allowed")
        await #expect(try harness.audit("blob-dots").first?.errorMessage == "project_id: not text")
        await #expect(try harness.audit("empty").first?.errorMessage == "project_id: empty")
        await #expect(try harness.audit("long").first?.errorMessage == "project_id: longer than 64 characters")
        await #expect(try harness.audit("instance-crlf").first?.errorMessage == "instance_id: only letters, digits, '_' and '-' are allowed")
        #expect(try db.scalarInt("SELECT count(*) FROM export_tasks WHERE typeof(export_task_id) = 'blob' AND state = 'invalid'") == 1)
        try await harness.shutdown()
    }

    @Test("outcomes that cannot be written because the file is corrupt stop the service (exit 1), logged one by one")
    func corruptWritesStop() async throws {
        let harness = try await ServiceHarness.start()
        try await harness.enqueue((1...20).map { "c-\($0)" })
        harness.store.failingWriteCode.withLock { $0 = 11 }
        harness.store.failingWrites.withLock { $0 = 1_000 }
        let service = harness.service(ServiceHarness.options())
        let error = await #expect(throws: CleanerError.self) { try await service.run() }
        #expect(error?.code == .runtime)
        #expect(error?.message.contains("the queue is corrupt") == true)
        #expect(service.outcome == .databaseCorrupt)
        // Unverified credentials: one request, whose outcome could not be written, then the stop.
        #expect(harness.simulator.counters.requests < 20)
        let unwritten = harness.logs.lines.filter { $0.message == "outcome not written: the queue is corrupt" }
        #expect(unwritten.count == harness.simulator.counters.requests)
        #expect(!harness.logs.lines.contains { $0.message == "lease no longer held; outcome discarded" })
        try await harness.shutdown()
    }

    @Test("an attempts count another tool set to the largest integer does not overflow")
    func hugeAttempts() async throws {
        let harness = try await ServiceHarness.start()
        try SQLiteConnection(path: harness.path).execute(
            "INSERT INTO export_tasks(export_task_id, attempts) VALUES ('many', 9223372036854775807)")
        try await harness.service(ServiceHarness.options()).run()
        // Read as at most a million, so the count goes on from there.
        #expect(try harness.rows()["many"]?.state == "deleted")
        #expect(try harness.rows()["many"]?.attempts == 1_000_001)
        #expect(harness.simulator.attempts(for: "many") == 1)
        try await harness.shutdown()
    }

    @Test("a request the HTTP client refuses as built is rejected at once, not retried as transient")
    func refusedRequestNotRetried() async throws {
        let harness = try await ServiceHarness.start()
        let result = await harness.client.delete(
            DeleteRequest(exportTaskID: "t1", projectID: ServiceHarness.project, instanceID: "i\r\nX-Injected: 1"))
        #expect(result.classification == .rejected)
        #expect(result.delivery == .notSent)
        #expect(result.errorMessage == "the HTTP client refused the request: Invalid header field values")
        #expect(harness.simulator.counters.requests == 0)
        try await harness.shutdown()
    }

    @Test("Retry-After is honoured up to an hour: a task is never parked for years, and the audit row says so")
    func retryAfterCapped() async throws {
        let retry = ExponentialJitterRetry(maxAttempts: 8, baseDelay: .seconds(1), maxDelay: .seconds(300))
        #expect(retry.backoff(attempts: 1, retryAfter: .seconds(99_999_999), unit: 0) == .seconds(3_600))
        #expect(retry.backoff(attempts: 1, retryAfter: .seconds(120), unit: 0) == .seconds(120))
        let daily = ExponentialJitterRetry(maxAttempts: 8, baseDelay: .seconds(1), maxDelay: .seconds(86_400))
        #expect(daily.backoff(attempts: 1, retryAfter: .seconds(9_999_999_999), unit: 0) == .seconds(86_400))

        let harness = try await ServiceHarness.start()
        harness.simulator.script("parked", .tooManyRequests(retryAfterSeconds: 99_999_999, times: 1))
        try await harness.enqueue(["parked"])
        let service = harness.service(ServiceHarness.options(drain: false))
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                #expect(await harness.store.applied.wait { $0.joined().count >= 1 })
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        let row = try await #require(try harness.audit("parked").first)
        #expect(row.outcome == "retry")
        #expect(row.errorMessage?.contains("Retry-After asked for 99999999 s, more than the 3600 s honoured; retried after 3600 s") == true)
        let due = try #require(try SQLiteConnection(path: harness.path).scalarInt(
            "SELECT CAST((julianday(next_attempt_at) - julianday('now')) * 86400 AS INTEGER) FROM export_tasks"))
        #expect((3_500...3_600).contains(due))
        try await harness.shutdown()
    }

    @Test("durations and dates from input never trap: tiny rates, far dates, impossible days")
    func boundedArithmetic() throws {
        var pacer = RequestPacer(rate: 1e-10)
        let now = ContinuousClock.now
        _ = pacer.reserve(now: now)
        #expect(pacer.reserve(now: now) == now.advanced(by: .seconds(86_400)))
        pacer.setRate(0.001)
        #expect(Timestamp.format(Date(timeIntervalSince1970: -1e15)) == "1600-01-01T00:00:00.000Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1e15)) == "9999-12-31T23:59:59.999Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: .nan)) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp.parse("2026-02-30") == nil)
        #expect(Timestamp.parse("2025-02-29") == nil)
        #expect(Timestamp.parse("2024-02-29") != nil)
        #expect(Timestamp.parse("0000-01-01") == nil)
        #expect(Timestamp.parse("1599-12-31") == nil)
    }

    @Test("the day kept between timestamps agrees with the calendar: day ends, leap days, before 1970, far years")
    func calendarFieldsAgree() {
        var instants: [Double] = [0, -1, -0.5, 86_399.999, 86_400, -86_400, -86_401, 951_782_400, 951_868_799.5,
                                  -11_676_096_000, 253_402_300_799.999, 1e12 - 1, -1e12 + 1, 1e13, -1e13,
                                  .nan, .infinity, -.infinity]
        var random = SystemRandomNumberGenerator()
        for _ in 0..<2_000 { instants.append(Double.random(in: -11_676_096_000...253_402_300_799, using: &random)) }
        // Out of order, so that the kept day keeps changing, and twice, so that it is used.
        for interval in instants + instants.reversed() {
            let date = Date(timeIntervalSince1970: interval)
            #expect(UTCCalendar.fields(of: date) == UTCCalendar.calendarFields(of: date), "\(interval)")
        }
        #expect(Timestamp.format(Date(timeIntervalSince1970: 951_868_799.5)) == "2000-02-29T23:59:59.500Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.500Z")
    }

    @Test("terminal text is escaped, the database keeps the raw text")
    func printable() {
        #expect(TextFormat.printable("IOTDA.\u{1B}[31m\r\nFAKE") == "IOTDA.\\u{1b}[31m\\u{d}\\u{a}FAKE")
        #expect(TextFormat.printable("plain text, ünïcode") == "plain text, ünïcode")
        #expect(TextFormat.printable("\u{202E}evil\u{9B}2J") == "\\u{202e}evil\\u{9b}2J")
    }

    @Test("CSV fields are quoted per RFC 4180, CRLF included; --since is bounded")
    func csvAndSince() {
        #expect(AuditWriter.csvField("a\r\nb") == "\"a\r\nb\"")
        #expect(AuditWriter.csvField("say \"hi\", twice") == "\"say \"\"hi\"\", twice\"")
        #expect(AuditWriter.csvField("plain") == "plain")
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(AuditFilter.since("90s", now: now) == now.addingTimeInterval(-90))
        #expect(AuditFilter.since("36500d", now: now) != nil)
        #expect(AuditFilter.since("36525d", now: now) != nil)
        for text in ["36526d", "36600d", "99999999999999999999d", "1e9h", "800000d", "inf", "nan", "1e300s", "-5m", "d", "2026-02-30", "5 m"] {
            #expect(AuditFilter.since(text, now: now) == nil, "\(text)")
        }
    }

    @Test("invalid IDs are recorded truncated, saying so")
    func truncatedInvalidIDs() async throws {
        let (store, path) = try TestSupport.makeStore()
        let huge = String(repeating: "x", count: 300) + "!"
        let summary = try await store.enqueue([EnqueueItem(exportTaskID: huge, line: 1)], now: Date())
        let recorded = String(repeating: "x", count: 64) + "... (301 bytes in all)"
        #expect(summary.invalid.map(\.exportTaskID) == [recorded])
        #expect(summary.invalid.first?.problem == "only letters, digits, '_' and '-' are allowed")
        let db = try SQLiteConnection(path: path)
        #expect(try db.scalarInt("SELECT max(length(export_task_id)) FROM export_tasks") == recorded.count)
        #expect(try db.scalarInt("SELECT max(length(export_task_id)) FROM audit_log") == recorded.count)
        #expect(ExportTaskID.recordable("short!") == "short!")
    }

    @Test("configuration: identifiers, rates, ports, UTF-8 and the top level are checked with file, line and key")
    func configurationBounds() throws {
        func problem(_ text: String) -> String? {
            do {
                _ = try ConfigurationLoader.parse(Array(text.utf8), source: "c.json")
                return nil
            } catch let error as CleanerError {
                return error.message
            } catch {
                return "\(error)"
            }
        }
        let base = #""region": "cn-north-4", "project_id": "p1""#
        #expect(problem("{\(base), \"max_requests_per_second\": 1e-10}")?.contains("c.json:1: max_requests_per_second: expected a number from 0.001 to 100000") == true)
        #expect(problem("{\(base), \"max_requests_per_second\": 0.001}") == nil)
        #expect(problem(#"{"region": "cn-north-4", "project_id": ".."}"#)?.contains("project_id: only letters") == true)
        #expect(problem(#"{"region": "cn-north-4", "project_id": " "}"#)?.contains("project_id: must not be empty") == true)
        #expect(problem("{\(base), \"instance_id\": \"a/b\"}")?.contains("instance_id: only letters") == true)
        for port in ["", "0", "65536", "99999"] {
            #expect(problem("{\(base),\n\"endpoint\": \"https://h.example.com:\(port)\"}") == "c.json:2: endpoint: the port must be a number from 1 to 65535", "\(port)")
        }
        #expect(problem("{\(base), \"endpoint\": \"https://h.example.com:8443\"}") == nil)
        #expect(problem("[1]") == "c.json:1: the configuration: expected an object, got an array")
        var invalidUTF8 = Array("{\(base), \"database\": \"/var/lib/q".utf8)
        invalidUTF8 += [0xFF, 0xFE] + Array(".sqlite3\"}".utf8)
        #expect(throws: CleanerError.self) { try ConfigurationLoader.parse(invalidUTF8, source: "c.json") }
        do {
            _ = try ConfigurationLoader.parse(invalidUTF8, source: "c.json")
        } catch let error as CleanerError {
            #expect(error.message == "c.json:1: not valid JSON: invalid UTF-8 in a string")
        }
        let folder = try TestSupport.makeFolder()
        let error = try #require(throws: CleanerError.self) { try ConfigurationLoader.load(path: folder.path) }
        #expect(error.message == "\(folder.path): cannot read the configuration: it is a folder, not a file")
    }

    @Test("a configuration symlink loop is reported as one, not as a missing file (#21)")
    func configurationSymlinkLoop() throws {
        let folder = try TestSupport.makeFolder()
        let a = folder.appendingPathComponent("a.json").path
        let b = folder.appendingPathComponent("b.json").path
        #expect(symlink(b, a) == 0)
        #expect(symlink(a, b) == 0)
        let loop = try #require(throws: CleanerError.self) { try ConfigurationLoader.load(path: a) }
        #expect(loop.exitStatus == 2)
        #expect(loop.message == "\(a): cannot read the configuration: too many levels of symbolic links (a symlink loop?)")
        let missing = folder.appendingPathComponent("missing.json").path
        let gone = try #require(throws: CleanerError.self) { try ConfigurationLoader.load(path: missing) }
        #expect(gone.message == "\(missing): cannot read the configuration: no such file")
    }
}
