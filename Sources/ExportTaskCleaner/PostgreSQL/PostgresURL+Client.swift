import PostgresNIO

extension PostgresURL {
    /// A postgres-nio client configuration for this database. The password is passed apart
    /// from the URL (PGPASSWORD, the credentials file or systemd's credential), so that the
    /// URL can be logged as it is.
    public func clientConfiguration(password: String?) -> PostgresClient.Configuration {
        PostgresClient.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
    }

    /// libpq's modes in postgres-nio's terms. Both TLS modes refuse a server without TLS
    /// (`.require`): falling back to plain TCP is libpq's `prefer`, which is not offered.
    var tls: PostgresClient.Configuration.TLS {
        tlsConfiguration.map { .require($0) } ?? .disable
    }

    /// The TLS configuration of ``sslMode``, nil for `disable`: one mapping for the client's
    /// pool and for a single connection (`check`, ``PostgresSetupCheck``).
    var tlsConfiguration: TLSConfiguration? {
        switch sslMode {
        case .disable:
            return nil
        case .require:
            // libpq's `require`: encrypted, the certificate not checked.
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            return configuration
        case .verifyFull:
            // The system's CA store, and the certificate must name `host` (SNI and the check
            // use the configured host).
            return .makeClientConfiguration()
        }
    }
}
