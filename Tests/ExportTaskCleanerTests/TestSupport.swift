import ExportTaskCleaner
import Foundation
import Logging
import Synchronization

/// Shared by the tests: temporary folders, databases, and logs captured in memory.
enum TestSupport {
    /// A fresh folder under the system's temporary directory.
    static func makeFolder(_ name: String = "etc") throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(name)-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A fresh queue database in its own temporary folder.
    static func makeStore(runner: String = "test:1") throws -> (store: SQLiteQueueStore, path: String) {
        let path = try makeFolder("queue").appendingPathComponent("queue.sqlite3").path
        return (try SQLiteQueueStore(path: path, runner: runner), path)
    }

    static func items(_ ids: [String]) -> [EnqueueItem] {
        ids.map { EnqueueItem(exportTaskID: $0) }
    }
}

/// A `LogHandler` that keeps every line in memory, for assertions on what was logged.
final class CapturedLogs: Sendable {
    struct Line: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
        var error: String?

        var text: String {
            ([message] + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } + [error].compactMap { $0 })
                .joined(separator: " ")
        }
    }

    private let storage = EventLog<Line>()

    var lines: [Line] { storage.events }

    /// Waits (bounded) until a line with this message has been logged.
    func wait(for message: String, count: Int = 1) async -> Bool {
        await storage.wait { lines in lines.filter { $0.message == message }.count >= count }
    }

    var allText: String { lines.map(\.text).joined(separator: "\n") }

    func logger(level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: "test") { _ in Handler(logs: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func append(_ line: Line) {
        storage.append(line)
    }

    private struct Handler: LogHandler {
        let logs: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            logs.append(Line(level: event.level, message: "\(event.message)",
                             metadata: merged.mapValues { "\($0)" }, error: event.error.map { "\($0)" }))
        }
    }
}

/// Checks `condition` every 20 ms until it holds or `timeout` passes: a bounded watch on a
/// process or a simulator, which send no events of their own.
func eventually(timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}
