import ExportTaskCleaner
import Foundation
import Testing

/// What `audit`, `status --json` and `enqueue` print, through the built binary (docs/commands.md,
/// "Commands"): the shapes other tools read.
@Suite("Command output: audit, status --json, enqueue")
struct OutputTests {
    private func run(_ world: World, _ arguments: [String], stdin: URL? = nil) async throws -> (status: Int32, out: String, err: String) {
        let child = try world.launch(arguments, stdin: stdin)
        let status = try await child.exit(within: .seconds(60))
        return (status, child.stdoutText, child.stderrText)
    }

    static let requestIDs = ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"]

    /// Three tasks and an audit row each, with known values: a 204, a 400 whose message needs
    /// quoting in CSV, and a row without a request (nulls).
    /// A chain hash for the first row (the others have none, as in a file never chained).
    static let hash = String(repeating: "0123456789abcdef", count: 4)

    private func populatedWorld() async throws -> World {
        let world = try await World.start()
        try await world.enqueue(["out-1", "out-2", "out-3"])
        // Rows shaped by hand, outside the audit chain: its trigger steps aside.
        try SQLiteConnection(path: world.database).execute("""
            DROP TRIGGER audit_log_hash_required;
            INSERT INTO audit_log(task_id, export_task_id, project_id, attempt, at, duration_ms, http_status, error_code,
                                  error_message, request_id, outcome, delivery, runner, lease_lost, hash) VALUES
                (1, 'out-1', NULL, 1, '2026-11-29T10:00:00.000Z', 12, 204, NULL, NULL, '\(Self.requestIDs[0])', 'deleted', 'answered', 'host-a:101', 1,
                 '\(Self.hash)'),
                (2, 'out-2', 'other-project', 2, '2026-11-29T10:00:01.500Z', 7, 400, 'IOTDA.014000', 'bad "request", try again',
                 '\(Self.requestIDs[1])', 'rejected', 'answered', 'host-a:101', NULL, NULL),
                (3, 'out-3', NULL, NULL, '2026-11-29T10:00:02.000Z', NULL, NULL, NULL, NULL, NULL, 'lease_expired', NULL, 'host-b:202', NULL, NULL);
            UPDATE export_tasks SET state = 'deleted', attempts = 1, finished_at = '2026-11-29T10:00:00.000Z' WHERE export_task_id = 'out-1';
            UPDATE export_tasks SET state = 'rejected', attempts = 2, finished_at = '2026-11-29T10:00:01.500Z' WHERE export_task_id = 'out-2';
            UPDATE export_tasks SET enqueued_at = '2026-11-29T09:00:00.000Z', next_attempt_at = '2099-01-01T00:00:00.000Z'
                WHERE export_task_id = 'out-3';
            """)
        return world
    }

    @Test("audit --format table: a header line and one fixed-width line a row, '-' for what is absent")
    func auditTable() async throws {
        let world = try await populatedWorld()
        let table = try await run(world, ["audit"])
        #expect(table.status == 0, "\(table.err)")
        #expect(table.out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) == [
            "AT                       EXPORT TASK ID                       TRY OUTCOME                 HTTP DELIVERY  MS     REQUEST ID                       ERROR",
            "2026-11-29T10:00:00.000Z out-1                                1   deleted (lease lost)    204  answered  12     0123456789abcdef0123456789abcdef -",
            "2026-11-29T10:00:01.500Z out-2                                2   rejected                400  answered  7      fedcba9876543210fedcba9876543210 IOTDA.014000 bad \"request\", try again",
            "2026-11-29T10:00:02.000Z out-3                                -   lease_expired           -    -         -      -                                -",
            "",
        ])
        // A filter that matches nothing: the header alone.
        let none = try await run(world, ["audit", "--task", "nobody"])
        #expect(none.out == "AT                       EXPORT TASK ID                       TRY OUTCOME                 HTTP DELIVERY  MS     REQUEST ID                       ERROR\n")
        try await world.stop()
    }

    @Test("audit --format json: an array of objects, one a line, every column present, nulls included")
    func auditJSON() async throws {
        let world = try await populatedWorld()
        let json = try await run(world, ["audit", "--format", "json"])
        #expect(json.status == 0, "\(json.err)")
        let lines = json.out.split(separator: "\n").map(String.init)
        #expect(lines.count == 5)
        #expect(lines.first == "[" && lines.last == "]")
        #expect(lines.dropFirst().dropLast().allSatisfy { $0.hasPrefix("  {") })
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [[String: Any]])
        #expect(rows.count == 3)
        let columns: Set<String> = ["id", "at", "export_task_id", "task_id", "project_id", "attempt", "outcome", "http_status",
                                    "delivery", "duration_ms", "error_code", "error_message", "request_id", "runner", "lease_lost", "hash"]
        #expect(rows.allSatisfy { Set($0.keys) == columns })
        #expect(rows[0]["hash"] as? String == Self.hash)
        #expect(rows[1]["hash"] is NSNull)
        let rejected = rows[1]
        #expect(rejected["id"] as? Int == 2)
        #expect(rejected["task_id"] as? Int == 2)
        #expect(rejected["export_task_id"] as? String == "out-2")
        #expect(rejected["project_id"] as? String == "other-project")
        #expect(rejected["attempt"] as? Int == 2)
        #expect(rejected["at"] as? String == "2026-11-29T10:00:01.500Z")
        #expect(rejected["duration_ms"] as? Int == 7)
        #expect(rejected["http_status"] as? Int == 400)
        #expect(rejected["error_code"] as? String == "IOTDA.014000")
        #expect(rejected["error_message"] as? String == "bad \"request\", try again")
        #expect(rejected["request_id"] as? String == Self.requestIDs[1])
        #expect(rejected["outcome"] as? String == "rejected")
        #expect(rejected["delivery"] as? String == "answered")
        #expect(rejected["runner"] as? String == "host-a:101")
        #expect(rejected["lease_lost"] as? Bool == false)
        #expect(rows[0]["lease_lost"] as? Bool == true)
        let expired = rows[2]
        for column in ["project_id", "attempt", "duration_ms", "http_status", "error_code", "error_message", "request_id", "delivery"] {
            #expect(expired[column] is NSNull, "\(column)")
        }
        let none = try await run(world, ["audit", "--format", "json", "--task", "nobody"])
        #expect(none.out == "[]\n")
        try await world.stop()
    }

    @Test("audit --format csv: RFC 4180, a header line, CRLF line ends, empty fields for nulls, quotes where needed")
    func auditCSV() async throws {
        let world = try await populatedWorld()
        let csv = try await run(world, ["audit", "--format", "csv"])
        #expect(csv.status == 0, "\(csv.err)")
        let header = "id,at,export_task_id,task_id,project_id,attempt,outcome,http_status,delivery,duration_ms,error_code,error_message,request_id,runner,lease_lost,hash"
        #expect(csv.out == [
            header,
            "1,2026-11-29T10:00:00.000Z,out-1,1,,1,deleted,204,answered,12,,,\(Self.requestIDs[0]),host-a:101,1,\(Self.hash)",
            "2,2026-11-29T10:00:01.500Z,out-2,2,other-project,2,rejected,400,answered,7,IOTDA.014000,\"bad \"\"request\"\", try again\",\(Self.requestIDs[1]),host-a:101,,",
            "3,2026-11-29T10:00:02.000Z,out-3,3,,,lease_expired,,,,,,,host-b:202,,",
        ].map { $0 + "\r\n" }.joined())
        let none = try await run(world, ["audit", "--format", "csv", "--task", "nobody"])
        #expect(none.out == header + "\r\n")
        try await world.stop()
    }

    /// The keys docs/commands.md documents, each always present (null when nothing is known). Checked as
    /// a subset: a key added later (the audit chain's `audit_head`) breaks no reader.
    static let statusKeys: Set<String> = ["counts", "oldest_pending_enqueued_at", "oldest_pending_age_seconds", "next_retry_at",
                                          "last_outcome", "last_error", "held_by", "database"]
    static let outcomeKeys: Set<String> = ["export_task_id", "outcome", "at", "http_status", "error_code", "error_message"]

    @Test("status --json on an empty queue: every key, every state counted, nulls where nothing is known")
    func statusJSONEmpty() async throws {
        let world = try await World.start()
        let status = try await run(world, ["status", "--json"])
        #expect(status.status == 0, "\(status.err)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(status.out.utf8)) as? [String: Any])
        #expect(Self.statusKeys.isSubset(of: report.keys), "\(report.keys.sorted())")
        #expect(report["counts"] as? [String: Int] == Dictionary(uniqueKeysWithValues: TaskState.allCases.map { ($0.rawValue, 0) }))
        for key in ["oldest_pending_enqueued_at", "oldest_pending_age_seconds", "next_retry_at", "last_outcome", "last_error"] {
            #expect(report[key] is NSNull, "\(key)")
        }
        #expect((report["held_by"] as? [Any])?.isEmpty == true)
        #expect(report["database"] as? String == world.database)
        try await world.stop()
    }

    @Test("status --json: counts, the oldest pending task, the next retry, the last outcome and error, who holds the queue")
    func statusJSON() async throws {
        let world = try await populatedWorld()
        try SQLiteConnection(path: world.database).execute("""
            INSERT INTO service_heartbeat(runner, started_at, heartbeat_at, status)
                VALUES ('host-c:303', '2026-11-29T08:00:00.000Z', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'in flight 0; pending 1')
            """)
        let status = try await run(world, ["status", "--json"])
        #expect(status.status == 0, "\(status.err)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(status.out.utf8)) as? [String: Any])
        #expect(Self.statusKeys.isSubset(of: report.keys), "\(report.keys.sorted())")
        var counts = Dictionary(uniqueKeysWithValues: TaskState.allCases.map { ($0.rawValue, 0) })
        counts["pending"] = 1
        counts["deleted"] = 1
        counts["rejected"] = 1
        #expect(report["counts"] as? [String: Int] == counts)
        #expect(report["oldest_pending_enqueued_at"] as? String == "2026-11-29T09:00:00.000Z")
        let enqueued = try #require(Timestamp.parse("2026-11-29T09:00:00.000Z"))
        let age = try #require(report["oldest_pending_age_seconds"] as? Double)
        #expect(age > 0 && age <= Date().timeIntervalSince(enqueued) + 1)
        #expect(report["next_retry_at"] as? String == "2099-01-01T00:00:00.000Z")
        let last = try #require(report["last_outcome"] as? [String: Any])
        #expect(Set(last.keys) == Self.outcomeKeys)
        #expect(last["export_task_id"] as? String == "out-3" && last["outcome"] as? String == "lease_expired")
        #expect(last["at"] as? String == "2026-11-29T10:00:02.000Z")
        #expect(last["http_status"] is NSNull && last["error_code"] is NSNull && last["error_message"] is NSNull)
        let error = try #require(report["last_error"] as? [String: Any])
        #expect(Set(error.keys) == Self.outcomeKeys)
        #expect(error["export_task_id"] as? String == "out-2" && error["outcome"] as? String == "rejected")
        #expect(error["http_status"] as? Int == 400 && error["error_code"] as? String == "IOTDA.014000")
        #expect(error["error_message"] as? String == "bad \"request\", try again")
        let holders = try #require(report["held_by"] as? [[String: Any]])
        #expect(holders.count == 1)
        let holder = try #require(holders.first)
        #expect(Set(holder.keys) == ["runner", "started_at", "heartbeat_at", "seconds_since_heartbeat", "status"])
        #expect(holder["runner"] as? String == "host-c:303")
        #expect(holder["started_at"] as? String == "2026-11-29T08:00:00.000Z")
        #expect(holder["status"] as? String == "in flight 0; pending 1")
        #expect((holder["seconds_since_heartbeat"] as? Double).map { $0 >= 0 && $0 < 30 } == true)
        #expect(report["database"] as? String == world.database)
        try await world.stop()
    }

    @Test("enqueue prints queued, already queued and invalid; an invalid ID is named on stderr with its line, and the status is 1")
    func enqueueOutput() async throws {
        let world = try await World.start()
        let first = try await run(world, ["enqueue", "e-1", "e-2"])
        #expect(first.status == 0)
        #expect(first.out == "queued 2, already queued 0, invalid 0\n")
        #expect(first.err.isEmpty)

        let arguments = try await run(world, ["enqueue", "e-2", "bad id!", "e-3"])
        #expect(arguments.status == 1)
        #expect(arguments.out == "queued 1, already queued 1, invalid 1\n")
        let argumentErrors = arguments.err.split(separator: "\n")
        #expect(argumentErrors.count == 1)
        #expect(argumentErrors.first?.hasPrefix("argument 2: invalid export task ID \"bad id!\": ") == true, "\(arguments.err)")

        // From stdin: the line number counts every line, the comment and the blank one too.
        let list = world.folder.appendingPathComponent("ids.txt")
        try Data("# exported 2026-11-29\n\n  s-1  \nbad one\ns-2\ne-1\n".utf8).write(to: list)
        let lines = try await run(world, ["enqueue"], stdin: list)
        #expect(lines.status == 1)
        #expect(lines.out == "queued 2, already queued 1, invalid 1\n")
        let lineErrors = lines.err.split(separator: "\n")
        #expect(lineErrors.count == 1)
        #expect(lineErrors.first?.hasPrefix("line 4: invalid export task ID \"bad one\": ") == true, "\(lines.err)")

        let valid = world.folder.appendingPathComponent("valid.txt")
        try Data("s-3\n".utf8).write(to: valid)
        let clean = try await run(world, ["enqueue"], stdin: valid)
        #expect(clean.status == 0)
        #expect(clean.out == "queued 1, already queued 0, invalid 0\n")
        #expect(clean.err.isEmpty)

        var expected = Dictionary(uniqueKeysWithValues: ["e-1", "e-2", "e-3", "s-1", "s-2", "s-3"].map { ($0, "pending") })
        expected["bad id!"] = "invalid"
        expected["bad one"] = "invalid"
        #expect(try world.states() == expected)
        #expect(try world.scalar("SELECT count(*) FROM audit_log WHERE outcome = 'invalid'") == 2)
        try await world.stop()
    }
}
