import FoundationEssentials
import Logging
import ServiceLifecycle
import Synchronization

/// Keeps temporary credentials fresh (`auth.method: metadata`; README, "Authentication and credentials").
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
        /// A renewal was asked for (a reload, a probe after a refusal).
        var renewSoon = false
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

    /// Asks for a renewal now (a reload; a probe after the credentials were refused).
    public func renewSoon() {
        state.withLock { $0.renewSoon = true }
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
            state.withLock { $0.renewSoon = false }
            do {
                let fetched = try await fetch()
                let at = clock.now()
                guard fetched.expiresAt > at else {
                    throw CleanerError.runtime("the credentials fetched expired at \(Timestamp.format(fetched.expiresAt)), before the local clock's \(Timestamp.format(at)); is the local clock right?")
                }
                state.withLock { $0.fetchedAt = at }
                provider.replace(.accessKey(fetched.key), source: source, expiresAt: fetched.expiresAt, renewal: true)
                failures = 0
                logger.info("temporary credentials renewed", metadata: [
                    "access_key": "\(fetched.key.abbreviatedAK)", "expires_at": "\(Timestamp.format(fetched.expiresAt))",
                    "renew_at": "\(Timestamp.format(Self.renewalTime(fetchedAt: at, expiresAt: fetched.expiresAt)))",
                ])
            } catch {
                failures += 1
                let wait = Self.retryDelay(failures: failures)
                logger.warning("cannot renew the temporary credentials; trying again", metadata: [
                    "error": "\(error)", "failures": "\(failures)", "retry_in_s": "\(wait.components.seconds)",
                    "expires_at": "\(current.expiresAt.map(Timestamp.format) ?? "unknown")",
                ])
                provider.expire(at: clock.now())
                // Sleep until the retry, but wake at the expiry to pause the service in time.
                var remaining = wait
                while remaining > .zero {
                    let step = min(remaining, Self.wakeStep)
                    guard (try? await clock.sleep(for: step)) != nil else { return }
                    remaining -= step
                    provider.expire(at: clock.now())
                    if state.withLock({ $0.renewSoon }) { break }
                }
            }
        }
    }

    /// 1 s after the first failure, doubling to 60 s.
    static func retryDelay(failures: Int) -> Duration {
        let doubled = firstRetry * (1 << min(max(failures - 1, 0), 6))
        return min(longestRetry, doubled)
    }
}
