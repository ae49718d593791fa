/// Stops sending while the server refuses our credentials (401).
///
/// IAM locks a key after a few failed signatures, so a refusal is not a task's outcome: the
/// circuit opens for a pause (1 minute, doubling to 15), then lets one probe through.
/// Until an answer shows the credentials work, only one request is in flight at a time, so
/// refused requests never come in a burst.
public struct CredentialCircuit: Sendable {
    public enum State: Sendable, Equatable {
        /// No answer yet shows the credentials work: one request at a time.
        case unverified
        /// The credentials work: no limit from here.
        case verified
        /// Refused: nothing is sent until the pause ends.
        case open(until: ContinuousClock.Instant)
        /// The pause ended: one probe request at a time.
        case probing
    }

    public static let initialPause: Duration = Tuning.credentialPause
    public static let maximumPause: Duration = Tuning.longestCredentialPause

    public private(set) var state: State = .unverified
    public private(set) var nextPause: Duration = initialPause
    /// Refusals since the last accepted request.
    public private(set) var consecutiveRefusals = 0

    public init() {}

    /// How many requests may be in flight now: nil when this imposes no limit.
    public mutating func allowance(now: ContinuousClock.Instant) -> Int? {
        switch state {
        case .verified: return nil
        case .unverified, .probing: return 1
        case .open(let until):
            guard now >= until else { return 0 }
            state = .probing
            return 1
        }
    }

    public var isOpen: Bool {
        if case .open = state { return true }
        return false
    }

    public var reopensAt: ContinuousClock.Instant? {
        if case .open(let until) = state { return until }
        return nil
    }

    /// A request was answered with anything but 401 (and not a 429 or 5xx, which prove nothing).
    public mutating func accepted() {
        state = .verified
        nextPause = Self.initialPause
        consecutiveRefusals = 0
    }

    /// A request was refused with 401. Returns the pause when this refusal opened the circuit,
    /// nil when it was already open (a request that was in flight when it opened).
    public mutating func refused(now: ContinuousClock.Instant) -> Duration? {
        consecutiveRefusals += 1
        if isOpen { return nil }
        let pause = nextPause
        state = .open(until: now.advanced(by: pause))
        nextPause = min(Self.maximumPause, nextPause * 2)
        return pause
    }
}
