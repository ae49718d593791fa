import ExportTaskCleaner
import FoundationEssentials
import Logging

extension Demo {
    /// Export tasks the demo's simulator lists: one every 4 hours over the last 20 days,
    /// statuses in turn Success, Failed, Processing (without `end_time`), Success.
    static let listedTasks = 120

    static func listedExportTasks(now: Date) -> [IoTDASimulator.ExportTask] {
        (0..<listedTasks).map { index in
            let created = now.addingTimeInterval(-Double(index) * 4 * 3_600 - 1_800)
            let status = ["Success", "Failed", "Processing", "Success"][index % 4]
            return IoTDASimulator.ExportTask(
                exportTaskID: IoTDASimulator.ExportTask.recordID(listedTasks - index), status: status, createTime: created,
                endTime: status == "Processing" ? nil : created.addingTimeInterval(900))
        }
    }

    /// The demo's sweep (docs/commands.md, `sweep`): what the simulator lists, the finished
    /// tasks older than 7 days queued, as `export-task-cleaner sweep` would.
    static func sweep(simulator: IoTDASimulator, client: IoTDAClient, into store: any QueueStore, logger: Logger)
        async throws -> SweepSummary {
        simulator.addExportTasks(listedExportTasks(now: Date()))
        let sweep = ExportTaskSweep(
            options: .init(projectID: projectID, instanceID: nil, olderThan: "7d", dryRun: false, source: "the demo's sweep"),
            lister: client, retry: .exponentialJitter(maxAttempts: 5, baseDelay: .milliseconds(100), maxDelay: .seconds(1)),
            clock: SystemClock(), logger: logger)
        do {
            return try await sweep.run(store: store)
        } catch {
            throw CleanerError.runtime("the demo's sweep failed: \(error.description)")
        }
    }
}
