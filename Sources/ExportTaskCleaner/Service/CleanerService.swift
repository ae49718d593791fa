import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The service: works the queue until graceful shutdown (or, with `drain`, until it is empty).
///
/// One work loop claims due tasks, never more than there are free slots, and runs each delete
/// as a child of one task group. Each child catches its own failures and hands its outcome to
/// the group-commit writer, so one bad task never cancels the others. Retries wait in the
/// database (`next_attempt_at`), not in memory. A housekeeping loop renews leases, expires
/// dead ones, and reports status.
public final class CleanerService: Service, Sendable {
    public enum RunOutcome: Sendable, Equatable {
        /// `drain`: nothing pending or in progress is left.
        case drained
        /// Graceful shutdown.
        case stopped
        /// `drain`: the server refused the credentials; the tasks stay pending.
        case credentialsRefused
    }

    struct Shared {
        var stopping = false
        /// Lease tokens with tasks in flight, and how many.
        var leaseTokens: [String: Int] = [:]
        var statistics = CleanerStatistics()
        var countsDirty = true
        /// Set when this service itself made tasks claimable (expired leases): its own writes
        /// do not change `PRAGMA data_version`, so the work loop must be told.
        var tasksReturned = false
    }

    let options: CleanerOptions
    let store: any QueueStore
    let transport: any IoTDATransport
    let retry: any RetryStrategy
    let clock: any ServiceClock
    let random: any RandomSource
    let notifier: SystemdNotifier?
    let liveness: LivenessMonitor?
    let logger: Logger
    let traffic: TrafficControl
    let recorder: OutcomeRecorder
    let shared = Mutex(Shared())
    private let finalOutcome = Mutex<RunOutcome?>(nil)

    public init(options: CleanerOptions, store: any QueueStore, transport: any IoTDATransport,
                retry: any RetryStrategy, clock: any ServiceClock = SystemClock(),
                random: any RandomSource = SystemRandomSource(), notifier: SystemdNotifier? = nil,
                liveness: LivenessMonitor? = nil, logger: Logger) {
        self.options = options
        self.store = store
        self.transport = transport
        self.retry = retry
        self.clock = clock
        self.random = random
        self.notifier = notifier
        self.liveness = liveness
        self.logger = logger
        self.traffic = TrafficControl(rate: options.maxRequestsPerSecond, concurrency: options.concurrency)
        self.recorder = OutcomeRecorder(store: store, clock: clock, logger: logger)
    }

    /// What the service has done so far.
    public var statistics: CleanerStatistics {
        shared.withLock { $0.statistics }
    }

    /// How the last `run()` ended.
    public var outcome: RunOutcome? {
        finalOutcome.withLock { $0 }
    }

    /// Runs until graceful shutdown, or with `drain` until the queue is empty.
    /// Throws `CleanerError` with code `.credentialsRefused` when draining stopped on a 401.
    public func run() async throws {
        let startedAt = clock.now()
        expireDeadLeases()
        _ = notifier?.ready()
        logger.info("cleaner started", metadata: [
            "concurrency": "\(options.concurrency)", "max_requests_per_second": "\(options.maxRequestsPerSecond)",
            "drain": "\(options.drain)",
        ])

        let outcome = await withTaskGroup(of: Void.self, returning: RunOutcome.self) { background in
            background.addTask { await self.recorder.run() }
            background.addTask { await self.housekeeping(startedAt: startedAt) }
            let outcome = await self.workLoop()
            self.recorder.finish()
            // The recorder has nothing left to write: every delete task waited for its commit.
            background.cancelAll()
            return outcome
        }
        finalOutcome.withLock { $0 = outcome }
        do { try store.removeHeartbeat() } catch {
            logger.warning("cannot remove the heartbeat", metadata: ["error": "\(error)"])
        }
        let statistics = self.statistics
        logger.info("cleaner stopped", metadata: [
            "outcome": "\(outcome)", "requests": "\(statistics.requests)", "finished": "\(statistics.finished)",
            "retries": "\(statistics[.retry])",
        ])
        if outcome == .credentialsRefused {
            throw CleanerError(.credentialsRefused,
                               "the service refused our credentials (\(options.credentialsDescription)); the tasks were left pending")
        }
    }

    // MARK: The work loop

    private enum LoopEvent: Sendable {
        case task(TaskReport)
        case tick
        case shutdownRequested
        case shutdownWatchEnded
        case graceExpired
    }

    private func workLoop() async -> RunOutcome {
        await withTaskGroup(of: LoopEvent.self, returning: RunOutcome.self) { group in
            group.addTask {
                do {
                    try await gracefulShutdown()
                    return .shutdownRequested
                } catch {
                    return .shutdownWatchEnded
                }
            }
            var inFlight = 0
            var ticking = false
            var stopping = false
            var outcome = RunOutcome.stopped
            // Whether the queue may hold due work we have not claimed.
            var mayHaveWork = true
            var knownNextDue: Date?
            var dataVersion = (try? store.dataVersion()) ?? 0
            var storeFailures = 0

            while true {
                liveness?.beat()
                if !stopping, options.drain, traffic.snapshot.circuit.isOpenState {
                    outcome = .credentialsRefused
                    stopping = true
                    beginStopping(reason: "credentials refused while draining")
                }
                if !stopping {
                    let now = clock.now()
                    if shared.withLock({ shared in defer { shared.tasksReturned = false }; return shared.tasksReturned }) {
                        mayHaveWork = true
                    }
                    if !mayHaveWork {
                        if let due = knownNextDue, due <= now { mayHaveWork = true }
                        if let version = try? store.dataVersion(), version != dataVersion {
                            dataVersion = version
                            mayHaveWork = true
                            markCountsDirty()
                        }
                    }
                    let free = traffic.freeSlots(inFlight: inFlight, now: clock.instant())
                    if mayHaveWork, free > 0 {
                        do {
                            let token = Self.makeLeaseToken()
                            let tasks = try store.claim(limit: free, leaseToken: token,
                                                        leaseUntil: now.addingTimeInterval(options.leaseDuration.timeInterval), now: now)
                            storeFailures = 0
                            if !tasks.isEmpty {
                                registerLease(token, tasks: tasks.count)
                                for task in tasks {
                                    inFlight += 1
                                    group.addTask { .task(await self.process(task)) }
                                }
                            }
                            if tasks.count < free {
                                mayHaveWork = false
                                knownNextDue = try store.nextDue()
                                dataVersion = try store.dataVersion()
                            }
                        } catch {
                            storeFailures += 1
                            logger.error("cannot claim tasks; trying again", metadata: [
                                "error": "\(error)", "failures": "\(storeFailures)",
                            ])
                        }
                    }
                    if options.drain, inFlight == 0, !mayHaveWork, storeFailures == 0,
                       (try? store.hasUnfinishedTasks()) == false {
                        outcome = .drained
                        break
                    }
                }
                if stopping, inFlight == 0 { break }
                if !ticking, !stopping {
                    ticking = true
                    let wait = tickDelay(knownNextDue: mayHaveWork ? nil : knownNextDue, storeFailures: storeFailures)
                    group.addTask { [clock] in
                        try? await clock.sleep(for: wait)
                        return .tick
                    }
                }
                guard let event = await group.next() else { break }
                switch event {
                case .task(let report):
                    inFlight -= 1
                    releaseLease(report.leaseToken)
                    // A slot is free: claim again, even if the last claim drained the due work,
                    // since this task may have been the one holding the last free slot.
                    mayHaveWork = true
                    if let due = report.retryAt { knownNextDue = min(knownNextDue ?? due, due) }
                case .tick:
                    ticking = false
                case .shutdownRequested:
                    if !stopping {
                        stopping = true
                        beginStopping(reason: "graceful shutdown")
                    }
                    let grace = options.shutdownGrace
                    group.addTask { [clock] in
                        try? await clock.sleep(for: grace)
                        return .graceExpired
                    }
                case .graceExpired:
                    if inFlight > 0 {
                        logger.warning("shutdown grace expired; cancelling requests in flight", metadata: ["in_flight": "\(inFlight)"])
                        group.cancelAll()
                    }
                case .shutdownWatchEnded:
                    break
                }
            }
            group.cancelAll()
            return outcome
        }
    }

    private func tickDelay(knownNextDue: Date?, storeFailures: Int) -> Duration {
        if storeFailures > 0 {
            return .milliseconds(min(5_000, 100 << min(storeFailures, 6)))
        }
        var delay = options.idleTick
        if let due = knownNextDue {
            let untilDue = Duration.seconds(max(0.001, due.timeIntervalSince(clock.now())))
            delay = min(delay, untilDue)
        }
        return delay
    }

    private func beginStopping(reason: String) {
        shared.withLock { $0.stopping = true }
        _ = notifier?.stopping()
        logger.info("cleaner stopping; no new requests", metadata: ["reason": "\(reason)"])
    }

    var isStopping: Bool { shared.withLock { $0.stopping } }

    private func registerLease(_ token: String, tasks: Int) {
        shared.withLock {
            $0.leaseTokens[token, default: 0] += tasks
            $0.statistics.inFlight += tasks
            $0.countsDirty = true
        }
    }

    private func releaseLease(_ token: String) {
        shared.withLock { shared in
            shared.statistics.inFlight -= 1
            if let remaining = shared.leaseTokens[token], remaining > 1 {
                shared.leaseTokens[token] = remaining - 1
            } else {
                shared.leaseTokens[token] = nil
            }
        }
    }

    func markCountsDirty() {
        shared.withLock { $0.countsDirty = true }
    }

    static func makeLeaseToken() -> String {
        let high = UInt64.random(in: .min ... .max), low = UInt64.random(in: .min ... .max)
        return hex(high) + hex(low)
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    // MARK: Leases

    /// Returns tasks whose holder died to `pending`, each logged.
    func expireDeadLeases() {
        do {
            let expired = try store.expireLeases(now: clock.now())
            for lease in expired {
                logger.warning("lease expired; task returned to pending", metadata: [
                    "task_id": "\(lease.id)", "export_task_id": "\(lease.exportTaskID)",
                ])
            }
            if !expired.isEmpty {
                shared.withLock {
                    $0.countsDirty = true
                    $0.tasksReturned = true
                }
            }
        } catch {
            logger.error("cannot expire dead leases", metadata: ["error": "\(error)"])
        }
    }
}

extension CredentialCircuit.State {
    var isOpenState: Bool {
        if case .open = self { return true }
        return false
    }
}

extension Duration {
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
