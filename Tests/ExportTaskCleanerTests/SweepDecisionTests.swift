import ExportTaskCleaner
import Foundation
import Testing

/// The sweep's decisions without any I/O: a listed task's fate, the pager's steps, IoTDA's
/// times and the strict reading of a page (docs/commands.md, "sweep").
@Suite struct SweepDecisionTests {
    static let cutoff = Date(timeIntervalSince1970: 1_764_000_000)  // 2025-11-24T16:00:00Z
    static let before = "2025-11-20T10:00:00.000Z"
    static let after = "2025-11-25T10:00:00.000Z"

    @Test(arguments: [
        (ListedExportTask(exportTaskID: "a1", status: "Success", endTime: before), SweepSelection.queue),
        (ListedExportTask(exportTaskID: "a1", status: "Failed", endTime: before), .queue),
        (ListedExportTask(exportTaskID: "a1", status: "Success", endTime: after), .tooYoung),
        (ListedExportTask(exportTaskID: "a1", status: "Processing", endTime: before), .processing),
        (ListedExportTask(exportTaskID: "a1", status: "Processing", endTime: nil), .processing),
        (ListedExportTask(exportTaskID: "a1", status: "Success", endTime: nil), .invalid("a finished task without end_time")),
        (ListedExportTask(exportTaskID: "a1", status: "Success", endTime: "2025-11-20 10:00:00"),
         .invalid("end_time is not yyyy-MM-ddTHH:mm:ss.SSSZ")),
        (ListedExportTask(exportTaskID: "a1", status: "Done", endTime: before), .invalid("an unknown status")),
        (ListedExportTask(exportTaskID: "a1", status: "success", endTime: before), .invalid("an unknown status")),
        (ListedExportTask(exportTaskID: "a1", status: nil, endTime: before), .invalid("no status")),
        (ListedExportTask(exportTaskID: "../x", status: "Success", endTime: before),
         .invalid("export_task_id: only letters, digits, '_' and '-' are allowed")),
        (ListedExportTask(exportTaskID: "", status: "Success", endTime: before), .invalid("export_task_id: empty")),
        (ListedExportTask(exportTaskID: String(repeating: "a", count: 37), status: "Success", endTime: before),
         .invalid("export_task_id: longer than 36 characters")),
        (ListedExportTask(exportTaskID: "a1", status: "Success", endTime: before, problem: "status is a number, not a string"),
         .invalid("status is a number, not a string")),
    ])
    func selection(task: ListedExportTask, expected: SweepSelection) {
        #expect(SweepSelection.decide(task, cutoff: Self.cutoff) == expected)
    }

    @Test(arguments: [
        ("2025-11-20T10:00:00.123Z", 1_763_632_800.123 as Double?),
        ("2024-02-29T00:00:00.000Z", 1_709_164_800),
        ("2025-02-29T00:00:00.000Z", nil),  // no such day
        ("2025-11-20T24:00:00.000Z", nil),
        ("2025-11-20T10:00:60.000Z", nil),
        ("2025-11-20T10:00:00Z", nil),
        ("2025-11-20T10:00:00.000", nil),
        ("2025-11-20T10:00:00.000+08:00", nil),
        ("2025-11-20 10:00:00.000Z", nil),
        ("+025-11-20T10:00:00.000Z", nil),
        ("", nil),
    ])
    func iotdaTime(text: String, expected: Double?) {
        let parsed = IoTDATime.parse(text)
        if let expected {
            #expect(abs((parsed?.timeIntervalSince1970 ?? 0) - expected) < 0.0005)
        } else {
            #expect(parsed == nil)
        }
    }

    static func page(_ marker: String?, tasks: Int = 1) -> ExportTaskPage {
        ExportTaskPage(tasks: Array(repeating: ListedExportTask(exportTaskID: "a", status: "Success", endTime: nil), count: tasks),
                       marker: marker)
    }

    @Test func pagerFollowsDecreasingMarkersUntilAnEmptyPage() {
        var pager = SweepPager()
        #expect(pager.step == .fetch(marker: nil))
        #expect(pager.received(Self.page("00000000000000000000000F")) == .fetch(marker: "00000000000000000000000f"))
        #expect(pager.received(Self.page("00000000000000000000000a")) == .fetch(marker: "00000000000000000000000a"))
        #expect(pager.received(Self.page(nil, tasks: 0)) == .done)
        #expect(pager.pages == 3)
        // Done stays done.
        #expect(pager.received(Self.page("000000000000000000000001")) == .done)
    }

    @Test(arguments: [
        (["00000000000000000000000a", "00000000000000000000000a"] as [String?], "the server repeated page.marker"),
        (["00000000000000000000000a", "00000000000000000000000b"], "page.marker did not decrease"),
        (["00000000000000000000000a", "00000000000000000000000A"], "the server repeated page.marker"),
        (["0000000000000000000000g0"], "page.marker is not 24 hexadecimal digits"),
        (["00000000000000000000000"], "page.marker is not 24 hexadecimal digits"),
        (["00000000000000000000000a0"], "page.marker is not 24 hexadecimal digits"),
        ([nil], "a page of export tasks without page.marker"),
    ])
    func pagerStopsOnABadMarker(markers: [String?], reason: String) {
        var pager = SweepPager()
        var step = pager.step
        for marker in markers { step = pager.received(Self.page(marker)) }
        #expect(step == .failed(reason))
    }

    @Test func pagerStopsAfterTheMostPages() {
        var pager = SweepPager(maximumPages: 3)
        #expect(pager.received(Self.page("000000000000000000000009")) == .fetch(marker: "000000000000000000000009"))
        #expect(pager.received(Self.page("000000000000000000000008")) == .fetch(marker: "000000000000000000000008"))
        #expect(pager.received(Self.page("000000000000000000000007"))
                == .failed("more than 3 pages: the server does not end the list"))
    }

    @Test func parserReadsAPage() throws {
        let body = """
            {"export_tasks":[{"export_task_id":"t1","resource_type":"device","resource_condition":{"type":"ALL"},\
            "export_format":"CSV","status":"Success","export_count":3,"progress":100,\
            "create_time":"2025-11-20T09:00:00.000Z","end_time":"2025-11-20T10:00:00.000Z","app_type":"GLOBAL","app_id":null},
            {"export_task_id":"t2","status":"Processing","end_time":null}],
            "page":{"count":2,"marker":"00000000000000000000000a"}}
            """
        let page = try ExportTaskPageParser.parse(Array(body.utf8), limit: 50)
        #expect(page.marker == "00000000000000000000000a")
        #expect(page.tasks == [
            ListedExportTask(exportTaskID: "t1", status: "Success", endTime: "2025-11-20T10:00:00.000Z"),
            ListedExportTask(exportTaskID: "t2", status: "Processing", endTime: nil),
        ])
    }

    @Test func parserKeepsAWrongEntryWithItsProblem() throws {
        let body = #"{"export_tasks":[7,{"status":"Success"},{"export_task_id":5},{"export_task_id":"t","status":1},{"export_task_id":"u","end_time":[]}],"page":{"marker":"00000000000000000000000a"}}"#
        let page = try ExportTaskPageParser.parse(Array(body.utf8), limit: 50)
        #expect(page.tasks.map(\.problem) == [
            "an entry is a number, not an object", "an entry has no export_task_id string",
            "an entry has no export_task_id string", "status is a number, not a string", "end_time is an array, not a string",
        ])
    }

    @Test(arguments: [
        ("", "the body is not JSON"),
        ("{\"export_tasks\":[", "the body is not JSON"),
        ("{\"export_tasks\":[],\"export_tasks\":[]}", "the body is not JSON"),  // duplicate key
        ("[]", "the body is an array, not an object"),
        ("{}", "export_tasks is missing"),
        ("{\"export_tasks\":\"t1\"}", "export_tasks is a string, not an array"),
        ("{\"export_tasks\":[],\"page\":[]}", "page is an array, not an object"),
        ("{\"export_tasks\":[],\"page\":{\"marker\":5}}", "page.marker is a number, not a string"),
        ("{\"export_tasks\":[],\"page\":{\"count\":\"5\"}}", "page.count is a string, not a number"),
        ("{\"export_tasks\":[{},{},{}]}", "3 export tasks in a page of at most 2"),
    ])
    func parserRefusesABodyOfTheWrongShape(body: String, reason: String) {
        #expect {
            try ExportTaskPageParser.parse(Array(body.utf8), limit: 2)
        } throws: { error in
            ((error as? ExportTaskPageParser.Problem)?.reason ?? "").hasPrefix(reason)
        }
    }

    @Test func summaryLine() {
        var summary = SweepSummary()
        summary.listed = 10
        summary.eligible = 4
        summary.queued = 3
        summary.alreadyQueued = 1
        summary.processing = 2
        summary.tooYoung = 3
        summary.invalid = 1
        #expect(summary.line
                == "listed 10, finished and old enough 4, queued 3, already queued 1, skipped 6 (processing 2, too young 3, invalid 1)")
    }
}
