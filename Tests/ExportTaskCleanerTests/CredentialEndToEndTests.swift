import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Credentials over a long run, against the simulator on 127.0.0.1: a key rotated and reloaded
/// with SIGHUP (the built binary), temporary credentials from the simulated ECS metadata
/// service renewed and expiring (in process), a clock 20 minutes off, and `check --probe`.
@Suite("End to end: credentials over a long run", .serialized)
struct CredentialEndToEndTests {
    static let rotated = AccessKey(ak: "E2EROTATEDKEY0000002", sk: "e2e-rotated-\(UInt64.random(in: 0 ... .max))")

    // MARK: SIGHUP

    @Test("a key rotated on disk and SIGHUP: the paused service resumes within seconds, at most 5 requests refused in all")
    func sighupAfterRotation() async throws {
        let world = try await World.start()
        let credentials = world.folder.appendingPathComponent("credentials").path
        try Self.writeKey(EndToEndTests.key, to: credentials)
        let ids = (0..<400).map { String(format: "hup-%04d", $0) }
        try await world.enqueue(ids)
        let run = try world.launch(["run"], config: [
            "auth": ["credentials_file": credentials], "concurrency": 4, "max_requests_per_second": 40, "log_level": "info",
        ], environment: [:])

        #expect(try await world.eventually { world.simulator.counters.successfulDeletes >= 40 }, "stderr: \(run.stderrText.suffix(2_000))")
        // The key is revoked on the server: the service pauses (1 minute before its probe).
        world.simulator.setAuth(.accessKey(Self.rotated))
        #expect(try await world.eventually { run.stderrText.contains("credentials refused; requests paused") })
        let deletedWhenPaused = world.simulator.counters.successfulDeletes
        try Self.writeKey(Self.rotated, to: credentials)
        let signalled = ContinuousClock.now
        run.signal(SIGHUP)
        #expect(try await world.eventually(timeout: .seconds(10)) { world.simulator.counters.successfulDeletes > deletedWhenPaused })
        let resumedAfter = ContinuousClock.now - signalled
        #expect(resumedAfter < .seconds(5), "resumed \(resumedAfter) after SIGHUP")
        #expect(try await world.eventually(timeout: .seconds(30)) { world.simulator.counters.successfulDeletes == ids.count })
        let counters = world.simulator.counters
        print("SIGHUP after a rotated key: resumed \(resumedAfter) after the signal, \(counters.authFailures) requests refused in all")
        #expect(counters.authFailures >= 1 && counters.authFailures <= 5, "\(counters.authFailures) refused")
        #expect(run.process.isRunning, "SIGHUP ended the process")
        #expect(run.stderrText.contains("configuration reloaded"))

        run.signal(SIGTERM)
        #expect(try await run.exit(within: .seconds(30)) == 0, "stderr: \(run.stderrText.suffix(2_000))")
        #expect(try world.states().values.allSatisfy { $0 == "deleted" })
        #expect(!run.stderrText.contains(Self.rotated.sk) && !run.stderrText.contains(EndToEndTests.key.sk))
        try await world.stop()
    }

    // MARK: check --probe

    @Test("check --probe explains 404, 403, 401 and a clock 20 minutes off; it writes nothing to the queue")
    func checkProbe() async throws {
        let world = try await World.start(behaviour: .notFound)
        try await world.enqueue(["keep-1"])
        let before = try world.scalar("SELECT count(*) FROM audit_log")
        func check(_ arguments: [String] = ["check", "--probe"]) async throws -> (status: Int32, output: String) {
            let run = try world.launch(arguments)
            let status = try await run.exit(within: .seconds(30))
            return (status, run.stdoutText + run.stderrText)
        }

        let plain = try await check(["check"])
        #expect(plain.status == 0, "\(plain.output)")
        #expect(plain.output.contains("writable") && plain.output.contains("version \(SQLiteQueueStore.schemaVersion)"))
        #expect(plain.output.contains("E2EA…") && !plain.output.contains(EndToEndTests.key.sk))

        let found = try await check()
        #expect(found.status == 0 && found.output.contains("404") && found.output.contains("permission to delete export tasks work"),
                "\(found.output)")

        world.simulator.setAuth(.accessKey(Self.rotated))
        let refused = try await check()
        #expect(refused.status == 3 && refused.output.contains("401") && refused.output.contains("so it is the key"), "\(refused.output)")

        world.simulator.setAuth(.accessKey(EndToEndTests.key))
        world.simulator.setClockOffset(.seconds(20 * 60))
        let skewed = try await check()
        // The Date header has whole seconds: 1199 to 1201 s.
        #expect(skewed.status == 3 && ["1199", "1200", "1201"].contains { skewed.output.contains("the local clock is \($0) s behind the server's") },
                "\(skewed.output)")
        world.simulator.setClockOffset(.zero)

        #expect(try world.states() == ["keep-1": "pending"])
        #expect(try world.scalar("SELECT count(*) FROM audit_log") == before)
        try await world.stop()

        let forbidding = try await World.start(behaviour: .forbidden)
        let run = try forbidding.launch(["check", "--probe"])
        #expect(try await run.exit(within: .seconds(30)) == 1)
        #expect(run.stdoutText.contains("iotda:exporttasks:delete"), "\(run.stdoutText)")
        try await forbidding.stop()
    }

    // MARK: Helpers

    /// Writes a credentials file as an operator's editor does: a new file, mode 0600, renamed over the old.
    static func writeKey(_ key: AccessKey, to path: String, mode: mode_t = 0o600) throws {
        let temporary = path + ".new"
        try Data("ak = \(key.ak)\nsk = \(key.sk)\n".utf8).write(to: URL(fileURLWithPath: temporary))
        guard chmod(temporary, mode) == 0, rename(temporary, path) == 0 else { throw CleanerError.runtime("cannot write \(path)") }
    }
}
