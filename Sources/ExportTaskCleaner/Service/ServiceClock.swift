import FoundationEssentials

/// Time as the cleaner sees it: wall-clock dates for the database, a monotonic instant for
/// pacing and pauses, and sleeping. Injected so tests drive time explicitly.
public protocol ServiceClock: Sendable {
    /// Wall-clock time, written to the database.
    func now() -> Date
    /// Monotonic time, for spacing requests and timing pauses.
    func instant() -> ContinuousClock.Instant
    /// Sleeps until `deadline` (monotonic); throws when the task is cancelled.
    func sleep(until deadline: ContinuousClock.Instant) async throws
}

extension ServiceClock {
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: instant().advanced(by: duration))
    }
}

/// The real clocks: `Date()` and `ContinuousClock`.
public struct SystemClock: ServiceClock {
    public init() {}

    public func now() -> Date { Date() }

    public func instant() -> ContinuousClock.Instant { .now }

    public func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await Task.sleep(until: deadline, tolerance: nil, clock: .continuous)
    }
}
