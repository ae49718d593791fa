import Synchronization

/// Tells the watchdog whether the work loop is still making progress.
///
/// The work loop calls ``beat()`` on every iteration, including idle ones that only poll the
/// queue; ``WatchdogService`` calls ``consumeBeat()`` once per watchdog interval and pings
/// systemd only when there was a beat since its previous call. A loop that hangs stops beating,
/// the pings stop, and systemd restarts the service after `WatchdogSec=`.
public final class LivenessMonitor: Sendable {
    private let beaten: Atomic<Bool>

    /// - Parameter beaten: whether a beat is already counted before the first ``beat()``;
    ///   `false` by default, so a loop that never starts never counts as alive.
    public init(beaten: Bool = false) {
        self.beaten = Atomic(beaten)
    }

    /// Records that the work loop went round once. Cheap and lock-free: call it freely.
    public func beat() {
        beaten.store(true, ordering: .releasing)
    }

    /// Whether there was a beat since the previous call, and starts a new period.
    public func consumeBeat() -> Bool {
        beaten.exchange(false, ordering: .acquiringAndReleasing)
    }
}
