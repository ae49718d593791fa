import Foundation
import Testing

@testable import ExportTaskCleaner

/// The `retention` key (docs/configuration.md).
@Suite("Retention: configuration")
struct RetentionConfigurationTests {
    func parse(_ retention: String?) throws -> Configuration {
        let extra = retention.map { #", "retention": \#($0)"# } ?? ""
        return try ConfigurationLoader.parse(Array(#"{"region": "cn-north-4", "project_id": "p1"\#(extra)}"#.utf8), source: "test.json")
    }

    @Test("absent: 90 days kept, archive beside the database, pruned hourly; null: everything kept")
    func defaults() throws {
        #expect(try parse(nil).retention == Configuration.Retention(keepFinished: 90 * 86_400, archiveDirectory: "archive", every: 3_600))
        #expect(try parse("null").retention == nil)
        #expect(try parse("{}").retention == Configuration.Retention())
    }

    @Test("ages as audit --since takes them, 0s included")
    func ages() throws {
        let retention = try #require(try parse(#"{"keep_finished": "0s", "every": "15m", "archive_dir": "/srv/archive"}"#).retention)
        #expect(retention.keepFinished == 0)
        #expect(retention.every == 900)
        #expect(retention.archiveDirectory == "/srv/archive")
        #expect(try parse(#"{"keep_finished": "7d"}"#).retention?.keepFinished == 7 * 86_400)
    }

    @Test("bad values name the key and the line", arguments: [
        (#"{"keep_finished": "90"}"#, "retention.keep_finished"),
        (#"{"keep_finished": "-1d"}"#, "retention.keep_finished"),
        (#"{"keep_finished": "36526d"}"#, "retention.keep_finished"),
        (#"{"keep_finished": 90}"#, "retention.keep_finished"),
        (#"{"every": "0s"}"#, "retention.every"),
        (#"{"archive_dir": ""}"#, "retention.archive_dir"),
        (#"{"keep": "1d"}"#, "retention.keep"),
        (#""90d""#, "retention"),
    ])
    func refused(_ value: String, _ key: String) throws {
        let error = try #require(throws: CleanerError.self) { try parse(value) }
        #expect(error.message.contains("test.json:1: \(key)"), "\(error.message)")
    }

    @Test("a relative archive folder is beside the database; for PostgreSQL in the state folder")
    func folders() {
        let retention = Configuration.Retention()
        #expect(retention.archiveFolder(database: "/var/lib/etc/queue.sqlite3") == "/var/lib/etc/archive")
        #expect(retention.archiveFolder(database: "postgresql://u@h/d") == "/var/lib/export-task-cleaner/archive")
        #expect(Configuration.Retention(archiveDirectory: "/a/b").archiveFolder(database: "/x/q") == "/a/b")
    }
}
