import FoundationEssentials

extension IoTDASimulator {
    /// The Huawei Cloud ECS metadata service's credential routes, served on the simulator's own
    /// port beside IoTDA's (see ``Configuration/metadata``).
    ///
    /// As on an ECS instance at `http://169.254.169.254`, and as the official SDKs use it:
    ///
    /// - `PUT /meta-data/latest/api/token` with `X-Metadata-Token-Ttl-Seconds: 1…21600` answers
    ///   200 `text/plain` with a fresh session token, valid for that many seconds (400 when the
    ///   header is missing or out of range).
    /// - `GET /openstack/latest/securitykey` with `X-Metadata-Token: <session token>` answers 200
    ///   `application/json` with a fresh temporary key,
    ///   `{"credential":{"access":…,"secret":…,"securitytoken":…,"expires_at":"2026-11-29T12:00:00.000000Z"}}`,
    ///   valid for ``credentialLifetime`` by the simulator's clock (401 for a missing, unknown,
    ///   revoked or expired session token).
    ///
    /// Keys issued so are accepted by the delete route under
    /// ``Configuration/Auth/metadataCredentials``. Other methods on these two paths get 405.
    /// Nothing on these routes counts in the IoTDA counters (``Counters/requests``,
    /// ``Counters/responsesByStatus``…); they have their own (``Counters/metadataTokenRequests``…).
    public struct MetadataService: Sendable {
        /// How long each temporary key is valid from its issue, by the simulator's clock.
        public var credentialLifetime: Duration
        /// When set, every key expires at this instant whatever its issue time (replacing
        /// ``credentialLifetime``): a test of keys near their end names the instant exactly,
        /// however long the machine took to answer.
        public var expiresAt: Date?

        public init(credentialLifetime: Duration = .seconds(3600), expiresAt: Date? = nil) {
            self.credentialLifetime = credentialLifetime
            self.expiresAt = expiresAt
        }
    }
}
