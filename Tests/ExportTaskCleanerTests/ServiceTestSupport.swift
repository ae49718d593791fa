import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import NIOPosix
import Synchronization

/// A clock the test moves by hand: sleepers wake only when `advance` passes their deadline.
/// After an advance, a test waits for the system to reach its next sleep (`advanceAndSettle`,
/// `waitForSleepers`) before it asserts anything, never for wall time.
final class ManualClock: ServiceClock {
    private struct Sleeper {
        var id: Int
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct Watcher {
        var id: Int
        var atLeast: Int
        var continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var offset: Duration = .zero
        var nextID = 0
        var sleepers: [Sleeper] = []
        /// Tests waiting for the system under test to reach its next sleep.
        var watchers: [Watcher] = []
    }

    private let origin = ContinuousClock.now
    private let wallOrigin = Date(timeIntervalSince1970: 1_800_000_000)
    private let state = Mutex(State())

    func now() -> Date {
        wallOrigin.addingTimeInterval(state.withLock { Double($0.offset.components.seconds) + Double($0.offset.components.attoseconds) / 1e18 })
    }

    func instant() -> ContinuousClock.Instant {
        origin.advanced(by: state.withLock { $0.offset })
    }

    func sleep(until deadline: ContinuousClock.Instant) async throws {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Now { case wait(satisfied: [Watcher]), wake, cancel }
                let now = state.withLock { state -> Now in
                    // Checked under the lock: a cancellation that ran before this point found
                    // no sleeper to wake, so this sleeper must not wait at all.
                    if Task.isCancelled { return .cancel }
                    if origin.advanced(by: state.offset) >= deadline { return .wake }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    let count = state.sleepers.count
                    let satisfied = state.watchers.filter { $0.atLeast <= count }
                    state.watchers.removeAll { $0.atLeast <= count }
                    return .wait(satisfied: satisfied)
                }
                switch now {
                case .wait(let satisfied): for watcher in satisfied { watcher.continuation.resume(returning: true) }
                case .wake: continuation.resume()
                case .cancel: continuation.resume(throwing: CancellationError())
                }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper whose deadline has come. Returns how many
    /// slept before (woken or not).
    @discardableResult
    func advance(by duration: Duration) -> Int {
        let (before, due) = state.withLock { state -> (Int, [Sleeper]) in
            let before = state.sleepers.count
            state.offset += duration
            let now = origin.advanced(by: state.offset)
            let due = state.sleepers.filter { $0.deadline <= now }
            state.sleepers.removeAll { $0.deadline <= now }
            return (before, due)
        }
        for sleeper in due { sleeper.continuation.resume() }
        return before
    }

    /// Waits until at least `count` tasks sleep on this clock: the system under test has done
    /// what it was woken for and reached its next sleep. False if `timeout` (wall time) passed
    /// first: a safety net for a broken build, never a way of pacing the test.
    func waitForSleepers(atLeast count: Int, timeout: Duration = .seconds(20)) async -> Bool {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        return await boundedWait(timeout: timeout, register: { continuation in
            self.state.withLock { state in
                if state.sleepers.count >= count { return true }
                state.watchers.append(Watcher(id: id, atLeast: count, continuation: continuation))
                return false
            }
        }, withdraw: {
            self.state.withLock { state in
                state.watchers.firstIndex { $0.id == id }.map { state.watchers.remove(at: $0).continuation }
            }
        })
    }

    /// Moves time forward, then waits (bounded) until as many tasks sleep as before: each one
    /// the advance woke has done its work and gone back to sleep. Call it with the system under
    /// test idle (every task of it asleep on this clock or waiting for an event), and only for
    /// advances that wake tasks which sleep again (timers, loops), not one-off waits.
    @discardableResult
    func advanceAndSettle(by duration: Duration) async -> Bool {
        await waitForSleepers(atLeast: advance(by: duration))
    }
}

/// A stream of events with a bounded wait for the next one matching a condition.
final class EventLog<Event: Sendable>: Sendable {
    private let state = Mutex<(events: [Event], waiters: [(id: Int, predicate: @Sendable ([Event]) -> Bool, continuation: CheckedContinuation<Bool, Never>)], nextID: Int)>(([], [], 0))

    func append(_ event: Event) {
        let ready = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.events.append(event)
            let events = state.events
            let ready = state.waiters.filter { $0.predicate(events) }
            state.waiters.removeAll { waiter in ready.contains { $0.id == waiter.id } }
            return ready.map(\.continuation)
        }
        for continuation in ready { continuation.resume(returning: true) }
    }

    var events: [Event] { state.withLock { $0.events } }

    /// Waits until `predicate` holds for the events so far; false if `timeout` passed first
    /// (a safety net for a broken build, not a way of pacing the test).
    func wait(timeout: Duration = .seconds(20), until predicate: @escaping @Sendable ([Event]) -> Bool) async -> Bool {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        return await boundedWait(timeout: timeout, register: { continuation in
            self.state.withLock { state in
                if predicate(state.events) { return true }
                state.waiters.append((id, predicate, continuation))
                return false
            }
        }, withdraw: {
            self.state.withLock { state in
                state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0).continuation }
            }
        })
    }
}

/// Waits until a condition holds, or `timeout` (wall time) passes: `register` either says the
/// condition holds already (true) or keeps the continuation for whoever makes it hold to
/// resume with true; on timeout `withdraw` takes it back, if still kept, and it resumes with
/// false. The timeout is a safety net for a broken build, never a way of pacing a test.
func boundedWait(timeout: Duration,
                 register: @escaping @Sendable (CheckedContinuation<Bool, Never>) -> Bool,
                 withdraw: @escaping @Sendable () -> CheckedContinuation<Bool, Never>?) async -> Bool {
    await withTaskGroup(of: Bool.self) { group in
        group.addTask {
            await withCheckedContinuation { continuation in
                if register(continuation) { continuation.resume(returning: true) }
            }
        }
        group.addTask {
            try? await Task.sleep(for: timeout)
            withdraw()?.resume(returning: false)
            return false
        }
        let first = await group.next() ?? false
        group.cancelAll()
        return first
    }
}

/// The real store, reporting every transition it commits.
/// The service's half of the store (``WorkQueue``) over a real SQLite store, recording each
/// `apply` batch and able to fail writes on demand.
final class ObservedStore: WorkQueue {
    let inner: SQLiteQueueStore
    /// One entry per `apply` call: the outcomes of its batch, and whether each lease held.
    let applied = EventLog<[(outcome: AuditOutcome, id: String, held: Bool)]>()
    /// How many of the next `apply` calls fail as if the database stayed busy.
    let failingWrites = Mutex(0)
    /// The SQLite result code those failures carry (5: busy; 11: corrupt).
    let failingWriteCode = Mutex<Int32>(5)
    /// While true, every lease renewal fails as if the database stayed busy.
    let failingRenewals = Mutex(false)
    /// Run at the start of each `apply`, on the thread that writes: a test can hold a write
    /// there (a slow store) or count them.
    let beforeApply = Mutex<Callback<Void>?>(nil)

    init(_ inner: SQLiteQueueStore) { self.inner = inner }

    var committed: [(outcome: AuditOutcome, id: String, held: Bool)] { applied.events.flatMap { $0 } }

    func claim(limit: Int, leaseToken: String, leaseUntil: Date, now: Date) async throws -> [ClaimedTask] {
        try await inner.claim(limit: limit, leaseToken: leaseToken, leaseUntil: leaseUntil, now: now)
    }
    func apply(_ transitions: [TaskTransition]) async throws -> [Bool] {
        if let callback = beforeApply.withLock({ $0 }) {
            // On a thread of the blocking pool, as a real write waits: a test that holds it
            // there holds no thread of Swift's cooperative pool.
            try await NIOThreadPool.singleton.runIfActive { callback.call() }
        }
        let fail = failingWrites.withLock { remaining in
            defer { remaining = max(0, remaining - 1) }
            return remaining > 0
        }
        if fail {
            let code = failingWriteCode.withLock { $0 }
            throw SQLiteError(code: code, message: code == 5 ? "database is locked" : "database disk image is malformed", context: "a test").storeError
        }
        let held = try await inner.apply(transitions)
        applied.append(zip(transitions, held).map { ($0.audit.outcome, $0.task.exportTaskID, $1) })
        return held
    }
    func renewLeases(tokens: [String], until: Date) async throws -> Set<Int> {
        if failingRenewals.withLock({ $0 }) { throw StoreError(.unavailable, "database is locked (a test)") }
        return try await inner.renewLeases(tokens: tokens, until: until)
    }
    func expireLeases(now: Date) async throws -> [ExpiredLease] { try await inner.expireLeases(now: now) }
    func counts() async throws -> [TaskState: Int] { try await inner.counts() }
    func nextDue() async throws -> Date? { try await inner.nextDue() }
    func hasUnfinishedTasks() async throws -> Bool { try await inner.hasUnfinishedTasks() }
    func changeSignal() async throws -> Int { try await inner.changeSignal() }
    func oldestPendingEnqueuedAt() async throws -> Date? { try await inner.oldestPendingEnqueuedAt() }
    func heartbeat(startedAt: Date, status: String, now: Date) async throws { try await inner.heartbeat(startedAt: startedAt, status: status, now: now) }
    func removeHeartbeat() async throws { try await inner.removeHeartbeat() }
}

/// The real client, reporting each request as it starts; the gate can hold requests in flight.
struct ObservedTransport: IoTDATransport {
    let inner: any IoTDATransport
    let started = EventLog<String>()
    let startTimes = EventLog<ContinuousClock.Instant>()
    /// Each request as its result came back.
    let finished = EventLog<String>()
    let gate = Gate()

    func delete(_ request: DeleteRequest) async -> DeleteResult {
        startTimes.append(.now)
        started.append(request.exportTaskID)
        await gate.pass(request.exportTaskID)
        let result = await inner.delete(request)
        finished.append(request.exportTaskID)
        return result
    }
}

/// Holds the requests of chosen export task IDs after they started, until the test opens it:
/// a request outlives whatever the test needs it to, without any wall time. A held request
/// ignores cancellation, so a test that holds one must `open()` it.
final class Gate: Sendable {
    private let state = Mutex<(held: Set<String>, waiting: [CheckedContinuation<Void, Never>])>(([], []))

    func hold(_ ids: Set<String>) {
        state.withLock { $0.held.formUnion(ids) }
    }

    /// Lets every held request go, and holds none from now on.
    func open() {
        let waiting = state.withLock { state in
            defer { state = ([], []) }
            return state.waiting
        }
        for continuation in waiting { continuation.resume() }
    }

    func pass(_ id: String) async {
        guard state.withLock({ $0.held.contains(id) }) else { return }
        await withCheckedContinuation { continuation in
            let go = state.withLock { state -> Bool in
                guard state.held.contains(id) else { return true }
                state.waiting.append(continuation)
                return false
            }
            if go { continuation.resume() }
        }
    }
}

/// The most instants that fall in any one-second window.
func busiestSecond(_ instants: [ContinuousClock.Instant]) -> Int {
    let sorted = instants.sorted()
    var busiest = 0
    for (index, start) in sorted.enumerated() {
        busiest = max(busiest, sorted[index...].prefix { $0 < start.advanced(by: .seconds(1)) }.count)
    }
    return busiest
}

/// A simulator, a client signing with its key, a fresh queue, and captured logs.
struct ServiceHarness {
    static let project = "svc-project"
    /// How many tasks of an idle service sleep on its clock: the work loop's tick and the
    /// housekeeping loop. `ManualClock.waitForSleepers(atLeast:)` with this many means the
    /// service has reached its next sleep.
    static let idleSleepers = 2
    static let key = AccessKey(ak: "HARNESSAK0000000001", sk: "harness-secret-key-do-not-log")

    let simulator: IoTDASimulator
    let client: IoTDAClient
    let transport: ObservedTransport
    let store: ObservedStore
    let path: String
    let logs: CapturedLogs

    static func start(simulator configuration: IoTDASimulator.Configuration = .init(), concurrency: Int = 8,
                      clientKey: AccessKey = key, requestTimeout: Duration = .seconds(10)) async throws -> ServiceHarness {
        var configuration = configuration
        configuration.projectID = project
        if case .unauthenticated = configuration.auth { configuration.auth = .accessKey(key) }
        let logs = CapturedLogs()
        let simulator = try await IoTDASimulator.start(configuration, logger: Logger(label: "sim") { _ in SwiftLogNoOpLogHandler() })
        let client = try IoTDAClient(
            configuration: .init(endpoint: simulator.endpoint, credentials: .accessKey(clientKey), signing: .v11HMACSHA256,
                                 region: configuration.region, concurrency: concurrency, requestTimeout: requestTimeout),
            logger: logs.logger())
        let (store, path) = try TestSupport.makeStore()
        return ServiceHarness(simulator: simulator, client: client, transport: ObservedTransport(inner: client),
                              store: ObservedStore(store), path: path, logs: logs)
    }

    func service(_ options: CleanerOptions, retry: ExponentialJitterRetry = .init(maxAttempts: 8, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)),
                 clock: any ServiceClock = SystemClock(), liveness: LivenessMonitor? = nil) -> CleanerService {
        CleanerService(options: options, store: store, transport: transport, retry: retry, clock: clock,
                       random: SeededRandomSource(seed: 42), liveness: liveness, logger: logs.logger())
    }

    /// No group-commit wait: these tests turn a `ManualClock` whenever the work loop and
    /// housekeeping sleep (`idleSleepers`), and a third sleeper would move time on under work
    /// in progress. `GroupCommitTests` test the wait itself.
    static func options(concurrency: Int = 8, rate: Double = 10_000, drain: Bool = true, grace: Duration = .seconds(10),
                        poll: Duration = .milliseconds(50), lease: Duration = .seconds(60)) -> CleanerOptions {
        var options = CleanerOptions(projectID: project, concurrency: concurrency, maxRequestsPerSecond: rate, leaseDuration: lease,
                                     shutdownGrace: grace, pollInterval: poll, drain: drain, credentialsDescription: "test key")
        options.groupCommitWait = .zero
        return options
    }

    func enqueue(_ ids: [String]) async throws {
        _ = try await store.inner.enqueue(TestSupport.items(ids), now: Date())
    }

    func rows() throws -> [String: (state: String, attempts: Int, status: Int?, code: String?, requestID: String?)] {
        let db = try SQLiteConnection(path: path)
        let statement = try db.prepare("SELECT export_task_id, state, attempts, last_http_status, last_error_code, last_request_id FROM export_tasks")
        var rows: [String: (state: String, attempts: Int, status: Int?, code: String?, requestID: String?)] = [:]
        while try statement.step() {
            rows[statement.string(0)] = (statement.string(1), statement.int(2), statement.optionalInt(3),
                                         statement.optionalString(4), statement.optionalString(5))
        }
        statement.reset()
        return rows
    }

    func audit(_ id: String) async throws -> [AuditEntry] {
        var entries: [AuditEntry] = []
        try await store.inner.auditEntries(AuditFilter(exportTaskID: id)) { entries.append($0) }
        return entries
    }

    func shutdown() async throws {
        try await client.shutdown()
        try await simulator.shutdown()
    }
}
