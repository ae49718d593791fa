import Foundation
import Logging
import Testing

@testable import ExportTaskCleaner

/// The group commit's wait at a low rate, on a clock the test turns by hand.
@Suite("Group commit")
struct GroupCommitTests {
    static func release(_ task: ClaimedTask) -> TaskTransition {
        TaskTransition(task: task, change: .release, audit: AuditRecord(outcome: .released, at: Date()))
    }

    @Test("with other runners busy a lone outcome waits for company, 100 ms at most; a stop, or enough outcomes, write at once")
    func waitsBoundedAndFlushes() async throws {
        let (store, _) = try TestSupport.makeStore()
        _ = try await store.enqueue(TestSupport.items((1...40).map { "gc-\($0)" }), now: Date())
        let tasks = try await store.claim(limit: 40, leaseToken: "lease", leaseUntil: Date().addingTimeInterval(60), now: Date())
        let clock = ManualClock()
        let recorder = OutcomeRecorder(store: store, clock: clock, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        recorder.setMoreExpected { true }
        let written = EventLog<Int>()
        let run = Task { await recorder.run { batch, _ in written.append(batch.count) } }

        recorder.submit(Self.release(tasks[0]))
        #expect(await clock.waitForSleepers(atLeast: 1))
        #expect(written.events.isEmpty, "written before the wait was over")
        _ = clock.advance(by: .milliseconds(99))
        #expect(written.events.isEmpty)
        _ = clock.advance(by: .milliseconds(1))
        #expect(await written.wait { $0 == [1] })

        // A stop: written at once, the clock untouched.
        recorder.submit(Self.release(tasks[1]))
        #expect(await clock.waitForSleepers(atLeast: 1))
        recorder.flushNow()
        #expect(await written.wait { $0 == [1, 1] })

        // Enough outcomes pay for their transaction: no wait.
        recorder.submit(contentsOf: tasks[2..<(2 + Tuning.groupCommitEnough)].map(Self.release))
        #expect(await written.wait { $0 == [1, 1, Tuning.groupCommitEnough] })

        // Nothing more expected (the last outcome of a drain): no wait.
        recorder.setMoreExpected { false }
        recorder.submit(Self.release(tasks[39]))
        #expect(await written.wait { $0.count == 4 })
        recorder.finish(deadline: clock.instant())
        await run.value
    }
}
