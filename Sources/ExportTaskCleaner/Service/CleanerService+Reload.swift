import FoundationEssentials
import Logging

/// What a reload (`SIGHUP`, `systemctl reload`) may change while the service runs (docs/operations.md,
/// "Reloading"). The rest of the configuration takes a restart.
public struct ReloadableSettings: Sendable {
    public var concurrency: Int
    public var maxRequestsPerSecond: Double
    public var retry: any RetryStrategy

    public init(concurrency: Int, maxRequestsPerSecond: Double, retry: any RetryStrategy) {
        self.concurrency = concurrency
        self.maxRequestsPerSecond = maxRequestsPerSecond
        self.retry = retry
    }
}

extension CleanerService {
    /// Applies reloaded settings: requests in flight go on; new starts follow the new rate and
    /// concurrency (a 429 slow-down in progress recovers towards them), new failures the new
    /// retry policy.
    public func reconfigure(_ settings: ReloadableSettings) {
        replaceRetry(settings.retry)
        traffic.reconfigure(rate: settings.maxRequestsPerSecond, concurrency: settings.concurrency)
        let events = shared.withLock { $0.events }
        events?.yield(.reconfigured(concurrency: settings.concurrency, rate: settings.maxRequestsPerSecond))
    }

    /// The provider's news, while the service runs: new credentials let a paused circuit probe
    /// at once; expired ones pause every request until new ones arrive.
    func credentialsChanged(_ change: CredentialProvider.Change) {
        switch change {
        case .replaced(let newKey, let renewal, let generation):
            traffic.credentialsReplaced(newKey: newKey, renewal: renewal, generation: generation)
            let events = shared.withLock {
                $0.refusal = nil
                return $0.events
            }
            events?.yield(.credentialsChanged)
        case .expired(let generation):
            credentialsExpired(generation: generation)
        }
    }

    /// Pauses requests because the credentials of `generation` expired: one log line and the
    /// status say why, once per pause; nothing when newer ones have arrived since.
    func credentialsExpired(generation: Int) {
        guard traffic.credentialsExpired(generation: generation) else { return }
        let current = credentials?.current
        logger.error("temporary credentials expired and no new ones could be fetched; requests paused", metadata: [
            "source": "\(current?.source ?? "unknown")",
            "expired_at": "\(current?.expiresAt.map(Timestamp.format) ?? "unknown")",
        ])
        if let status = pauseStatus(.awaitingCredentials) { _ = notifier?.status(status) }
    }

    /// The status line's part for a circuit that holds requests back, or nil.
    func pauseStatus(_ circuit: CredentialCircuit.State) -> String? {
        switch circuit {
        case .open(let until):
            let seconds = max(0, (until - clock.instant()).components.seconds)
            let refusal = shared.withLock { $0.refusal }.map { " \($0)" } ?? ""
            return "PAUSED: credentials refused\(refusal); next try in \(seconds) s"
        case .awaitingCredentials:
            return "PAUSED: the temporary credentials expired; waiting for new ones from \(credentials?.current.source ?? "their source")"
        case .unverified, .verified, .probing:
            return nil
        }
    }
}
