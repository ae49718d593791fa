import FoundationEssentials

/// What a sweep does with one listed export task (docs/commands.md, "sweep"): queue it when it
/// has finished (`Success` or `Failed`) and its `end_time` is before the cut-off; otherwise
/// skip it, saying why. Decided from the answer alone, which is input: an ID that breaks the
/// ID rule, a status IoTDA does not send, a missing or malformed `end_time` are invalid.
public enum SweepSelection: Equatable, Sendable {
    case queue
    case processing
    case tooYoung
    case invalid(String)

    public static func decide(_ task: ListedExportTask, cutoff: Date) -> SweepSelection {
        if let problem = task.problem { return .invalid(problem) }
        if let problem = IdentifierRule.exportTaskID.problem(with: task.exportTaskID) {
            return .invalid("export_task_id: \(problem)")
        }
        switch task.status {
        case "Processing"?:
            return .processing
        case "Success"?, "Failed"?:
            guard let text = task.endTime else { return .invalid("a finished task without end_time") }
            guard let end = IoTDATime.parse(text) else { return .invalid("end_time is not yyyy-MM-ddTHH:mm:ss.SSSZ") }
            return end < cutoff ? .queue : .tooYoung
        case nil:
            return .invalid("no status")
        case .some:
            return .invalid("an unknown status")
        }
    }
}

/// A sweep's counts, for its summary line and its log line.
public struct SweepSummary: Sendable, Equatable {
    /// Pages received (the empty last one included).
    public var pages = 0
    /// Export tasks listed.
    public var listed = 0
    /// Finished and old enough: what was (or, with `--dry-run`, would be) queued.
    public var eligible = 0
    public var queued = 0
    /// Eligible, and in the queue already (whatever its state there).
    public var alreadyQueued = 0
    public var processing = 0
    public var tooYoung = 0
    public var invalid = 0
    /// The first ``maximumInvalidShown`` invalid tasks: the ID as recorded (bounded; quote it to show it) and why.
    public var invalidTasks: [InvalidTask] = []

    public struct InvalidTask: Sendable, Equatable {
        public var exportTaskID: String
        public var problem: String
    }

    public static let maximumInvalidShown = 20

    public init() {}

    mutating func count(_ selection: SweepSelection, exportTaskID: String) {
        listed += 1
        switch selection {
        case .queue: eligible += 1
        case .processing: processing += 1
        case .tooYoung: tooYoung += 1
        case .invalid(let problem):
            invalid += 1
            if invalidTasks.count < Self.maximumInvalidShown {
                invalidTasks.append(InvalidTask(exportTaskID: ExportTaskID.recordable(exportTaskID), problem: problem))
            }
        }
    }

    /// `listed 312, finished and old enough 120, queued 120, already queued 0, skipped 192
    /// (processing 40, too young 150, invalid 2)`.
    public var line: String {
        "listed \(listed), finished and old enough \(eligible), queued \(queued), already queued \(alreadyQueued), "
            + "skipped \(processing + tooYoung + invalid) (processing \(processing), too young \(tooYoung), invalid \(invalid))"
    }
}
