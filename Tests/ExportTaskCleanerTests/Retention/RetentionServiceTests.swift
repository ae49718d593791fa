import Foundation
import Logging
import Testing

@testable import ExportTaskCleaner

/// The service's own pruning (docs/operations.md, "Retention") on a clock the test moves: once
/// at start, then every `retention.every`, each time what finished `keep_finished` ago; the
/// metrics say what it did.
@Suite("Retention: the service prunes by itself")
struct RetentionServiceTests {
    @Test("at start and every retention.every, on the injected clock; the metrics follow")
    func schedule() async throws {
        let clock = ManualClock()
        let (store, path) = try TestSupport.makeStore()
        let day: TimeInterval = 86_400
        try await RetentionFixture.fillAndDrain(store, prefix: "old", count: 10, at: clock.now() - 2 * day)
        try await RetentionFixture.fillAndDrain(store, prefix: "recent", count: 5, at: clock.now())
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("archive").path
        let metrics = MetricsSetup()
        let service = RetentionService(
            store: store, retention: .init(keepFinished: day, archiveDirectory: folder, every: 3_600), clock: clock,
            metrics: metrics.metrics, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let running = Task { try await service.run() }
        func tasks() async throws -> Int { try await store.counts().values.reduce(0, +) }

        // At start: the tasks finished two days ago, not those finished now.
        #expect(await clock.waitForSleepers(atLeast: 1))
        #expect(try await tasks() == 5)
        func value(_ name: String) throws -> Double? {
            try PrometheusText.parse(metrics.render {}).first { $0.name == "export_task_cleaner_" + name }?.value
        }
        #expect(try value("archived_tasks_total") == 10)
        #expect(try value("archived_audit_rows_total") == 20)
        #expect(try value("last_prune_timestamp_seconds") == 1_800_000_000)
        #expect(try value("last_prune_duration_seconds") == 0)
        #expect(try value("database_size_bytes").map { $0 > 0 } == true)

        // An hour on: nothing more is old enough.
        #expect(await clock.advanceAndSettle(by: .seconds(3_600)))
        #expect(try await tasks() == 5)
        // A day on: the recent ones are.
        #expect(await clock.advanceAndSettle(by: .seconds(day)))
        #expect(try await tasks() == 0)
        #expect(try value("archived_tasks_total") == 15)
        running.cancel()
        _ = try? await running.value

        let archives = ArchiveVerification.verify(try await store.archiveCheckpoints(), folder: folder)
        #expect(archives.problem == nil && archives.tasks == 15)
    }
}
