/// The last starts, so that no one-second window ever holds more than the limit: a start is
/// admitted only if the `limit`-th latest start is at least `window` old.
struct StartWindow: Sendable {
    private var ring: [ContinuousClock.Instant?]
    private var next = 0

    /// A second, and 1% more: a request reaches the server a little after it starts, and
    /// that delay varies, so the server's view of a second must not fill up either.
    static let window: Duration = .milliseconds(1_010)

    init(capacity: Int) {
        ring = Array(repeating: nil, count: max(1, capacity))
    }

    /// Admits (and records) a start at `now`, or returns when one may start.
    mutating func admit(now: ContinuousClock.Instant, limit: Int) -> ContinuousClock.Instant? {
        let limit = min(limit, ring.count)
        // The limit-th latest start: `limit` slots back from the next one to write.
        let index = (next - limit + ring.count) % ring.count
        if let oldest = ring[index], now < oldest.advanced(by: Self.window) {
            return oldest.advanced(by: Self.window)
        }
        ring[next] = now
        next = (next + 1) % ring.count
        return nil
    }
}
