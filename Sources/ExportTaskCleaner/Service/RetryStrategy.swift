/// Decides whether a failed request is tried again, and after how long.
///
/// As in swift-jobs: a protocol returning `Duration`, with static factories. The delay is not
/// slept in memory: the task goes back to the database with `next_attempt_at` set.
public protocol RetryStrategy: Sendable {
    /// Whether a task that has had `attempts` requests may have another.
    func shouldRetry(attempts: Int) -> Bool

    /// The delay before the next request, after `attempts` requests; never less than `retryAfter`
    /// up to `retryAfterLimit`. `unit` is a random value in `0..<1` for the jitter.
    func backoff(attempts: Int, retryAfter: Duration?, unit: Double) -> Duration

    /// The longest `Retry-After` honoured: a longer one is cut to it, so that no answer can park
    /// a task for years (docs/operations.md, "Behaviour under failures").
    var retryAfterLimit: Duration { get }
}

/// Exponential backoff with full jitter: a uniform delay in `0...min(maxDelay, baseDelay · 2^(n−1))`,
/// raised to `Retry-After` (at most `retryAfterLimit`) when the server asked for more.
public struct ExponentialJitterRetry: RetryStrategy {
    public var maxAttempts: Int
    public var baseDelay: Duration
    public var maxDelay: Duration

    public init(maxAttempts: Int, baseDelay: Duration, maxDelay: Duration) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    public func shouldRetry(attempts: Int) -> Bool {
        attempts < maxAttempts
    }

    /// The upper bound of the jittered delay after `attempts` requests.
    public func ceiling(attempts: Int) -> Duration {
        let exponent = max(0, min(attempts - 1, 62))
        let base = Double(baseDelay.milliseconds)
        let ceiling = min(Double(maxDelay.milliseconds), base * pow2(exponent))
        return .milliseconds(Int64(ceiling))
    }

    public func backoff(attempts: Int, retryAfter: Duration?, unit: Double) -> Duration {
        let jittered = Duration.milliseconds(Int64((Double(ceiling(attempts: attempts).milliseconds) * unit).rounded(.down)))
        guard let retryAfter else { return jittered }
        return max(jittered, min(retryAfter, retryAfterLimit))
    }

    /// An hour, or `maxDelay` when that is longer (it may be a day).
    public var retryAfterLimit: Duration {
        max(maxDelay, Tuning.retryAfterLimit)
    }

    private func pow2(_ exponent: Int) -> Double {
        Double(sign: .plus, exponent: exponent, significand: 1)
    }
}

extension RetryStrategy where Self == ExponentialJitterRetry {
    public static func exponentialJitter(maxAttempts: Int, baseDelay: Duration, maxDelay: Duration) -> ExponentialJitterRetry {
        ExponentialJitterRetry(maxAttempts: maxAttempts, baseDelay: baseDelay, maxDelay: maxDelay)
    }
}
