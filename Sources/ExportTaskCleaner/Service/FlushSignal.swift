import Synchronization

/// Ends a wait early: the group commit's wait for company ends when enough outcomes are
/// waiting, when the service stops, or when the writer is finished (docs/operations.md, "Behaviour under
/// failures": shutdown writes at once).
final class FlushSignal: Sendable {
    private struct State {
        var raised = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    /// Wakes the waiter, or the next one if none waits now.
    func raise() {
        let waiter = state.withLock { state in
            state.raised = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Forgets a raise that came while nobody waited for it (the batch it was about is written).
    func lower() {
        state.withLock { $0.raised = false }
    }

    /// Waits at most `limit` on `clock`, or until raised (or cancelled). One waiter at a time.
    func wait(atMost limit: Duration, clock: any ServiceClock) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await clock.sleep(for: limit) }
            group.addTask { await self.waitRaised() }
            await group.next()
            group.cancelAll()
            // A raise that ended the other child is taken now, so it cannot end the next wait.
            self.lower()
        }
    }

    private func waitRaised() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.raised || Task.isCancelled { return true }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            raise()
        }
    }
}
