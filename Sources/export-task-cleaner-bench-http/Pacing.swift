import ExportTaskCleaner
import NIOCore

/// Even spacing from a start a little ahead: slot `index` (from 1) is `index` intervals after it.
struct Pacing: Sendable {
    let interval: TimeAmount
    /// How far ahead of now the start is: time to set up before the first slot.
    let untilStart = TimeAmount.milliseconds(10)
    private let start: ContinuousClock.Instant

    init(rate: Int) {
        interval = .nanoseconds(1_000_000_000 / Int64(rate))
        start = .now + .nanoseconds(untilStart.nanoseconds)
    }

    func slot(_ index: Int) -> ContinuousClock.Instant {
        start + .nanoseconds(interval.nanoseconds * Int64(index))
    }

    /// Seconds from the start until now.
    var elapsed: Double { (ContinuousClock.now - start).timeInterval }
}
