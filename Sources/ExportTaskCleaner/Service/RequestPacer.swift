/// Spaces request starts evenly, `1.01 / rate` seconds apart, so that no one-second window
/// holds more than `rate` starts, even as the server sees them after varying network delays.
/// Spacing rather than a bucket: a burst never goes out all at once.
public struct RequestPacer: Sendable {
    public private(set) var rate: Double
    private var interval: Duration
    private var nextSlot: ContinuousClock.Instant?

    public init(rate: Double) {
        self.rate = rate
        self.interval = Self.interval(for: rate)
    }

    public mutating func setRate(_ rate: Double) {
        self.rate = rate
        interval = Self.interval(for: rate)
    }

    /// Reserves the earliest start at or after `now` that keeps the spacing.
    public mutating func reserve(now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        let slot = max(now, nextSlot ?? now)
        nextSlot = slot.advanced(by: interval)
        return slot
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
