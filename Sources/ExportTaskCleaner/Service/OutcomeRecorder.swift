import Logging
import Synchronization

/// Writes outcomes to the queue in batched transactions (group commit).
///
/// A delete task hands its transition to `submit` and is done: its request slot is free again
/// at once, while the outcome waits for the next batch. While one batch is being written, the
/// next one gathers. After each batch, `run`'s `committed` handler learns which transitions
/// were applied (their lease still held) and which were discarded (a stale writer). A failed
/// write (busy beyond the timeout, disk full) is retried with backoff: an outcome the server
/// already confirmed is never dropped while the task's lease is held and the service runs. A
/// corrupt file is not written again: each outcome goes to the log instead.
final class OutcomeRecorder: Sendable {
    /// One written batch: each transition with whether its lease still held.
    /// `corrupt`: the file is corrupt, so nothing of the batch was written (each outcome is
    /// in the log) and the service must stop.
    typealias Committed = @Sendable (_ batch: [(transition: TaskTransition, held: Bool)], _ corrupt: Bool) -> Void

    private let store: BlockingStore
    private let clock: any ServiceClock
    private let logger: Logger
    private let pending = Mutex<[TaskTransition]>([])
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    /// Transitions per transaction at most.
    static let maximumBatch = Tuning.recorderBatch

    init(store: BlockingStore, clock: any ServiceClock, logger: Logger) {
        self.store = store
        self.clock = clock
        self.logger = logger
        (wakeups, wake) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Queues `transition` for the next batch.
    func submit(_ transition: TaskTransition) {
        pending.withLock { $0.append(transition) }
        wake.yield()
    }

    /// Queues several transitions for the next batch.
    func submit(contentsOf transitions: [TaskTransition]) {
        guard !transitions.isEmpty else { return }
        pending.withLock { $0.append(contentsOf: transitions) }
        wake.yield()
    }

    /// The writer: runs until `finish()`, then writes whatever is still waiting.
    func run(committed: Committed) async {
        for await _ in wakeups {
            await writePending(committed)
        }
        await writePending(committed)
    }

    func finish() {
        wake.finish()
    }

    private func writePending(_ committed: Committed) async {
        while true {
            let batch: [TaskTransition] = pending.withLock { waiting in
                guard waiting.count > Self.maximumBatch else {
                    defer { waiting.removeAll(keepingCapacity: true) }
                    return waiting
                }
                defer { waiting.removeFirst(Self.maximumBatch) }
                return Array(waiting.prefix(Self.maximumBatch))
            }
            guard !batch.isEmpty else { return }
            let applied = await write(batch)
            committed(Array(zip(batch, applied.held)), applied.corrupt)
        }
    }

    /// Writes a batch; for each transition whether its lease held, and whether the file is
    /// corrupt (then nothing was written).
    private func write(_ transitions: [TaskTransition]) async -> (held: [Bool], corrupt: Bool) {
        var failures = 0
        while true {
            do {
                let applied = try await store.run { try $0.apply(transitions) }
                if failures > 0 {
                    logger.notice("outcomes written after retrying", metadata: ["outcomes": "\(transitions.count)", "failures": "\(failures)"])
                }
                return (applied, false)
            } catch let error as SQLiteError where error.isCorruption {
                // Writing again cannot help. Each outcome goes to the log, so that an operator
                // can reconcile what the server did with what the queue says.
                for transition in transitions {
                    guard transition.audit.delivery != nil else {
                        // Nothing was sent for it: nothing to reconcile; its lease lapses.
                        logger.warning("task not given back: the queue is corrupt", metadata: [
                            "task_id": "\(transition.task.id)", "export_task_id": "\(transition.task.exportTaskID)",
                        ])
                        continue
                    }
                    logger.critical("outcome not written: the queue is corrupt", metadata: [
                        "task_id": "\(transition.task.id)", "export_task_id": "\(transition.task.exportTaskID)",
                        "outcome": "\(transition.audit.outcome.rawValue)", "http_status": "\(transition.audit.httpStatus.map(String.init) ?? "-")",
                        "request_id": "\(transition.audit.requestID ?? "-")", "error": "\(error)",
                    ])
                }
                return (Array(repeating: false, count: transitions.count), true)
            } catch {
                failures += 1
                let delay = Tuning.recorderRetryDelay(failures: failures)
                logger.error("cannot write outcomes; retrying", metadata: [
                    "outcomes": "\(transitions.count)", "failures": "\(failures)",
                    "retry_in_ms": "\(delay.milliseconds)", "error": "\(error)",
                ])
                do {
                    try await clock.sleep(for: delay)
                } catch {
                    // Cancelled: the service is being torn down. The leases will expire and the
                    // tasks go back to pending; a repeated DELETE is safe.
                    logger.critical("outcomes not written: cancelled while retrying", metadata: ["outcomes": "\(transitions.count)"])
                    return (Array(repeating: false, count: transitions.count), false)
                }
            }
        }
    }
}
