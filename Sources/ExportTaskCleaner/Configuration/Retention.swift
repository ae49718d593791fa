import FoundationEssentials

extension Configuration {
    /// `retention` (docs/configuration.md): how long finished tasks stay in the database, where
    /// their history goes, and how often the service prunes. nil (`"retention": null`): keep
    /// everything.
    public struct Retention: Sendable, Equatable {
        /// Tasks finished longer ago than this leave the database (`keep_finished`, default 90d).
        public var keepFinished: TimeInterval = 90 * 86_400
        /// The archive folder; a relative path is resolved against the database's folder.
        public var archiveDirectory: String = "archive"
        /// How often the service prunes (`every`, default 1h), and once at its start.
        public var every: TimeInterval = 3_600

        public init(keepFinished: TimeInterval = 90 * 86_400, archiveDirectory: String = "archive", every: TimeInterval = 3_600) {
            self.keepFinished = keepFinished
            self.archiveDirectory = archiveDirectory
            self.every = every
        }

        /// The shortest `every`: a prune every second would only spin.
        public static let shortestEvery: TimeInterval = 1

        /// The archive folder for a queue at `database`: a relative `archiveDirectory` beside a
        /// SQLite file; for a PostgreSQL URL, in the state folder of the package's unit.
        public func archiveFolder(database: String) -> String {
            if archiveDirectory.hasPrefix("/") { return archiveDirectory }
            let base = PostgresURL.isPostgres(database) ? "/var/lib/export-task-cleaner" : QueueFiles.folder(of: database)
            return base == "/" ? "/" + archiveDirectory : base + "/" + archiveDirectory
        }
    }
}

extension AuditFilter {
    /// An age as `audit --since` takes it (`90s`, `15m`, `2h`, `7d`, `0s`), in seconds; nil
    /// when `text` is none, or beyond 100 years (`retention`, `prune --older-than`).
    public static func ageSeconds(_ text: String) -> TimeInterval? {
        guard let seconds = age(text), seconds <= longestAge else { return nil }
        return seconds
    }
}
