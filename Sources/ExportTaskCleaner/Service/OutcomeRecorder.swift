import Logging
import Synchronization

/// Writes outcomes to the queue in batched transactions (group commit).
///
/// Each delete task hands its transition to `record` and waits until it is committed; while
/// one batch is being written, the next one gathers. A failed write (busy beyond the timeout,
/// disk full) is retried with backoff: an outcome the server already confirmed is never
/// dropped while the task's lease is held.
final class OutcomeRecorder: Sendable {
    private typealias Waiter = (transition: TaskTransition, continuation: CheckedContinuation<Bool, Never>)

    private let store: any QueueStore
    private let clock: any ServiceClock
    private let logger: Logger
    private let pending = Mutex<[Waiter]>([])
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    /// Transitions per transaction at most.
    static let maximumBatch = 512

    init(store: any QueueStore, clock: any ServiceClock, logger: Logger) {
        self.store = store
        self.clock = clock
        self.logger = logger
        (wakeups, wake) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Commits `transition` with its audit row; returns false when its lease was no longer held.
    func record(_ transition: TaskTransition) async -> Bool {
        await withCheckedContinuation { continuation in
            pending.withLock { $0.append((transition, continuation)) }
            wake.yield()
        }
    }

    /// The writer: runs until `finish()`, then writes whatever is still waiting.
    func run() async {
        for await _ in wakeups {
            await writePending()
        }
        await writePending()
    }

    func finish() {
        wake.finish()
    }

    private func writePending() async {
        while true {
            let batch: [Waiter] = pending.withLock { waiting in
                let count = min(waiting.count, Self.maximumBatch)
                defer { waiting.removeFirst(count) }
                return Array(waiting.prefix(count))
            }
            guard !batch.isEmpty else { return }
            let applied = await write(batch.map(\.transition))
            for (waiter, held) in zip(batch, applied) {
                waiter.continuation.resume(returning: held)
            }
        }
    }

    private func write(_ transitions: [TaskTransition]) async -> [Bool] {
        var failures = 0
        while true {
            do {
                let applied = try store.apply(transitions)
                if failures > 0 {
                    logger.notice("outcomes written after retrying", metadata: ["outcomes": "\(transitions.count)", "failures": "\(failures)"])
                }
                return applied
            } catch {
                failures += 1
                let delay = Duration.milliseconds(min(5_000, 50 << min(failures, 7)))
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
                    return Array(repeating: false, count: transitions.count)
                }
            }
        }
    }
}
