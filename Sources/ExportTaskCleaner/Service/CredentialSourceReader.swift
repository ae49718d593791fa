import Logging
import Synchronization

/// Reads the configured credential source again and hands what it finds to the provider: on a
/// reload, and before each probe of a paused circuit, so that a key rotated on disk is used
/// without a signal (docs/credentials.md, "Authentication and credentials"). For `auth.method: metadata`
/// the refresher renews the temporary credentials instead: at once after a refusal, so that
/// the probe goes with new ones, and on a reload.
public final class CredentialSourceReader: Sendable {
    private let auth: Mutex<Configuration.Auth>
    private let environment: [String: String]
    private let provider: CredentialProvider
    private let refresher: CredentialRefresher?
    private let logger: Logger

    public init(auth: Configuration.Auth, environment: [String: String], provider: CredentialProvider,
                refresher: CredentialRefresher?, logger: Logger) {
        self.auth = Mutex(auth)
        self.environment = environment
        self.provider = provider
        self.refresher = refresher
        self.logger = logger
    }

    /// Reads the source named by `auth` (a reload's, of the running method): throws, changing
    /// nothing, when it cannot be read; otherwise the provider gets its credentials, even the
    /// same ones, so that a paused circuit probes at once.
    public func reload(auth newAuth: Configuration.Auth) throws {
        if newAuth.method == .metadata {
            auth.withLock { $0 = newAuth }
            refresher?.renewSoon(probe: true)
            return
        }
        let (credentials, source) = try read(newAuth)
        auth.withLock { $0 = newAuth }
        if source == .credentialsDirectory, credentials == provider.current.credentials {
            // systemd copies LoadCredential= files when the service starts, never on a reload.
            logger.notice("credentials unchanged: systemd copies LoadCredential= files only at start; restart the service to use new ones",
                          metadata: ["source": "\(source.rawValue)"])
        }
        provider.replace(credentials, source: source.rawValue)
    }

    /// After a refusal: temporary credentials are renewed at once (the probe, at the end of the
    /// pause, goes with the new ones). A key from a file is read just before the probe instead.
    public func afterRefusal() {
        if auth.withLock({ $0.method }) == .metadata { refresher?.renewSoon(probe: false) }
    }

    /// Before a paused circuit's probe: a key changed on disk replaces the one refused. A
    /// source that cannot be read now is logged, and the probe goes with the key in hand.
    public func beforeProbe() {
        let auth = self.auth.withLock { $0 }
        guard auth.method != .metadata else { return }
        do {
            let (credentials, source) = try read(auth)
            guard credentials != provider.current.credentials else { return }
            provider.replace(credentials, source: source.rawValue)
            logger.notice("new credentials found before the probe; probing with them", metadata: [
                "credentials": "\(credentials)", "source": "\(source.rawValue)",
            ])
        } catch {
            logger.error("cannot read the credentials again before the probe; probing with the ones in hand",
                         metadata: ["error": "\(error)"])
        }
    }

    private func read(_ auth: Configuration.Auth) throws -> (Credentials, CredentialSource) {
        try CredentialsLoader.load(method: auth.method, credentialsFile: auth.credentialsFile, environment: environment)
    }
}
