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
        /// The pause ended, or new credentials arrived: one probe request at a time.
        case probing
        /// The temporary credentials in hand expired and no new ones came: nothing is sent
        /// until they do.
        case awaitingCredentials

        /// Refused: a pause runs.
        public var isOpen: Bool {
            if case .open = self { return true }
            return false
        }

        /// Whether requests are held back: refused, or no usable credentials.
        public var holdsRequests: Bool {
            switch self {
            case .open, .awaitingCredentials: true
            case .unverified, .verified, .probing: false
            }
        }
    }

    public static let initialPause: Duration = Tuning.credentialPause
    public static let maximumPause: Duration = Tuning.longestCredentialPause

    public private(set) var state: State = .unverified
    public private(set) var nextPause: Duration = initialPause
    /// Refusals since the last accepted request.
    public private(set) var consecutiveRefusals = 0

    public init() {}

    /// How many requests may be in flight now: nil when this imposes no limit. A pause that has
    /// ended lets its probe through only when `mayStartProbe` (the work loop, which reads the
    /// credential source again first); otherwise it still counts as paused.
    public mutating func allowance(now: ContinuousClock.Instant, mayStartProbe: Bool = true) -> Int? {
        switch state {
        case .verified: return nil
        case .unverified, .probing: return 1
        case .awaitingCredentials: return 0
        case .open(let until):
            guard now >= until, mayStartProbe else { return 0 }
            state = .probing
            return 1
        }
    }

    public var isOpen: Bool { state.isOpen }

    public var reopensAt: ContinuousClock.Instant? {
        if case .open(let until) = state { return until }
        return nil
    }

    /// A request was answered with anything but 401 (and not a 429 or 5xx, which prove nothing).
    /// An answer to a request signed before the credentials expired ends no wait for new ones:
    /// only new credentials do (``credentialsReplaced(newKey:renewal:generation:)``).
    public mutating func accepted() {
        if state != .awaitingCredentials { state = .verified }
        nextPause = Self.initialPause
        consecutiveRefusals = 0
    }

    /// The newest credentials' generation (``CredentialProvider/Current/generation``) this
    /// circuit has heard of: an answer to a request signed with older ones says nothing about them.
    public private(set) var generation = 0

    /// New credentials arrived, of `generation`.
    ///
    /// Credentials read again (a reload, the source re-read before a probe) end a pause at
    /// once: the probe goes now, with them. A renewal of temporary credentials ends only a wait
    /// for credentials; a refusal's pause runs its course. A new key is trusted only once an
    /// answer shows it works, so a wrong one is refused once, not once per request in flight.
    public mutating func credentialsReplaced(newKey: Bool, renewal: Bool, generation: Int) {
        self.generation = max(self.generation, generation)
        switch state {
        case .awaitingCredentials: state = .probing
        case .open where !renewal: state = .probing
        case .verified where newKey: state = .unverified
        case .open, .verified, .unverified, .probing: break
        }
    }

    /// The credentials of `generation` expired. Returns whether this paused the circuit (false
    /// when it already waited, or newer credentials have arrived since).
    public mutating func credentialsExpired(generation: Int) -> Bool {
        guard generation >= self.generation, state != .awaitingCredentials else { return false }
        state = .awaitingCredentials
        return true
    }

    /// A request was refused with 401. Returns the pause when this refusal opened the circuit,
    /// nil when it was already open (a request that was in flight when it opened).
    /// A 401 to a request signed with credentials older than the newest (`generation`) is
    /// ignored: it says nothing about the new ones; so is one while the credentials in hand have
    /// expired (a request signed in their last moments): nothing is sent until new ones come.
    public mutating func refused(now: ContinuousClock.Instant, generation: Int? = nil) -> Duration? {
        if let generation, generation < self.generation { return nil }
        if state == .awaitingCredentials { return nil }
        consecutiveRefusals += 1
        if isOpen { return nil }
        let pause = nextPause
        state = .open(until: now.advanced(by: pause))
        nextPause = min(Self.maximumPause, nextPause * 2)
        return pause
    }
}
