import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Shows the queue: tasks per state, the oldest pending task, the next retry, the last outcome and error, and which service holds the queue.")

    @OptionGroup var config: ConfigOption

    @Flag(name: .long, help: "Print JSON (`counts` has every state as a key).")
    var json = false

    func run() async throws {
        let now = Date()
        let (location, status) = try await config.withStore(for: .inspect) { _, store in
            (store.location, try await store.status(now: now))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(Report(database: location, status: status)), as: UTF8.self))
            return
        }
        print("queue \(TextFormat.printable(location))")
        let width = TaskState.allCases.map(\.rawValue.count).max() ?? 0
        for state in TaskState.allCases {
            let name = TextFormat.padRight(state.rawValue, to: width)
            var line = "  \(name)  \(status.counts[state.rawValue] ?? 0)"
            if state == .pending, let age = status.oldestPendingAgeSeconds {
                line += "  (oldest queued \(Self.age(age)) ago)"
            }
            print(line)
        }
        if let next = status.nextRetryAt {
            let wait = Timestamp.parse(next).map { Self.age($0.timeIntervalSince(now)) } ?? "?"
            print("next retry      \(TextFormat.printable(next)) (in \(wait))")
        } else {
            print("next retry      none scheduled")
        }
        print("last outcome    \(Self.describe(status.lastOutcome))")
        print("last error      \(Self.describe(status.lastError))")
        if status.heldBy.isEmpty {
            print("service         none holds the queue (no heartbeat in the last \(Int(QueueLimits.heartbeatFreshness)) s)")
        }
        for holder in status.heldBy {
            print("service         \(TextFormat.printable(holder.runner)), running since \(TextFormat.printable(holder.startedAt)), heartbeat \(Self.age(holder.secondsSinceHeartbeat)) ago")
            if let text = holder.status { print("                \(TextFormat.printable(text))") }
        }
    }

    struct Report: Encodable {
        var database: String
        var status: QueueStatus

        func encode(to encoder: any Encoder) throws {
            try status.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(database, forKey: .database)
        }

        enum Key: String, CodingKey { case database }
    }

    static func describe(_ outcome: QueueStatus.LastOutcome?) -> String {
        guard let outcome else { return "none" }
        var text = "\(outcome.outcome) \(outcome.exportTaskID) at \(outcome.at)"
        if let status = outcome.httpStatus { text += " (HTTP \(status))" }
        if let code = outcome.errorCode { text += " \(code)" }
        if let message = outcome.errorMessage { text += ": \(message)" }
        // Every part came from the database, which other tools and server answers wrote.
        return TextFormat.printable(text)
    }

    static func age(_ seconds: Double) -> String {
        // From the database: bounded (a thousand years) before the conversion, which would trap.
        guard seconds.isFinite else { return "?" }
        let total = Int(min(max(0, seconds), 3.2e10).rounded())
        switch total {
        case ..<60: return "\(total) s"
        case ..<3600: return "\(total / 60) min \(total % 60) s"
        case ..<86400: return "\(total / 3600) h \(total % 3600 / 60) min"
        default: return "\(total / 86400) d \(total % 86400 / 3600) h"
        }
    }
}
