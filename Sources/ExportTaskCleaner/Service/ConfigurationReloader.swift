import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Reloads on `SIGHUP` (`systemctl reload`; docs/operations.md, "Reloading"): reads the configuration file
/// and the credential source again and applies what can change safely while requests are in
/// flight — the credentials, `log_level`, `max_requests_per_second`, `concurrency` and `retry`.
/// A paused circuit probes at once with the credentials read. A configuration (or credential
/// source) that no longer loads is refused with one log line and the running one kept. Other
/// changed keys are named in a warning: they take a restart. systemd hears `RELOADING=1` …
/// `READY=1` around it.
public final class ConfigurationReloader: Service, Sendable {
    /// What a reload did.
    public enum Result: Sendable, Equatable {
        /// Applied; `changed` names the keys that took effect, `needRestart` those that did not.
        case applied(changed: [String], needRestart: [String])
        /// Refused: the configuration or the credentials did not load. The running ones stay.
        case refused(reason: String)
    }

    private let path: String
    private let running: Mutex<Configuration>
    private let cleaner: CleanerService
    private let credentials: CredentialSourceReader
    private let notifier: SystemdNotifier?
    private let logger: Logger

    public init(path: String, running: Configuration, cleaner: CleanerService, credentials: CredentialSourceReader,
                notifier: SystemdNotifier?, logger: Logger) {
        self.path = path
        self.running = Mutex(running)
        self.cleaner = cleaner
        self.credentials = credentials
        self.notifier = notifier
        self.logger = logger
    }

    /// Reloads on each `SIGHUP` until graceful shutdown.
    public func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            _ = reload()
        }
    }

    /// Reloads now.
    @discardableResult
    public func reload() -> Result {
        // Before the service's first READY=1 (still expiring dead leases), systemd hears nothing.
        let announce = cleaner.isReady.load(ordering: .acquiring)
        if announce { _ = notifier?.reloading() }
        defer { if announce { _ = notifier?.ready() } }
        let old = running.withLock { $0 }
        let new: Configuration
        do {
            new = try ConfigurationLoader.load(path: path)
            // Read with the running method: another method takes a restart (a refresher, a
            // signer), and so does its credentials file.
            var auth = old.auth
            if new.auth.method == old.auth.method { auth.credentialsFile = new.auth.credentialsFile }
            try credentials.reload(auth: auth)
        } catch {
            logger.error("reload refused; the running configuration is kept", metadata: [
                "config": "\(path)", "error": "\(error)",
            ])
            return .refused(reason: "\(error)")
        }
        var applied = old
        if new.auth.method == old.auth.method { applied.auth.credentialsFile = new.auth.credentialsFile }
        applied.logLevel = new.logLevel
        applied.maxRequestsPerSecond = new.maxRequestsPerSecond
        applied.concurrency = new.concurrency
        applied.retry = new.retry
        running.withLock { $0 = applied }

        LogSetup.level.set(new.logLevel)
        cleaner.reconfigure(ReloadableSettings(
            concurrency: new.concurrency, maxRequestsPerSecond: new.maxRequestsPerSecond,
            retry: .exponentialJitter(maxAttempts: new.retry.maxAttempts, baseDelay: new.retry.baseDelay,
                                      maxDelay: new.retry.maxDelay)))

        let changed = Self.changedKeys(from: old, to: new, reloadable: true)
        let needRestart = Self.changedKeys(from: old, to: new, reloadable: false)
        logger.notice("configuration reloaded", metadata: [
            "changed": "\(changed.isEmpty ? "nothing" : changed.joined(separator: ", "))",
            "log_level": "\(new.logLevel)", "concurrency": "\(new.concurrency)",
            "max_requests_per_second": "\(new.maxRequestsPerSecond)",
        ])
        if !needRestart.isEmpty {
            logger.warning("some changes take effect only after a restart", metadata: [
                "keys": "\(needRestart.joined(separator: ", "))",
            ])
        }
        return .applied(changed: changed, needRestart: needRestart)
    }

    /// The configuration keys whose values differ, among those a reload applies or those it does not.
    static func changedKeys(from old: Configuration, to new: Configuration, reloadable: Bool) -> [String] {
        let keys: [(String, Bool, Bool)] = [
            // (key, reloadable, changed)
            ("auth.credentials_file", old.auth.method == new.auth.method, old.auth.credentialsFile != new.auth.credentialsFile),
            ("log_level", true, old.logLevel != new.logLevel),
            ("max_requests_per_second", true, old.maxRequestsPerSecond != new.maxRequestsPerSecond),
            ("concurrency", true, old.concurrency != new.concurrency),
            ("retry", true, old.retry != new.retry),
            ("database", false, old.database != new.database),
            ("endpoint", false, old.endpoint != new.endpoint),
            ("region", false, old.region != new.region),
            ("project_id", false, old.projectID != new.projectID),
            ("instance_id", false, old.instanceID != new.instanceID),
            ("auth.method", false, old.auth.method != new.auth.method),
            ("auth.signing", false, old.auth.signing != new.auth.signing),
            ("auth.metadata_endpoint", false, old.auth.metadataEndpoint != new.auth.metadataEndpoint),
            ("request_timeout_ms", false, old.requestTimeout != new.requestTimeout),
            ("lease_seconds", false, old.leaseDuration != new.leaseDuration),
            ("shutdown_grace_ms", false, old.shutdownGrace != new.shutdownGrace),
            ("poll_interval_ms", false, old.pollInterval != new.pollInterval),
            ("metrics.listen", false, old.metricsListen != new.metricsListen),
            ("retention", false, old.retention != new.retention),
            ("sweep", false, old.sweep != new.sweep),
        ]
        return keys.filter { $0.1 == reloadable && $0.2 }.map(\.0)
    }
}
