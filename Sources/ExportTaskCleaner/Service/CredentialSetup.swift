import FoundationEssentials
import Logging

/// The credentials a run signs with, from the configured source (docs/credentials.md, "Authentication and credentials"): the
/// provider the client reads, the reader that reads the source again (reload, probe), and for
/// `auth.method: metadata` the refresher that renews them and its metadata client.
public struct CredentialSetup: Sendable {
    public let provider: CredentialProvider
    public let reader: CredentialSourceReader
    public let refresher: CredentialRefresher?
    private let metadata: MetadataCredentialsClient?
    /// Where they came from and how requests are signed: never a secret.
    public let description: String

    /// Loads the configured credentials; for `auth.method: metadata`, fetches the first
    /// temporary ones (an error when the metadata service does not give them).
    public static func start(configuration: Configuration, environment: [String: String], logger: Logger,
                             clock: any ServiceClock = SystemClock()) async throws -> CredentialSetup {
        let signing = configuration.signingAlgorithm
        let auth = configuration.auth
        guard auth.method == .metadata else {
            let (credentials, source) = try CredentialsLoader.load(
                method: auth.method, credentialsFile: auth.credentialsFile, environment: environment)
            let provider = CredentialProvider(credentials, source: source.rawValue, signing: signing, region: configuration.region)
            let reader = CredentialSourceReader(auth: auth, environment: environment, provider: provider, refresher: nil, logger: logger)
            return CredentialSetup(provider: provider, reader: reader, refresher: nil, metadata: nil, description: provider.description)
        }

        let client = try MetadataCredentialsClient(endpoint: auth.metadataEndpoint)
        let source = "the ECS metadata service (\(client.endpoint.baseURL))"
        let fetched: MetadataCredentialsClient.Fetched
        do {
            fetched = try await client.fetch()
        } catch {
            try? await client.shutdown()
            throw error
        }
        let fetchedAt = clock.now()
        if let problem = CredentialProvider.expiryProblem(expiresAt: fetched.expiresAt, now: fetchedAt) {
            try? await client.shutdown()
            throw CleanerError.runtime("the ECS metadata service's credentials \(problem)")
        }
        let provider = CredentialProvider(.accessKey(fetched.key), source: source, expiresAt: fetched.expiresAt,
                                          signing: signing, region: configuration.region)
        let refresher = CredentialRefresher(provider: provider, fetchedAt: fetchedAt, source: source, clock: clock,
                                            logger: logger, fetch: { try await client.fetch() })
        let reader = CredentialSourceReader(auth: auth, environment: environment, provider: provider,
                                            refresher: refresher, logger: logger)
        logger.info("temporary credentials fetched", metadata: [
            "access_key": "\(fetched.key.abbreviatedAK)", "expires_at": "\(Timestamp.format(fetched.expiresAt))",
            "renew_at": "\(Timestamp.format(CredentialRefresher.renewalTime(fetchedAt: fetchedAt, expiresAt: fetched.expiresAt)))",
        ])
        return CredentialSetup(provider: provider, reader: reader, refresher: refresher, metadata: client,
                               description: "temporary access keys from \(source), signed \(signing.rawValue)")
    }

    /// Closes the metadata client's connections, if any.
    public func shutdown() async throws {
        try await metadata?.shutdown()
    }
}
