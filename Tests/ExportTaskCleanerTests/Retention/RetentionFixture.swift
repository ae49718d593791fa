import Foundation
import Testing

@testable import ExportTaskCleaner

/// Queues filled and drained through the store, for the retention tests: each task gets a
/// retry then a delete, claimed in batches, so tasks' audit rows interleave as the service's do.
enum RetentionFixture {
    /// Enqueues `count` tasks named `prefix-N`, and finishes them all at `at` (two audit rows each).
    static func fillAndDrain(_ store: any QueueStore, prefix: String, count: Int, at: Date, batch: Int = 200) async throws {
        _ = try await store.enqueue(TestSupport.items((0..<count).map { "\(prefix)-\($0)" }), now: at)
        for round in 0..<2 {
            // The first round's retries are due just after it, so it claims each task once.
            let now = round == 0 ? at : at + 1
            while true {
                let claimed = try await store.claim(limit: batch, leaseToken: "lease-\(prefix)-\(round)", leaseUntil: now + 60, now: now)
                if claimed.isEmpty { break }
                _ = try await store.apply(claimed.map { task in
                    let final = round == 1
                    return TaskTransition(
                        task: task, change: final ? .finish(.deleted) : .retry(at: at + 0.5), attempts: task.attempts + 1,
                        audit: AuditRecord(outcome: final ? .deleted : .retry, at: at, attempt: task.attempts + 1,
                                           durationMilliseconds: 7, httpStatus: final ? 204 : 500, requestID: "r",
                                           delivery: .answered))
                })
            }
        }
    }

    /// Every line of every archive file in `folder` (recorded or not), decoded.
    static func archived(_ folder: String) throws -> (auditIDs: [Int], taskIDs: [Int]) {
        var audit: [Int] = []
        var tasks: [Int] = []
        for name in ArchiveFiles.list(folder) {
            let bytes = try ArchiveFiles.read(folder + "/" + name)
            let checkpoint = ArchiveCheckpoint(sequence: 0, file: name, firstID: 0, lastID: 0, lastHash: "",
                                               sha256: ArchiveFiles.sha256(bytes), rows: 0, tasks: 0, archivedAt: "", runner: "")
            try ArchiveReader.read(checkpoint, folder: folder) { item, _ in
                switch item {
                case .audit(let entry): audit.append(entry.id)
                case .task(let task): tasks.append(task.id)
                }
                return true
            }
        }
        return (audit, tasks)
    }
}
