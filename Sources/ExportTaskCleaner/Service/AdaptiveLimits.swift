/// The rate and concurrency the service actually uses: the configured ones, halved when the
/// server answers 429, and recovered additively after each calm second (AIMD).
public struct AdaptiveLimits: Sendable {
    public private(set) var maxRate: Double
    public private(set) var maxConcurrency: Int
    public private(set) var rate: Double
    public private(set) var concurrency: Int
    private var lastChange: ContinuousClock.Instant?
    private var lastThrottle: ContinuousClock.Instant?

    /// 429s within this long of the last halving count as the same congestion.
    static let throttleWindow: Duration = Tuning.throttleWindow
    /// One recovery step per calm second.
    static let recoveryPeriod: Duration = Tuning.recoveryPeriod

    public init(maxRate: Double, maxConcurrency: Int) {
        self.maxRate = maxRate
        self.maxConcurrency = maxConcurrency
        self.rate = maxRate
        self.concurrency = maxConcurrency
    }

    /// New configured limits (a reload). Limits lowered by 429s stay lowered where they are
    /// below the new ones, and recover towards them.
    public mutating func reconfigure(maxRate: Double, maxConcurrency: Int) {
        self.maxRate = maxRate
        self.maxConcurrency = maxConcurrency
        if lastThrottle == nil || !isReduced {
            rate = maxRate
            concurrency = maxConcurrency
        } else {
            rate = min(rate, maxRate)
            concurrency = min(concurrency, maxConcurrency)
        }
    }

    public var isReduced: Bool { rate < maxRate || concurrency < maxConcurrency }

    private var minimumRate: Double { min(maxRate, 1) }
    private var rateStep: Double { max(1, maxRate / Tuning.rateRecoverySteps) }

    /// The server asked us to slow down. Returns whether the limits went down.
    public mutating func throttled(now: ContinuousClock.Instant) -> Bool {
        if let lastThrottle, now < lastThrottle.advanced(by: Self.throttleWindow) { return false }
        rate = max(minimumRate, rate / 2)
        concurrency = max(1, concurrency / 2)
        lastThrottle = now
        lastChange = now
        return true
    }

    /// Recovers one step per calm second since the last change. Returns whether anything changed.
    public mutating func recover(now: ContinuousClock.Instant) -> Bool {
        guard isReduced, let last = lastChange else { return false }
        var changed = false
        var stepAt = last.advanced(by: Self.recoveryPeriod)
        while stepAt <= now, isReduced {
            rate = min(maxRate, rate + rateStep)
            concurrency = min(maxConcurrency, concurrency + 1)
            lastChange = stepAt
            stepAt = stepAt.advanced(by: Self.recoveryPeriod)
            changed = true
        }
        return changed
    }
}
