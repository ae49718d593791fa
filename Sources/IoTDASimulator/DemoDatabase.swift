import ExportTaskCleaner
import FoundationEssentials

// The queue a demo is given with `--database` (docs/commands.md, `demo`): one never used.

extension Demo {
    /// Refuses a queue that is in use: the demo queues `demo-000001` … and counts every task
    /// as its own, and the audit log it writes can never be cleared (append-only). A service
    /// holding the queue would take the demo's tasks and send their deletes to its own
    /// endpoint.
    static func requireUnused(_ store: any QueueStore) async throws {
        let status = try await store.status(now: Date())
        let tasks = status.counts.values.reduce(0, +)
        let head = try await store.auditHead()
        let place = "--database \(store.location)"
        let remedy = PostgresURL.isPostgres(store.location)
            ? "Give the demo an empty database of its own, made for instance by a superuser with "
                + "`CREATE DATABASE export_task_cleaner_demo OWNER your_role;`, and name it in the URL; "
                + "or leave --database out for a temporary SQLite file."
            : "Give it the path of a new file, or leave --database out for a temporary one."
        if let holder = status.heldBy.first {
            throw CleanerError.configuration(
                "\(place): a service (\(holder.runner)) holds this queue: it would take the demo's tasks and send their deletes to its own endpoint. \(remedy)")
        }
        if tasks > 0 || head != nil {
            let rows = head.map { " and audit rows up to #\($0.id)" } ?? ""
            throw CleanerError.configuration(
                "\(place) already holds \(tasks) tasks\(rows). The demo queues its own IDs (demo-000001 …) and its audit rows can never be removed, so it needs a queue that was never used. \(remedy)")
        }
    }

    /// A SQLite path as given, made absolute against the working folder: the configuration
    /// the demo writes elsewhere must name the same file.
    static func absolutePath(_ path: String) -> String {
        guard !path.hasPrefix("/") else { return path }
        let here = URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true)
        return here.appendingPathComponent(path).standardizedFileURL.path
    }
}
