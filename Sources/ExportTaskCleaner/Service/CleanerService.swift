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
        /// Graceful shutdown was asked for; the work loop may not have taken it up yet.
        var shutdownPending = false
        /// The leases of the tasks claimed and not yet committed.
        var leases = HeldLeases()
        var statistics = CleanerStatistics()
        var countsDirty = true
        /// What the last refusal's answer said, for the status line: its error code, and the
        /// likely cause when it names one (the local clock off).
        var refusal: String?
        /// The work loop's events, while `run()` runs. Expired leases are announced here: this
        /// service's own writes do not change `PRAGMA data_version`.
        var events: AsyncStream<LoopEvent>.Continuation?
        /// A sweep is configured and its first has not ended (``sweepLoop(_:)``).
        var firstSweepPending = false
    }

    let options: CleanerOptions
    /// The queue store: whichever it is, the service sees only ``WorkQueue``.
    let database: any WorkQueue
    let transport: any IoTDATransport
    /// The retry policy; a reload may replace it.
    private let retryPolicy: Mutex<any RetryStrategy>
    var retry: any RetryStrategy { retryPolicy.withLock { $0 } }
    func replaceRetry(_ retry: any RetryStrategy) { retryPolicy.withLock { $0 = retry } }
    /// The credentials the transport signs with, when the caller shares them: the service
    /// pauses when temporary ones expire, and probes at once when new ones arrive.
    let credentials: CredentialProvider?
    /// Reads the credential source again after a refusal and before a probe.
    let credentialSource: CredentialSourceReader?
    /// Where requests, their durations and the queue's counts are recorded (`metrics.listen`).
    let metrics: ServiceMetrics?
    /// Requests sent and not yet answered (`in_flight`).
    let requestsInFlight = Atomic<Int>(0)
    let clock: any ServiceClock
    let random: any RandomSource
    let notifier: SystemdNotifier?
    let liveness: LivenessMonitor?
    /// The periodic sweep, when configured (`sweep`).
    let sweeping: Sweeping?
    let logger: Logger
    let traffic: TrafficControl
    let recorder: OutcomeRecorder
    /// Claimed tasks waiting for a runner, and the slots in use (the work loop's; a sweep
    /// borrows one for each list request).
    let readyTasks = ReadyTasks()
    let shared = Mutex(Shared())
    private let finalOutcome = Mutex<RunOutcome?>(nil)
    /// A service runs once: its recorder and event stream are finished when it ends.
    private let hasRun = Atomic<Bool>(false)
    /// `READY=1` was sent: a reload may say `RELOADING=1` … `READY=1` from then on.
    let isReady = Atomic<Bool>(false)

    public init(options: CleanerOptions, store: any WorkQueue, transport: any IoTDATransport,
                retry: any RetryStrategy, clock: any ServiceClock = SystemClock(),
                random: any RandomSource = SystemRandomSource(), notifier: SystemdNotifier? = nil,
                liveness: LivenessMonitor? = nil, credentials: CredentialProvider? = nil,
                credentialSource: CredentialSourceReader? = nil, metrics: ServiceMetrics? = nil,
                sweeping: Sweeping? = nil, logger: Logger) {
        self.options = options
        self.database = store
        self.transport = transport
        self.retryPolicy = Mutex(retry)
        self.credentials = credentials
        self.credentialSource = credentialSource
        self.metrics = metrics
        self.clock = clock
        self.random = random
        self.notifier = notifier
        self.liveness = liveness
        self.sweeping = sweeping
        self.logger = logger
        var beforeProbe: (@Sendable () -> Void)?
        if let credentialSource { beforeProbe = { credentialSource.beforeProbe() } }
        self.traffic = TrafficControl(rate: options.maxRequestsPerSecond, concurrency: options.concurrency,
                                      beforeProbe: beforeProbe)
        self.recorder = OutcomeRecorder(store: database, clock: clock, logger: logger, groupCommitWait: options.groupCommitWait)
    }

    /// What the service has done so far.
    public var statistics: CleanerStatistics {
        var statistics = shared.withLock { $0.statistics }
        // One definition of in flight for `status`, `STATUS=`, the log and the metrics:
        // requests on the wire, not tasks that runners hold (docs/metrics.md, "Metrics").
        statistics.inFlight = requestsInFlight.load(ordering: .relaxed)
        return statistics
    }

    /// How the last `run()` ended.
    public var outcome: RunOutcome? {
        finalOutcome.withLock { $0 }
    }

    /// Runs until graceful shutdown, or with `drain` until the queue is empty.
    /// Throws `CleanerError` with code `.credentialsRefused` when draining stopped on a 401.
    /// A service runs once: a second call throws at once rather than wait on a finished stream.
    public func run() async throws {
        guard !hasRun.exchange(true, ordering: .acquiringAndReleasing) else {
            throw CleanerError.runtime("this CleanerService has already run; make a new one to run again")
        }
        let startedAt = clock.now()
        let (events, sink) = AsyncStream.makeStream(of: LoopEvent.self)
        shared.withLock {
            $0.events = sink
            $0.firstSweepPending = sweeping != nil
        }
        credentials?.setListener { [weak self] change in self?.credentialsChanged(change) }
        defer {
            credentials?.setListener(nil)
            shared.withLock { $0.events = nil }
        }
        await expireDeadLeases()
        _ = notifier?.ready()
        isReady.store(true, ordering: .releasing)
        logger.info("cleaner started", metadata: [
            "concurrency": "\(options.concurrency)", "max_requests_per_second": "\(options.maxRequestsPerSecond)",
            "drain": "\(options.drain)",
        ])

        // The recorder runs in a task of its own, out of cancellation's reach: cancelling the
        // service must not drop an outcome the server confirmed (docs/operations.md, "Behaviour under
        // failures"). It ends once finished below.
        let recording = Task { await self.recorder.run { batch, written in self.committed(batch, written: written, events: sink) } }
        let outcome = await withTaskGroup(of: Void.self, returning: RunOutcome.self) { background in
            background.addTask { await self.housekeeping(startedAt: startedAt) }
            if let sweeping = self.sweeping { background.addTask { await self.sweepLoop(sweeping) } }
            let outcome = await self.workLoop(events: events, sink: sink)
            // Normally nothing is left to write: the work loop waited for every commit. Cut
            // off (cancelled, or past the shutdown deadline), each waiting batch is tried once
            // more; housekeeping keeps renewing the leases meanwhile.
            self.recorder.finish(deadline: self.clock.instant())
            await recording.value
            background.cancelAll()
            return outcome
        }
        finalOutcome.withLock { $0 = outcome }
        let unwritten = recorder.unwritten
        // The metrics' task counts as the run leaves them.
        if metrics != nil, let counts = try? await database.counts() {
            await updateMetrics(counts: counts)
        }
        if unwritten == 0 {
            do { try await database.removeHeartbeat() } catch {
                logger.warning("cannot remove the heartbeat", metadata: ["error": "\(error)"])
            }
        }
        // Otherwise the database refuses writes: another would only block for its busy
        // timeout. `status` shows the heartbeat as stale after 30 s.
        let statistics = self.statistics
        logger.info("cleaner stopped", metadata: [
            "outcome": "\(outcome)", "requests": "\(statistics.requests)", "finished": "\(statistics.finished)",
            "retries": "\(statistics[.retry])", "transactions": "\(database.writeTransactions)",
        ])
        if unwritten > 0, outcome != .databaseCorrupt {
            throw CleanerError.runtime(
                "\(unwritten) outcomes of requests sent could not be written to the queue (each is in the log: task, request ID, outcome); reconcile them with the server before requeueing those tasks")
        }
        if outcome == .credentialsRefused {
            throw CleanerError(.credentialsRefused,
                               "the service refused our credentials (\(credentials?.description ?? options.credentialsDescription)); the tasks were left pending")
        }
        if outcome == .databaseCorrupt {
            throw CleanerError.runtime(
                "database: the queue is corrupt, so the service stopped (outcomes it could not write are in the log, one line each); restore it from a backup (of a SQLite queue, `sqlite3 FILE .recover` saves what is left)")
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
        /// Outcomes could not be written: the file is corrupt.
        case storeCorrupt
        case tick
        /// Graceful shutdown was asked for at this time (the loop may take it up later, after a
        /// write that blocked).
        case shutdownRequested(at: Date)
        case graceExpired
        /// Outcomes still unwritten this long after the grace period are given up on.
        case writeDeadlinePassed
        /// A reload set this concurrency and rate.
        case reconfigured(concurrency: Int, rate: Double)
        /// New credentials arrived.
        case credentialsChanged
    }

    var isStopping: Bool { shared.withLock { $0.stopping } }

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
            let expired = try await database.expireLeases(now: now)
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
