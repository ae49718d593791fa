import ExportTaskCleaner
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SIGHUP reloads `run` (docs/operations.md, "Reloading"); its default action ends a process, so `run` ignores
/// it before anything else, argument parsing included, and a reload sent as the service starts
/// never kills it (#21). The built binary as a child process.
@Suite("SIGHUP as run starts")
struct SignalAtStartTests {
    @Test("SIGHUP as soon as run has a second thread never ends it: twenty starts, each drains and exits 0")
    func sighupAtStart() async throws {
        let world = try await World.start()
        var killed = 0
        for attempt in 1...20 {
            let child = try world.launch(["run", "--drain"])
            let pid = child.process.processIdentifier
            // A second thread means main has begun (Swift's pool starts with its first task):
            // a bounded watch on another process, which sends no events of its own, every half
            // millisecond (the few milliseconds between that thread and argument parsing are
            // what the signal must not find).
            let deadline = ContinuousClock.now.advanced(by: .seconds(10))
            while child.process.isRunning, ContinuousClock.now < deadline,
                  ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"))?.count ?? 0) < 2 {
                try await Task.sleep(for: .microseconds(500))
            }
            child.signal(SIGHUP)
            let status = try await child.exit(within: .seconds(30))
            if status == -SIGHUP { killed += 1 }
            #expect(status == 0, "start \(attempt): \(child.stderrText)")
        }
        #expect(killed == 0)
        try await world.stop()
    }
}
