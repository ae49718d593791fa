import Logging
import ServiceLifecycle

/// Pings systemd's watchdog (`WATCHDOG=1`) while, and only while, the work loop is alive.
///
/// Every `interval` (by default the notifier's ``SystemdNotifier/watchdogInterval``, half of
/// `WatchdogSec=`) it asks the ``LivenessMonitor`` whether the work loop beat since the last
/// tick, and pings only if it did. A stuck loop therefore lets the watchdog expire and systemd
/// restarts the service; a warning is logged once per stall, and an info line when it recovers.
///
/// Without a watchdog interval (not under systemd, or `WatchdogSec=` unset) `run()` returns at
/// once. It returns normally on graceful shutdown or cancellation.
public struct WatchdogService<C: Clock>: Service where C.Duration == Duration {
    private let notifier: SystemdNotifier
    private let monitor: LivenessMonitor
    private let interval: Duration?
    private let clock: C
    private let logger: Logger

    /// - Parameters:
    ///   - notifier: where `WATCHDOG=1` is sent.
    ///   - monitor: the work loop's heartbeat.
    ///   - interval: the ping period; `nil` (the default) takes `notifier.watchdogInterval`.
    ///     A zero or negative interval turns the watchdog off.
    ///   - clock: the clock to pace on; tests pass a manual one.
    ///   - logger: receives the stall warning.
    public init(
        notifier: SystemdNotifier,
        monitor: LivenessMonitor,
        interval: Duration? = nil,
        clock: C,
        logger: Logger
    ) {
        self.notifier = notifier
        self.monitor = monitor
        let interval = interval ?? notifier.watchdogInterval
        self.interval = interval.flatMap { $0 > .zero ? $0 : nil }
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        guard let interval else {
            logger.debug("No systemd watchdog requested; watchdog pings are off")
            return
        }
        logger.debug("Systemd watchdog pings on", metadata: ["watchdog.interval": "\(interval)"])
        await cancelWhenGracefulShutdown { [self] in
            await self.pace(every: interval)
        }
    }

    /// Ticks every `interval` from a fixed schedule until cancelled. A tick that comes late
    /// (the process was suspended) starts a new schedule rather than firing a burst.
    private func pace(every interval: Duration) async {
        var deadline = clock.now.advanced(by: interval)
        var stalled = false
        while true {
            do {
                try await clock.sleep(until: deadline, tolerance: nil)
            } catch {
                return  // cancelled: graceful shutdown or the task group ending
            }
            if Task.isCancelled { return }

            if monitor.consumeBeat() {
                notifier.watchdog()
                if stalled {
                    stalled = false
                    logger.info("Work loop is making progress again; watchdog pings resumed")
                }
            } else if !stalled {
                stalled = true
                logger.warning(
                    "Work loop made no progress within the watchdog interval; withholding watchdog pings",
                    metadata: ["watchdog.interval": "\(interval)"]
                )
            }

            deadline = deadline.advanced(by: interval)
            let now = clock.now
            if deadline <= now { deadline = now.advanced(by: interval) }
        }
    }
}

extension WatchdogService where C == ContinuousClock {
    /// A watchdog paced by the continuous clock. It keeps counting across a system suspend
    /// while systemd's watchdog timer (`CLOCK_MONOTONIC`) does not, so after a resume the ping
    /// only comes early, never late.
    public init(
        notifier: SystemdNotifier,
        monitor: LivenessMonitor,
        interval: Duration? = nil,
        logger: Logger
    ) {
        self.init(notifier: notifier, monitor: monitor, interval: interval, clock: ContinuousClock(), logger: logger)
    }
}
