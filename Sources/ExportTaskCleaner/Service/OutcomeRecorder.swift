import Logging
import Synchronization

/// Writes outcomes to the queue in batched transactions (group commit).
///
/// A delete task hands its transition to `submit` and is done: its request slot is free again
/// at once, while the outcome waits for the next batch. While one batch is being written, the
/// next one gathers. After each batch, `run`'s `committed` handler learns which transitions
/// were applied (their lease still held; where it did not, an answer still got its audit row).
///
/// An outcome the server confirmed is never dropped (docs/operations.md, "Behaviour under failures"): a
/// failed write (busy beyond the timeout, disk full) is retried with backoff for as long as the
/// service runs, and the writes are shielded from cancellation. Only past the deadline that
/// `finish(deadline:)` sets does a write that keeps failing get given up, with each outcome
/// logged, one line each, and counted in `unwritten`. A corrupt file is not written again: each
/// outcome goes to the log at once.
final class OutcomeRecorder: Sendable {
    /// How a batch ended.
    enum Written: Sendable, Equatable {
        /// In the database (`held` says, for each, whether its lease still held).
        case written
        /// Nothing was written: the file is corrupt; each outcome is in the log, and the service
        /// must stop.
        case corrupt
        /// Nothing was written: writes kept failing past the deadline; each outcome is in the log.
        case abandoned
    }

    /// One batch: each transition with whether its lease still held (false when not written).
    typealias Committed = @Sendable (_ batch: [(transition: TaskTransition, held: Bool)], _ written: Written) -> Void

    private struct State {
        var pending: [TaskTransition] = []
        /// When the oldest waiting outcome was submitted: the group commit's wait counts from it.
        var oldestSubmitted: ContinuousClock.Instant?
        /// Set by `finish`: past it, a write that fails is not tried again.
        var deadline: ContinuousClock.Instant?
        /// Outcomes of requests given up on: the service must not exit 0.
        var unwritten = 0
    }

    private let store: any WorkQueue
    private let clock: any ServiceClock
    private let logger: Logger
    /// Whether more outcomes are expected soon (other runners hold tasks, the service is not
    /// stopping): only then does a small batch wait for company. Set by the work loop; a
    /// ``Callback``, since a closure read out of a lock directly grows with every read.
    private let moreExpected = Mutex<Callback<Bool>?>(nil)
    /// Ends the group commit's wait early: enough outcomes, a stop, the end.
    private let flush = FlushSignal()
    private let state = Mutex(State())
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    /// Transitions per transaction at most.
    static let maximumBatch = Tuning.recorderBatch

    /// The group commit's longest wait (``Tuning/groupCommitWait``; zero: none).
    private let groupCommitWait: Duration

    init(store: any WorkQueue, clock: any ServiceClock, logger: Logger, groupCommitWait: Duration = Tuning.groupCommitWait) {
        self.store = store
        self.clock = clock
        self.logger = logger
        self.groupCommitWait = groupCommitWait
        (wakeups, wake) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Tells the writer whether more outcomes are on their way (nil: never wait).
    func setMoreExpected(_ predicate: (@Sendable () -> Bool)?) {
        moreExpected.withLock { $0 = predicate.map(Callback.init) }
    }

    /// Whether more outcomes are on their way: what each gather asks.
    func moreOutcomesExpected() -> Bool {
        moreExpected.withLock { $0 }?.call() ?? false
    }

    /// Queues `transition` for the next batch.
    func submit(_ transition: TaskTransition) {
        submit(contentsOf: [transition])
    }

    /// Queues several transitions for the next batch.
    func submit(contentsOf transitions: [TaskTransition]) {
        guard !transitions.isEmpty else { return }
        let now = clock.instant()
        let enough = state.withLock { state in
            if state.pending.isEmpty { state.oldestSubmitted = now }
            state.pending.append(contentsOf: transitions)
            return state.pending.count >= Tuning.groupCommitEnough
        }
        if enough { flush.raise() }
        wake.yield()
    }

    /// Writes what waits at once: the service is stopping.
    func flushNow() {
        flush.raise()
    }

    /// Outcomes with a request that were given up on at the deadline, or not written to a
    /// corrupt file.
    var unwritten: Int { state.withLock { $0.unwritten } }

    /// The writer: runs until `finish(deadline:)`, then writes whatever is still waiting. Run it
    /// where cancellation cannot reach it (the service runs it in a task of its own); it ends
    /// by itself once finished.
    func run(committed: Committed) async {
        for await _ in wakeups {
            await gather()
            await writePending(committed)
        }
        await writePending(committed)
    }

    /// No more outcomes will come: write what is waiting, retrying failed writes until
    /// `deadline`, then end. Each batch is tried at least once, until one fails past the
    /// deadline: the rest are then given up on at once.
    func finish(deadline: ContinuousClock.Instant) {
        state.withLock { $0.deadline = deadline }
        flush.raise()
        wake.finish()
    }

    /// Group commit at a low rate: a few outcomes, with more on their way, wait a little
    /// (``Tuning/groupCommitWait``) so that one transaction writes them together. Not once
    /// the service stops (`moreExpected` says no), nor when enough are waiting.
    private func gather() async {
        let (waiting, finishing, since) = state.withLock { ($0.pending.count, $0.deadline != nil, $0.oldestSubmitted) }
        guard !finishing, waiting > 0, waiting < Tuning.groupCommitEnough, moreOutcomesExpected() else { return }
        // Counted from the oldest outcome's submission, and ended early by enough outcomes, a
        // stop or the end: no confirmed outcome waits longer than the bound.
        let left = groupCommitWait - (clock.instant() - (since ?? clock.instant()))
        guard left > .zero else { return }
        await flush.wait(atMost: left, clock: clock)
    }

    private func writePending(_ committed: Committed) async {
        var abandoning = false
        while true {
            let batch: [TaskTransition] = state.withLock { state in
                guard state.pending.count > Self.maximumBatch else {
                    defer { state.pending.removeAll(keepingCapacity: true) }
                    return state.pending
                }
                defer { state.pending.removeFirst(Self.maximumBatch) }
                return Array(state.pending.prefix(Self.maximumBatch))
            }
            guard !batch.isEmpty else { return }
            if abandoning {
                // A write already failed past the deadline: each further try would block for
                // SQLite's busy timeout again, and the stop must stay bounded.
                giveUp(batch, message: "outcome not written: writes kept failing past the shutdown deadline", error: nil)
                committed(batch.map { ($0, false) }, .abandoned)
                continue
            }
            let (held, written) = await write(batch)
            abandoning = written == .abandoned
            committed(Array(zip(batch, held)), written)
        }
    }

    /// Writes a batch, retrying until it is written, the file is found corrupt, or the
    /// deadline has passed.
    private func write(_ transitions: [TaskTransition]) async -> (held: [Bool], written: Written) {
        var failures = 0
        while true {
            do {
                // In a task of its own, so that cancelling the recorder cannot cut a write short
                // (docs/operations.md, "Behaviour under failures").
                let applied = try await Task { [store] in try await store.apply(transitions) }.value
                if failures > 0 {
                    logger.notice("outcomes written after retrying", metadata: ["outcomes": "\(transitions.count)", "failures": "\(failures)"])
                }
                return (applied, .written)
            } catch let error as StoreError where error.isCorruption {
                // Writing again cannot help.
                giveUp(transitions, message: "outcome not written: the queue is corrupt", error: error)
                return (Array(repeating: false, count: transitions.count), .corrupt)
            } catch {
                failures += 1
                let now = clock.instant()
                let deadline = state.withLock { $0.deadline }
                if let deadline, now >= deadline {
                    giveUp(transitions, message: "outcome not written: writes kept failing past the shutdown deadline", error: error)
                    return (Array(repeating: false, count: transitions.count), .abandoned)
                }
                var delay = Tuning.recorderRetryDelay(failures: failures)
                if let deadline { delay = min(delay, deadline - now) }
                logger.error("cannot write outcomes; retrying", metadata: [
                    "outcomes": "\(transitions.count)", "failures": "\(failures)",
                    "retry_in_ms": "\(delay.milliseconds)", "error": "\(error)",
                ])
                do {
                    try await clock.sleep(for: delay)
                } catch {
                    // Only a caller that cancels the recorder's own task gets here: then the
                    // deadline is now, and the next failure is the last.
                    state.withLock { $0.deadline = min($0.deadline ?? now, now) }
                }
            }
        }
    }

    /// Logs each outcome that will not be written, one line each, so that an operator can
    /// reconcile what the server did with what the queue says.
    private func giveUp(_ transitions: [TaskTransition], message: Logger.Message, error: (any Error)?) {
        var requests = 0
        for transition in transitions {
            let audit = transition.audit
            guard audit.hasRequest else {
                // Nothing was sent for it: nothing to reconcile; its lease lapses.
                logger.warning("task not given back", metadata: [
                    "task_id": "\(transition.task.id)", "export_task_id": "\(transition.task.exportTaskID)",
                ])
                continue
            }
            requests += 1
            logger.critical(message, metadata: [
                "task_id": "\(transition.task.id)", "export_task_id": "\(transition.task.exportTaskID)",
                "attempt": "\(audit.attempt.map(String.init) ?? "-")",
                "outcome": "\(audit.outcome.rawValue)", "http_status": "\(audit.httpStatus.map(String.init) ?? "-")",
                "request_id": "\(audit.requestID ?? "-")", "delivery": "\(audit.delivery?.rawValue ?? "-")",
                "error": "\(error.map { "\($0)" } ?? "not tried again: an earlier write failed past the deadline")",
            ])
        }
        state.withLock { $0.unwritten += requests }
    }
}
