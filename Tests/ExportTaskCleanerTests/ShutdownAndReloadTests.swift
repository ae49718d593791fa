@testable import ExportTaskCleaner
import Foundation
import IoTDASimulator
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

/// Issue #21's findings about timers, rates and in flight: a cancelled runner fires no
/// deadline; a reloaded rate applies to runners already waiting for a slot; "in flight" means
/// requests on the wire.
@Suite("Shutdown deadlines and reloaded rates")
struct ShutdownAndReloadTests {
    @Test("past the grace, cancelling the runners fires no deadline: failing outcome writes are retried, none given up, no false error")
    func cancelledRunnersFireNoDeadline() async throws {
        let harness = try await ServiceHarness.start()
        // The first answer shows the credentials work; until then one request at a time.
        try await harness.enqueue(["warm-up", "slow-1", "slow-2"])
        for id in ["slow-1", "slow-2"] { harness.simulator.script(id, .delay(.seconds(5), then: .deleteOnce)) }
        var options = ServiceHarness.options(concurrency: 3, drain: false, grace: .milliseconds(200))
        options.outcomeWriteGrace = .seconds(20)
        let service = harness.service(options)
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                #expect(await harness.transport.started.wait { $0.count >= 3 })
                // The next three writes fail (a disk briefly full): the cut-off requests'
                // outcomes must be retried after the grace, within the write deadline.
                harness.store.failingWrites.withLock { $0 = 3 }
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        #expect(harness.store.failingWrites.withLock { $0 } == 0)
        let rows = try harness.rows()
        #expect(rows["slow-1"]?.state == "pending" && rows["slow-2"]?.state == "pending")
        await #expect(try harness.audit("slow-1").last?.delivery == "unknown")
        #expect(!harness.logs.lines.contains { $0.message == "outcomes still not written after the shutdown grace period; giving up" })
        #expect(!harness.logs.lines.contains { $0.message.hasPrefix("outcome not written") })
        #expect(service.outcome == .stopped)
        try await harness.shutdown()
    }

    @Test("a reload from 0.001/s to 100/s applies to runners already waiting for a slot taken at the old rate; in flight counts requests on the wire")
    func reloadedRateAppliesToWaitingRunners() async throws {
        let harness = try await ServiceHarness.start()
        try await harness.enqueue((1...6).map { "rate-\($0)" })
        let clock = ManualClock()
        let service = harness.service(ServiceHarness.options(concurrency: 2, rate: 0.001, drain: false), clock: clock)
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                // One request at the start; then both runners wait for slots about 1,010 s apart.
                #expect(await harness.store.applied.wait { $0.joined().contains { $0.outcome == .deleted } })
                #expect(await clock.waitForSleepers(atLeast: ServiceHarness.idleSleepers + 2))
                #expect(harness.transport.started.events.count == 1)
                // Two runners hold tasks, but no request is on the wire.
                #expect(service.statistics.inFlight == 0)
                service.reconfigure(ReloadableSettings(
                    concurrency: 2, maxRequestsPerSecond: 100,
                    retry: .exponentialJitter(maxAttempts: 8, baseDelay: .seconds(1), maxDelay: .seconds(300))))
                // Within a runner's wake step (a second), not at the slot taken at 0.001/s:
                // one starts at once, the other 10.1 ms after it.
                clock.advance(by: Tuning.runnerWakeStep)
                #expect(await harness.transport.started.wait { $0.count >= 2 })
                #expect(await clock.waitForSleepers(atLeast: ServiceHarness.idleSleepers + 2))
                clock.advance(by: .milliseconds(100))
                #expect(await harness.transport.started.wait { $0.count >= 3 })
                trigger.triggerGracefulShutdown()
                // Runners waiting for a slot notice the stop at their next wake step, and one
                // busy with a request when time moved goes to sleep after it: time moves on
                // until the service has ended (bounded: 20 s).
                group.addTask {
                    for _ in 0..<2_000 where !Task.isCancelled {
                        clock.advance(by: Tuning.runnerWakeStep)
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        }
        try await harness.shutdown()
    }

    @Test("a new spacing voids the slots reserved at the old one and goes on from the last start")
    func pacerRescheduling() {
        let t0 = ContinuousClock.now
        let traffic = TrafficControl(rate: 0.001, concurrency: 4)
        guard case .start(let first, var schedule) = traffic.permit(now: t0) else { Issue.record("paused"); return }
        #expect(first == t0)
        #expect(traffic.start(now: t0, schedule: &schedule) == nil)
        guard case .start(let far, var waiting) = traffic.permit(now: t0) else { Issue.record("paused"); return }
        #expect(far - t0 > .seconds(1_000))
        // Raised: the far slot is void; the new schedule goes on 10.1 ms after the last start.
        traffic.reconfigure(rate: 100, concurrency: 4)
        #expect(traffic.schedule != waiting)
        let now = t0.advanced(by: .milliseconds(2))
        let again = traffic.start(now: now, schedule: &waiting)
        #expect(again == t0.advanced(by: .microseconds(10_100)))
        #expect(waiting == traffic.schedule)
        #expect(traffic.start(now: t0.advanced(by: .microseconds(10_100)), schedule: &waiting) == nil)
        // Lowered: a near slot reserved at 100/s is void too.
        guard case .start(let near, var nearSchedule) = traffic.permit(now: now) else { Issue.record("paused"); return }
        #expect(near - t0 < .milliseconds(30))
        traffic.reconfigure(rate: 0.001, concurrency: 4)
        let later = traffic.start(now: near, schedule: &nearSchedule)
        #expect(later.map { $0 - near > .seconds(1_000) } == true)
        // The same rate again changes nothing.
        let unchanged = traffic.schedule
        traffic.reconfigure(rate: 0.001, concurrency: 4)
        #expect(traffic.schedule == unchanged)
    }
}
