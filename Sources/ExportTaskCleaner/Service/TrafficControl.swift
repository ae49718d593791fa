import Synchronization

/// What every request asks before it goes out, shared by all of the service's tasks:
/// the pacer (`max_requests_per_second`), the adaptive limits (429s) and the credential circuit (401s).
final class TrafficControl: Sendable {
    private struct State {
        var pacer: RequestPacer
        var limits: AdaptiveLimits
        var circuit = CredentialCircuit()
        var starts = StartWindow()
    }

    enum Permit: Equatable {
        /// Start at this instant (now or later), a slot of the pacer's `schedule`.
        case start(at: ContinuousClock.Instant, schedule: Int)
        /// Credentials are being refused: do not send.
        case paused
    }

    /// What an answer changed, for the log.
    enum Change: Equatable {
        case none
        case circuitOpened(pause: Duration, refusals: Int)
        case throttled(rate: Double, concurrency: Int)
    }

    struct Snapshot: Sendable {
        var rate: Double
        var concurrency: Int
        /// The configured limits (the last reload's).
        var maxRate: Double
        var maxConcurrency: Int
        var circuit: CredentialCircuit.State
        var consecutiveRefusals: Int
    }

    private let state: Mutex<State>
    /// Called as a paused circuit lets its probe through, before the probe is sent (outside
    /// the lock): the service re-reads the credential source there (docs/credentials.md, "Authentication and credentials").
    private let beforeProbe: (@Sendable () -> Void)?

    init(rate: Double, concurrency: Int, beforeProbe: (@Sendable () -> Void)? = nil) {
        state = Mutex(State(pacer: RequestPacer(rate: rate), limits: AdaptiveLimits(maxRate: rate, maxConcurrency: concurrency)))
        self.beforeProbe = beforeProbe
    }

    /// Records a start at `now`, or returns a later instant to try again at: the pacer's slots
    /// are exact, but a task that wakes late must not start inside a window that is full. A
    /// slot of an older `schedule` (the rate changed since it was reserved) is void: a new one
    /// is reserved, and `schedule` updated.
    func start(now: ContinuousClock.Instant, schedule: inout Int) -> ContinuousClock.Instant? {
        state.withLock { state in
            if schedule != state.pacer.schedule {
                schedule = state.pacer.schedule
                let slot = state.pacer.reserve(now: now)
                if slot > now { return slot }
            }
            if let later = state.starts.admit(now: now, limit: max(1, Int(state.limits.rate))) { return later }
            state.pacer.started(at: now)
            return nil
        }
    }

    /// The pacer's schedule: a slot reserved under another is void (``start(now:schedule:)``).
    var schedule: Int {
        state.withLock { $0.pacer.schedule }
    }

    /// How many more requests may start now, with `inFlight` already running, and whether the
    /// credentials are known to work (until then, nothing should be claimed ahead).
    /// Only the work loop passes `mayStartProbe` (the default): it lets a paused circuit's
    /// probe through, after reading the credential source again (outside every lock); a
    /// runner asking whether it may keep its slot (inside the ready tasks' lock) never does.
    func freeSlots(inFlight: Int, now: ContinuousClock.Instant, mayStartProbe: Bool = true) -> (free: Int, verified: Bool) {
        let (free, verified, probeOpened) = state.withLock { state in
            if state.limits.recover(now: now) { state.pacer.setRate(state.limits.rate) }
            let wasOpen = state.circuit.isOpen
            let allowance = state.circuit.allowance(now: now, mayStartProbe: mayStartProbe)
            let free = max(0, min(state.limits.concurrency, allowance ?? Int.max) - inFlight)
            return (free, allowance == nil, wasOpen && !state.circuit.isOpen)
        }
        if probeOpened { beforeProbe?() }
        return (free, verified)
    }

    /// Reserves a start time for one request, unless credentials are refused or expired.
    func permit(now: ContinuousClock.Instant) -> Permit {
        state.withLock { state in
            state.circuit.state.holdsRequests ? .paused : .start(at: state.pacer.reserve(now: now), schedule: state.pacer.schedule)
        }
    }

    /// New credentials (see ``CredentialCircuit/credentialsReplaced(newKey:renewal:generation:)``).
    func credentialsReplaced(newKey: Bool, renewal: Bool, generation: Int) {
        state.withLock { $0.circuit.credentialsReplaced(newKey: newKey, renewal: renewal, generation: generation) }
    }

    /// The credentials of `generation` expired: nothing is sent until new ones arrive. Returns
    /// whether this paused requests (false when they were paused already, or newer ones came).
    func credentialsExpired(generation: Int) -> Bool {
        state.withLock { $0.circuit.credentialsExpired(generation: generation) }
    }

    /// New limits from a reload: the configured rate and concurrency (a 429 slow-down in
    /// progress recovers towards them).
    func reconfigure(rate: Double, concurrency: Int) {
        state.withLock { state in
            state.limits.reconfigure(maxRate: rate, maxConcurrency: concurrency)
            state.pacer.setRate(state.limits.rate)
        }
    }

    /// Feeds an answer back: 401 opens the circuit, 429 slows everything down, other answers
    /// show the credentials work.
    func observe(_ result: DeleteResult, now: ContinuousClock.Instant) -> Change {
        state.withLock { state in
            switch result.httpStatus {
            case 401?:
                guard let pause = state.circuit.refused(now: now, generation: result.credentialsGeneration) else { return .none }
                return .circuitOpened(pause: pause, refusals: state.circuit.consecutiveRefusals)
            case 429?:
                guard state.limits.throttled(now: now) else { return .none }
                state.pacer.setRate(state.limits.rate)
                return .throttled(rate: state.limits.rate, concurrency: state.limits.concurrency)
            case let status? where status < 500:
                state.circuit.accepted()
                return .none
            default:
                return .none
            }
        }
    }

    var snapshot: Snapshot {
        state.withLock { state in
            Snapshot(rate: state.limits.rate, concurrency: state.limits.concurrency,
                     maxRate: state.limits.maxRate, maxConcurrency: state.limits.maxConcurrency,
                     circuit: state.circuit.state, consecutiveRefusals: state.circuit.consecutiveRefusals)
        }
    }
}
