import FoundationEssentials
import Logging
import ServiceLifecycle
import Synchronization

/// The service: works the queue until graceful shutdown (or, with `drain`, until it is empty).
///
/// One work loop claims due tasks in batches, a little ahead of the free slots, and starts a
/// runner per free slot, each a child of one task group; a runner works ready tasks one after
/// another. Each task's failures are caught where they happen and its outcome goes to the
/// group-commit writer, so one bad task never cancels the others. Retries wait in the
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
        /// The queue's file is corrupt: the service stopped claiming and ended.
        case databaseCorrupt
    }

    struct Shared {
        var stopping = false
        /// Lease tokens of the tasks claimed and not yet committed, and how many each.
        var leaseTokens: [String: Int] = [:]
        var statistics = CleanerStatistics()
        var countsDirty = true
        /// The work loop's events, while `run()` runs. Expired leases are announced here: this
        /// service's own writes do not change `PRAGMA data_version`.
        var events: AsyncStream<LoopEvent>.Continuation?
    }

    let options: CleanerOptions
    /// The queue store; its calls run off the cooperative pool.
    let database: BlockingStore
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
        self.database = BlockingStore(store: store)
        self.transport = transport
        self.retry = retry
        self.clock = clock
        self.random = random
        self.notifier = notifier
        self.liveness = liveness
        self.logger = logger
        self.traffic = TrafficControl(rate: options.maxRequestsPerSecond, concurrency: options.concurrency)
        self.recorder = OutcomeRecorder(store: database, clock: clock, logger: logger)
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
        let (events, sink) = AsyncStream.makeStream(of: LoopEvent.self)
        shared.withLock { $0.events = sink }
        defer { shared.withLock { $0.events = nil } }
        await expireDeadLeases()
        _ = notifier?.ready()
        logger.info("cleaner started", metadata: [
            "concurrency": "\(options.concurrency)", "max_requests_per_second": "\(options.maxRequestsPerSecond)",
            "drain": "\(options.drain)",
        ])

        let outcome = await withTaskGroup(of: Void.self, returning: RunOutcome.self) { background in
            background.addTask { await self.recorder.run { batch in self.committed(batch, events: sink) } }
            background.addTask { await self.housekeeping(startedAt: startedAt) }
            let outcome = await self.workLoop(events: events, sink: sink)
            self.recorder.finish()
            // The recorder has nothing left to write: the work loop waited for every commit.
            background.cancelAll()
            return outcome
        }
        finalOutcome.withLock { $0 = outcome }
        do { try await database.run { try $0.removeHeartbeat() } } catch {
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
        if outcome == .databaseCorrupt {
            throw CleanerError.runtime(
                "database: the queue is corrupt, so the service stopped (outcomes it could not write are in the log, one line each); restore it from a backup, or recover what is left with `sqlite3 FILE .recover`")
        }
    }

    // MARK: The work loop

    enum LoopEvent: Sendable {
        /// A runner gave back its slot.
        case slotFreed
        /// Few claimed tasks are left for the runners.
        case runningLow
        /// A batch of outcomes is written: `count` claimed tasks are done; some may be due
        /// again (retries, tasks given back) from `dueAgain` on.
        case committed(count: Int, dueAgain: Date?)
        /// Tasks may be claimable that were not (dead leases were expired).
        case tasksReturned
        case tick
        case shutdownRequested
        case graceExpired
    }

    /// Tasks claimed ahead of free slots, so that a freed slot starts its next request at once
    /// and claims are made in batches rather than one task at a time.
    private var prefetch: Int { max(1, min(options.concurrency, 64) / 2) }

    /// The one place tasks are claimed and runners started. Claimed tasks wait in `ready` until
    /// a runner takes them; runners are children of one task group and hand each outcome to
    /// the recorder. `held` counts the tasks claimed and not yet committed: the loop ends only
    /// when it is zero, so no outcome is left unwritten.
    private func workLoop(events: AsyncStream<LoopEvent>, sink: AsyncStream<LoopEvent>.Continuation) async -> RunOutcome {
        await withDiscardingTaskGroup(returning: RunOutcome.self) { group in
            group.addTask {
                // Throws only when the loop is over (cancelled): nothing to report then.
                guard (try? await gracefulShutdown()) != nil else { return }
                sink.yield(.shutdownRequested)
            }
            var iterator = events.makeAsyncIterator()
            let ready = ReadyTasks()
            var reportedInFlight = 0
            var held = 0
            var ticking = false
            var stopping = false
            var outcome = RunOutcome.stopped
            // Whether the queue may hold due work we have not claimed.
            var mayHaveWork = true
            var knownNextDue: Date?
            var dataVersion = (try? await database.run { try $0.dataVersion() }) ?? 0
            var storeFailures = 0
            var pollDue = false
            let prefetch = self.prefetch

            func stop(_ reason: String) {
                stopping = true
                beginStopping(reason: reason)
                // Claimed but never started: back to pending.
                recorder.submit(contentsOf: ready.close().map { releasing($0, reason: "shutting down") })
            }

            while true {
                liveness?.beat()
                if !stopping, options.drain, traffic.snapshot.circuit.isOpenState {
                    outcome = .credentialsRefused
                    stop("credentials refused while draining")
                }
                if !stopping {
                    let now = clock.now()
                    if !mayHaveWork, let due = knownNextDue, due <= now { mayHaveWork = true }
                    if !mayHaveWork, pollDue {
                        // Once a tick: has another connection changed the database?
                        pollDue = false
                        if let version = try? await database.run({ try $0.dataVersion() }), version != dataVersion {
                            dataVersion = version
                            mayHaveWork = true
                            markCountsDirty()
                        }
                    }
                    let slots = traffic.freeSlots(inFlight: ready.inFlight, now: clock.instant())
                    // Nothing is claimed ahead until an answer shows the credentials work.
                    let ahead = slots.verified ? prefetch : 0
                    let waiting = ready.count
                    if mayHaveWork, slots.free + ahead > 0, waiting < slots.free + ahead / 2 {
                        let limit = slots.free + ahead - waiting
                        do {
                            let token = Self.makeLeaseToken()
                            let claim = try await self.claim(limit: limit, leaseToken: token, now: now)
                            let tasks = claim.tasks
                            storeFailures = 0
                            if !tasks.isEmpty {
                                registerLease(token, tasks: tasks.count)
                                held += tasks.count
                                var valid: [ClaimedTask] = []
                                valid.reserveCapacity(tasks.count)
                                for task in tasks {
                                    if let problem = task.problem {
                                        // Written by another tool without validation: never sent.
                                        recorder.submit(TaskTransition(
                                            task: task, change: .finish(.invalid),
                                            audit: AuditRecord(outcome: .invalid, at: now, errorMessage: problem)))
                                    } else {
                                        valid.append(task)
                                    }
                                }
                                ready.append(contentsOf: valid)
                            }
                            if let shortfall = claim.shortfall {
                                // Nothing more is due now: wait for the next due task, or
                                // for another connection to change the database.
                                mayHaveWork = false
                                knownNextDue = shortfall.nextDue
                                dataVersion = shortfall.dataVersion
                            }
                        } catch let error as SQLiteError where error.isCorruption {
                            // Trying again cannot help; nothing more is sent.
                            logger.critical("the queue is corrupt; stopping", metadata: ["error": "\(error)"])
                            outcome = .databaseCorrupt
                            stop("database corrupt")
                        } catch {
                            storeFailures += 1
                            logger.error("cannot claim tasks; trying again", metadata: [
                                "error": "\(error)", "failures": "\(storeFailures)",
                            ])
                        }
                    }
                    for _ in 0..<slots.free {
                        guard let first = ready.startRunner() else { break }
                        group.addTask { await self.runner(first, ready: ready, prefetch: prefetch, events: sink) }
                    }
                    if options.drain, held == 0, !mayHaveWork, storeFailures == 0,
                       (try? await database.run({ try $0.hasUnfinishedTasks() })) == false {
                        outcome = .drained
                        break
                    }
                }
                if stopping, held == 0 { break }
                let inFlight = ready.inFlight
                if inFlight != reportedInFlight {
                    reportedInFlight = inFlight
                    shared.withLock { $0.statistics.inFlight = inFlight }
                }
                if !ticking, !stopping {
                    ticking = true
                    let wait = tickDelay(knownNextDue: mayHaveWork ? nil : knownNextDue, storeFailures: storeFailures)
                    group.addTask { [clock] in
                        try? await clock.sleep(for: wait)
                        sink.yield(.tick)
                    }
                }
                // nil only when the service is cancelled outright.
                guard let event = await iterator.next() else { break }
                switch event {
                case .slotFreed, .runningLow:
                    break
                case .committed(let count, let dueAgain):
                    held -= count
                    if let due = dueAgain { knownNextDue = min(knownNextDue ?? due, due) }
                case .tasksReturned:
                    mayHaveWork = true
                case .tick:
                    ticking = false
                    pollDue = true
                case .shutdownRequested:
                    if !stopping { stop("graceful shutdown") }
                    let grace = options.shutdownGrace
                    group.addTask { [clock] in
                        try? await clock.sleep(for: grace)
                        sink.yield(.graceExpired)
                    }
                case .graceExpired:
                    let inFlight = ready.inFlight
                    if inFlight > 0 {
                        logger.warning("shutdown grace expired; cancelling requests in flight", metadata: ["in_flight": "\(inFlight)"])
                        group.cancelAll()
                    }
                }
            }
            shared.withLock { $0.statistics.inFlight = 0 }
            group.cancelAll()
            return outcome
        }
    }

    /// What a claim found: the tasks, and when fewer were due than asked for, what the loop
    /// needs to wait well (read in the same trip to the database).
    private struct Claim: Sendable {
        struct Shortfall: Sendable {
            var nextDue: Date?
            var dataVersion: Int
        }

        var tasks: [ClaimedTask]
        var shortfall: Shortfall?
    }

    private func claim(limit: Int, leaseToken: String, now: Date) async throws -> Claim {
        let until = now.addingTimeInterval(options.leaseDuration.timeInterval)
        return try await database.run { store in
            let tasks = try store.claim(limit: limit, leaseToken: leaseToken, leaseUntil: until, now: now)
            guard tasks.count < limit else { return Claim(tasks: tasks) }
            return Claim(tasks: tasks, shortfall: .init(nextDue: try store.nextDue(), dataVersion: try store.dataVersion()))
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
            $0.countsDirty = true
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
    func expireDeadLeases() async {
        do {
            let now = clock.now()
            let expired = try await database.run { try $0.expireLeases(now: now) }
            for lease in expired {
                logger.warning("lease expired; task returned to pending", metadata: [
                    "task_id": "\(lease.id)", "export_task_id": "\(lease.exportTaskID)",
                ])
            }
            if !expired.isEmpty {
                let events = shared.withLock {
                    $0.countsDirty = true
                    return $0.events
                }
                events?.yield(.tasksReturned)
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
