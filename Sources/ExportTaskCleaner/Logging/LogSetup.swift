import Logging
import Synchronization

/// Logging to standard error (journald under systemd), at a level a reload can change
/// (docs/operations.md, "Reloading").
public enum LogSetup {
    /// The level every logger made by ``bootstrap(level:)`` follows.
    public static let level = LogLevelControl(.info)

    /// Bootstraps swift-log once per process, at `level`.
    public static func bootstrap(level: Logger.Level) {
        self.level.set(level)
        LoggingSystem.bootstrap { label in
            var stream = StreamLogHandler.standardError(label: label)
            // The level is checked by `Logger`, through the handler below.
            stream.logLevel = .trace
            return LevelFollowingLogHandler(base: stream, control: Self.level)
        }
    }
}

/// A log level shared by every handler that follows it, changed in one place.
public final class LogLevelControl: Sendable {
    private let raw: Atomic<Int>

    public init(_ level: Logger.Level) {
        raw = Atomic(Self.levels.firstIndex(of: level) ?? 0)
    }

    public var current: Logger.Level { Self.levels[raw.load(ordering: .relaxed)] }

    public func set(_ level: Logger.Level) {
        raw.store(Self.levels.firstIndex(of: level) ?? 0, ordering: .relaxed)
    }

    private static let levels = Logger.Level.allCases
}

/// Forwards to a handler, with the shared level instead of one of its own.
struct LevelFollowingLogHandler: LogHandler {
    var base: StreamLogHandler
    let control: LogLevelControl

    var logLevel: Logger.Level {
        get { control.current }
        // A logger's own level change would be a global one here: ignored, as swift-log allows.
        set {}
    }

    var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { base.metadataProvider }
        set { base.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        base.log(event: event)
    }
}
