import FoundationEssentials
import Logging
import ServiceLifecycle
import Synchronization

/// Keeps temporary credentials fresh (`auth.method: metadata`; docs/credentials.md, "Authentication and credentials").
///
/// Renews them before they expire, never per request: when less than 40 minutes are left (the
/// official SDKs' threshold), or half their lifetime for credentials that live less than 80
/// minutes. A failed renewal is tried again with backoff (1 s doubling to 60 s); once the
/// credentials in hand have expired the provider says so, and the service pauses until a
/// renewal succeeds. Requests in flight keep the credentials they were signed with.
public final class CredentialRefresher: Service, Sendable {
    public typealias Fetch = @Sendable () async throws -> MetadataCredentialsClient.Fetched

    private struct State {
        /// When the credentials in hand were fetched, by the local clock.
        var fetchedAt: Date
        /// A renewal was asked for (a reload, a refusal).
        var renewSoon = false
        /// The renewal asked for ends a paused circuit's pause (a reload).
        var probeAfterRenewal = false
        /// The fetch in flight, which a reload cancels.
        var inFlight: Task<MetadataCredentialsClient.Fetched, any Error>?
        /// The fetch in flight was cancelled for a reload's: its end is no failure.
        var cancelledForReload = false
    }

    /// The SDKs renew when less than this is left.
    public static let renewalLead: Duration = .seconds(40 * 60)
    static let firstRetry: Duration = .seconds(1)
    static let longestRetry: Duration = .seconds(60)
    /// The longest sleep at a time, so that a renewal asked for is taken up soon.
    static let wakeStep: Duration = .seconds(1)

    private let provider: CredentialProvider
    private let fetch: Fetch
    private let source: String
    private let clock: any ServiceClock
    private let logger: Logger
    private let state: Mutex<State>

    /// - Parameters:
    ///   - provider: holds the credentials fetched at start-up (with their expiry), fetched at `fetchedAt`.
    ///   - source: names the source in log lines and the provider (`ECS metadata service (URL)`).
    public init(provider: CredentialProvider, fetchedAt: Date, source: String, clock: any ServiceClock = SystemClock(),
                logger: Logger, fetch: @escaping Fetch) {
        self.provider = provider
        self.fetch = fetch
        self.source = source
        self.clock = clock
        self.logger = logger
        self.state = Mutex(State(fetchedAt: fetchedAt))
    }

    /// When credentials fetched at `fetchedAt` that expire at `expiresAt` are renewed.
    public static func renewalTime(fetchedAt: Date, expiresAt: Date) -> Date {
        let lifetime = max(0, expiresAt.timeIntervalSince(fetchedAt))
        let lead = min(renewalLead.timeInterval, lifetime / 2)
        return expiresAt.addingTimeInterval(-lead)
    }

    /// Asks for a renewal now: after a refusal, or on a reload (`probe`: the new credentials end
    /// a refusal's pause at once, as a key read again on a reload does). A reload cancels a fetch
    /// in flight and a new one starts at once (docs/operations.md, "Reloading"): one hung on a metadata
    /// service that does not finish its answer would otherwise hold the reload's. A refusal
    /// does not: the requests in flight may bring several at once, and the fetch in flight is
    /// new enough (another follows it all the same).
    public func renewSoon(probe: Bool) {
        let inFlight = state.withLock { state in
            state.renewSoon = true
            state.probeAfterRenewal = state.probeAfterRenewal || probe
            guard probe, let task = state.inFlight else { return Task<MetadataCredentialsClient.Fetched, any Error>?.none }
            state.cancelledForReload = true
            return task
        }
        inFlight?.cancel()
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.renewWhileRunning() }
    }

    private func renewWhileRunning() async {
        var failures = 0
        while !Task.isCancelled {
            let current = provider.current
            let (fetchedAt, asked) = state.withLock { ($0.fetchedAt, $0.renewSoon) }
            let now = clock.now()
            let due = failures > 0
                ? nil
                : current.expiresAt.map { Self.renewalTime(fetchedAt: fetchedAt, expiresAt: $0) }
            if !asked, let due, now < due {
                guard (try? await clock.sleep(for: min(Self.wakeStep, .seconds(due.timeIntervalSince(now))))) != nil else { return }
                continue
            }
            let probe = state.withLock { state in
                defer { state.renewSoon = false; state.probeAfterRenewal = false }
                return state.probeAfterRenewal
            }
            do {
                let fetched = try await fetchCancellable()
                let at = clock.now()
                if let problem = CredentialProvider.expiryProblem(expiresAt: fetched.expiresAt, now: at) {
                    throw CleanerError.runtime("the credentials fetched \(problem)")
                }
                guard fetched.expiresAt > (current.expiresAt ?? .distantPast) || probe else {
                    // The same credentials again (the metadata service renews them on its own
                    // schedule): asked again after the backoff, without a warning.
                    failures += 1
                    logger.debug("the metadata service gave the credentials in hand again; asking later",
                                 metadata: ["expires_at": "\(Timestamp.format(fetched.expiresAt))"])
                    guard await sleepBeforeRetry(failures: failures) else { return }
                    continue
                }
                state.withLock { $0.fetchedAt = at }
                provider.replace(.accessKey(fetched.key), source: source, expiresAt: fetched.expiresAt, renewal: !probe)
                failures = 0
                logger.info("temporary credentials renewed", metadata: [
                    "access_key": "\(fetched.key.abbreviatedAK)", "expires_at": "\(Timestamp.format(fetched.expiresAt))",
                    "renew_at": "\(Timestamp.format(Self.renewalTime(fetchedAt: at, expiresAt: fetched.expiresAt)))",
                ])
            } catch {
                // Cut off by shutdown: not a failure.
                if Task.isCancelled { return }
                let superseded = state.withLock { state in
                    // A reload's probe is owed until a renewal succeeds.
                    state.probeAfterRenewal = state.probeAfterRenewal || probe
                    return state.cancelledForReload
                }
                if superseded {
                    // Cancelled for a reload's renewal, which starts at once: not a failure.
                    logger.debug("renewal in flight cancelled for a reload's", metadata: ["error": "\(error)"])
                    continue
                }
                failures += 1
                // A warning at the first failures and then at each doubling, not once a minute for ever.
                let level: Logger.Level = failures <= 3 || failures.nonzeroBitCount == 1 ? .warning : .debug
                logger.log(level: level, "cannot renew the temporary credentials; trying again", metadata: [
                    "error": "\(error)", "failures": "\(failures)",
                    "retry_in_s": "\(Self.retryDelay(failures: failures).components.seconds)",
                    "expires_at": "\(current.expiresAt.map(Timestamp.format) ?? "unknown")",
                ])
                provider.expire(at: clock.now())
                guard await sleepBeforeRetry(failures: failures) else { return }
            }
        }
    }

    /// `fetch` in a task of its own, which ``renewSoon(probe:)`` cancels; cancelled too when
    /// this task is (shutdown).
    private func fetchCancellable() async throws -> MetadataCredentialsClient.Fetched {
        let fetch = self.fetch
        let task = Task { try await fetch() }
        let reload = state.withLock {
            $0.inFlight = task
            $0.cancelledForReload = $0.renewSoon && $0.probeAfterRenewal
            return $0.cancelledForReload
        }
        // A reload between the decision to fetch and now: this fetch is already superseded.
        if reload { task.cancel() }
        defer { state.withLock { $0.inFlight = nil } }
        return try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    }

    /// Sleeps until the next try, waking each second to pause the service at the expiry and to
    /// take up a renewal asked for. False when cancelled.
    private func sleepBeforeRetry(failures: Int) async -> Bool {
        var remaining = Self.retryDelay(failures: failures)
        while remaining > .zero {
            let step = min(remaining, Self.wakeStep)
            guard (try? await clock.sleep(for: step)) != nil else { return false }
            remaining -= step
            provider.expire(at: clock.now())
            if state.withLock({ $0.renewSoon }) { break }
        }
        return true
    }

    /// 1 s after the first failure, doubling to 60 s.
    static func retryDelay(failures: Int) -> Duration {
        let doubled = firstRetry * (1 << min(max(failures - 1, 0), 6))
        return min(longestRetry, doubled)
    }
}
