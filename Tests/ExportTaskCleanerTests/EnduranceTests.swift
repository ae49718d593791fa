@testable import ExportTaskCleaner
import Foundation
import IoTDASimulator
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

/// What runs once per request, scrape or tick must cost the same after hundreds of thousands
/// of runs as after the first (docs/development.md, "Endurance"). Each path is driven many
/// times in process; the cost of an operation in the first tenth is compared with the last
/// tenth, each the fastest of its ten chunks by the thread's CPU time (robust to a machine
/// busy with other suites), and
/// the process's resident memory may not grow by as much as a leak would. The
/// built binary's soak (`scripts/soak`, in CI) does the same for a whole service.
@Suite("Endurance", .serialized)
struct EnduranceTests {
    struct Profile: CustomStringConvertible {
        var first: Duration
        var last: Duration
        var residentGrowth: Int
        var operations: Int

        static func ns(_ duration: Duration) -> Int64 {
            duration.components.seconds &* 1_000_000_000 &+ duration.components.attoseconds / 1_000_000_000
        }

        var description: String {
            "first tenth \(Self.ns(first)) ns/op, last tenth \(Self.ns(last)) ns/op, resident +\(residentGrowth / 1024) KiB over \(operations) ops"
        }
    }

    /// This thread's CPU time: unlike the wall clock, it does not count the time the suites
    /// beside this one take the cores away.
    static func threadCPUTime() -> Duration {
        var spec = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
        return .seconds(spec.tv_sec) + .nanoseconds(spec.tv_nsec)
    }

    /// Runs `body` `operations` times in 100 chunks, on one thread (the tests that call it are
    /// synchronous), timing each chunk by this thread's CPU time.
    static func profile(_ operations: Int, _ body: (Int) -> Void) -> Profile {
        let chunks = 100
        let perChunk = operations / chunks
        var times: [Duration] = []
        times.reserveCapacity(chunks)
        // A first chunk unmeasured: caches, lazily built state.
        for index in 0..<perChunk { body(index) }
        let residentBefore = residentBytes()
        var index = perChunk
        for _ in 0..<chunks {
            let start = threadCPUTime()
            for _ in 0..<perChunk {
                body(index)
                index += 1
            }
            times.append((threadCPUTime() - start) / perChunk)
        }
        return Profile(first: times.prefix(chunks / 10).min() ?? .zero, last: times.suffix(chunks / 10).min() ?? .zero,
                       residentGrowth: residentBytes() - residentBefore, operations: perChunk * chunks)
    }

    /// The last tenth costs at most four times the first (and a microsecond for noise; the
    /// bugs this holds off grow a hundredfold and end in a crash). Memory is
    /// the whole process's, and the suites running beside this one allocate too (a CI run saw
    /// 28 MB more during 100,000 scrapes that alone grew it by 192 KiB): held here to less
    /// than 1 KiB an operation, a leak's size; `scripts/soak` holds a process of its own to a
    /// flat line.
    static func expectFlat(_ profile: Profile, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) {
        print("endurance \(name): \(profile)")
        #expect(profile.last <= profile.first * 4 + .microseconds(1), "\(name): \(profile)", sourceLocation: sourceLocation)
        #expect(profile.residentGrowth < 1_024 * profile.operations, "\(name): \(profile)", sourceLocation: sourceLocation)
    }

    static func residentBytes() -> Int {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = statm.split(separator: " ")
        return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
    }

    static let options = ServiceHarness.options(concurrency: 8, rate: 50)

    static func service(metrics: ServiceMetrics? = nil, credentials: CredentialProvider? = nil) throws -> CleanerService {
        CleanerService(options: options, store: try TestSupport.makeStore().store, transport: FailingTransport(),
                       retry: .exponentialJitter(maxAttempts: 8, baseDelay: .seconds(1), maxDelay: .seconds(300)),
                       credentials: credentials, metrics: metrics, logger: CapturedLogs().logger())
    }

    @Test("a scrape's collection (the service's figures and the process's), 100,000 times")
    func scrape() throws {
        let setup = MetricsSetup()
        let service = try Self.service(metrics: setup.metrics)
        setup.setCollector { service.collectMetrics() }
        Self.expectFlat(Self.profile(100_000) { _ in setup.collect() }, "scrape")
    }

    @Test("a group-commit gather's question, 300,000 times")
    func gather() throws {
        let store = try TestSupport.makeStore().store
        let recorder = OutcomeRecorder(store: store, clock: SystemClock(), logger: CapturedLogs().logger())
        let flag = Atomic<Bool>(true)
        recorder.setMoreExpected { flag.load(ordering: .relaxed) }
        Self.expectFlat(Self.profile(300_000) { _ in _ = recorder.moreOutcomesExpected() }, "gather")
    }

    @Test("a pacing slot (reserve, admit), 300,000 times, with the rate changed every 1,000")
    func pacingSlot() {
        let traffic = TrafficControl(rate: 1_000, concurrency: 8)
        let t0 = ContinuousClock.now
        Self.expectFlat(Self.profile(300_000) { index in
            if index % 1_000 == 0 { traffic.reconfigure(rate: index % 2_000 == 0 ? 1_000 : 900, concurrency: 8) }
            let now = t0.advanced(by: .milliseconds(2) * index)
            guard case .start(let slot, var schedule) = traffic.permit(now: now) else { return }
            _ = traffic.start(now: max(now, slot), schedule: &schedule)
        }, "pacing slot")
    }

    @Test("a lease's life in memory (claim, renewal, check, finish), 200,000 times")
    func leaseRenewal() {
        var leases = HeldLeases()
        let now = Date()
        Self.expectFlat(Self.profile(200_000) { index in
            let token = "lease-\(index % 64)"
            let task = ClaimedTask(id: index, exportTaskID: "t", projectID: nil, instanceID: nil, attempts: 0, leaseToken: token)
            leases.claimed([task], token: token, until: now + 60)
            leases.renewed(tokens: [token], until: now + 120, held: [index])
            _ = leases.mayStart(task, now: now, margin: .seconds(1))
            leases.finished(task)
        }, "lease renewal")
        #expect(leases.isEmpty)
    }

    @Test("a credentials snapshot, 300,000 times, with the keys replaced every 1,000")
    func credentialsSnapshot() {
        let key = AccessKey(ak: "ENDURANCEAK000000000", sk: "endurance-secret")
        let provider = CredentialProvider(.accessKey(key), source: "test", expiresAt: Date() + 3_600,
                                          signing: .sdkHMACSHA256, region: "cn-north-4")
        let changes = Atomic<Int>(0)
        provider.setListener { _ in changes.add(1, ordering: .relaxed) }
        let now = Date()
        Self.expectFlat(Self.profile(300_000) { index in
            if index % 1_000 == 0 { provider.replace(.accessKey(key), source: "test", expiresAt: now + 3_600, renewal: true) }
            _ = provider.authorization(at: now)
        }, "credentials snapshot")
        #expect(changes.load(ordering: .relaxed) > 0)
    }

    @Test("a heartbeat's status line, 200,000 times")
    func heartbeat() throws {
        let service = try Self.service()
        let counts: [TaskState: Int] = [.pending: 12, .deleted: 3]
        Self.expectFlat(Self.profile(200_000) { _ in _ = service.statusText(counts: counts) }, "heartbeat")
    }

    @Test("a whole service: 3,000 deletes one at a time with scrapes between, then a clean stop")
    func wholeService() async throws {
        let harness = try await ServiceHarness.start()
        try await harness.enqueue((1...3_000).map { "endure-\($0)" })
        let setup = MetricsSetup()
        var options = ServiceHarness.options(concurrency: 1, drain: false)
        options.groupCommitWait = .milliseconds(1)
        let service = CleanerService(options: options, store: harness.store, transport: harness.transport,
                                     retry: .exponentialJitter(maxAttempts: 3, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)),
                                     metrics: setup.metrics, logger: harness.logs.logger())
        setup.setCollector { service.collectMetrics() }
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                group.addTask {
                    // Scrapes while it works, until every task is done (bounded: 2 minutes).
                    let deadline = ContinuousClock.now.advanced(by: .seconds(120))
                    while harness.transport.finished.events.count < 3_000, ContinuousClock.now < deadline {
                        setup.collect()
                        try await Task.sleep(for: .milliseconds(1))
                    }
                }
                #expect(await harness.transport.finished.wait(timeout: .seconds(120)) { $0.count >= 3_000 })
                #expect(await harness.store.applied.wait(timeout: .seconds(20)) { $0.joined().count >= 3_000 })
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }
        #expect(service.outcome == .stopped)
        #expect(try harness.rows().values.allSatisfy { $0.state == "deleted" })
        try await harness.shutdown()
    }
}
