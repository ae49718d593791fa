/// The starts of the last window, so that no one-second window ever holds more than the limit:
/// a start is admitted only if the `limit`-th latest start is at least `window` old.
///
/// Only starts still inside the window are kept, so its memory follows the rate actually
/// reached, not the configured limit (which may be 100,000 a second).
struct StartWindow: Sendable {
    /// Start instants in order; those before `head` have left the window.
    private var starts: [ContinuousClock.Instant] = []
    private var head = 0

    /// A second, and 1% more: a request reaches the server a little after it starts, and
    /// that delay varies, so the server's view of a second must not fill up either.
    static let window: Duration = Tuning.startWindow

    /// Admits (and records) a start at `now`, or returns when one may start.
    mutating func admit(now: ContinuousClock.Instant, limit: Int) -> ContinuousClock.Instant? {
        while head < starts.count, starts[head].advanced(by: Self.window) <= now { head += 1 }
        let limit = max(1, limit)
        if starts.count - head >= limit {
            // The limit-th latest start is inside the window: wait until it leaves.
            return starts[starts.count - limit].advanced(by: Self.window)
        }
        if head >= Tuning.startWindowCompaction, head * 2 >= starts.count {
            starts.removeFirst(head)
            head = 0
        }
        starts.append(now)
        return nil
    }
}
