/// Spaces request starts evenly, `1.01 / rate` seconds apart, so that no one-second window
/// holds more than `rate` starts, even as the server sees them after varying network delays.
/// Spacing rather than a bucket: a burst never goes out all at once.
///
/// A new rate (a reload, a 429, a calm second's recovery) applies at once: the schedule goes
/// on from the last start at the new spacing, and every slot reserved at the old spacing is
/// void: ``schedule`` changes, and a runner holding such a slot reserves again (README, "How
/// it works").
public struct RequestPacer: Sendable {
    public private(set) var rate: Double
    /// Changes whenever the spacing does: slots reserved under another value are void.
    public private(set) var schedule = 0
    private var interval: Duration
    private var nextSlot: ContinuousClock.Instant?
    /// The latest start that went out (``started(at:)``): a new spacing counts from it.
    private var lastStart: ContinuousClock.Instant?

    public init(rate: Double) {
        self.rate = rate
        self.interval = Self.interval(for: rate)
    }

    public mutating func setRate(_ rate: Double) {
        self.rate = rate
        let interval = Self.interval(for: rate)
        guard interval != self.interval else { return }
        self.interval = interval
        nextSlot = lastStart.map { $0.advanced(by: interval) }
        schedule &+= 1
    }

    /// Reserves the earliest start at or after `now` that keeps the spacing.
    public mutating func reserve(now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        let slot = max(now, nextSlot ?? now)
        nextSlot = slot.advanced(by: interval)
        return slot
    }

    /// A request started at `instant` (on a slot reserved under the current ``schedule``).
    public mutating func started(at instant: ContinuousClock.Instant) {
        lastStart = max(lastStart ?? instant, instant)
    }

    /// The configuration allows 0.001 to 100,000 a second; anything else is held to a day
    /// between starts at most, so no rate can make the conversion trap.
    private static func interval(for rate: Double) -> Duration {
        // Rounded up to the nanosecond, so rounding never lets one start too many through.
        let nanoseconds = (StartWindow.window.timeInterval * 1e9 / rate).rounded(.up)
        let longest = Tuning.longestStartSpacing
        guard nanoseconds.isFinite, nanoseconds < longest.timeInterval * 1e9 else { return longest }
        return .nanoseconds(Int64(max(1, nanoseconds)))
    }
}
