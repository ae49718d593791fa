import ExportTaskCleaner

extension IoTDASimulator {
    public struct Configuration: Sendable {
        /// How requests must authenticate.
        public enum Auth: Sendable {
            /// Anything goes (the `demo` command, benchmarks that measure only the transport).
            case unauthenticated
            /// Requests must be signed with this key (`SDK-HMAC-SHA256` or `V11-HMAC-SHA256`,
            /// region ``Configuration/region``, service `iotdm`, `X-Sdk-Date` within
            /// ``Configuration/maxClockSkew``); a key with a security token also needs
            /// `X-Security-Token`.
            case accessKey(AccessKey)
            /// Requests must carry this `X-Auth-Token`.
            case token(String)
            /// Only temporary keys issued by the metadata service (``Configuration/metadata``)
            /// are accepted: the request must be signed with one (as for ``accessKey(_:)``),
            /// carry its `X-Security-Token`, and arrive before it expires by the simulator's
            /// clock. Without a metadata service no key is ever issued, so every request is refused.
            case metadataCredentials
        }

        /// 0: any free port.
        public var port: Int
        /// The project every request's path (and `X-Project-Id`, when sent) must name.
        public var projectID: String
        /// When set, every request must carry this `Instance-Id`.
        public var instanceID: String?
        /// How requests must authenticate at start; ``IoTDASimulator/setAuth(_:)`` replaces it
        /// (this value stays the initial one).
        public var auth: Auth
        /// The region derived signing keys must be scoped to.
        public var region: String
        /// For IDs without a script when there is no ``mix``.
        public var defaultBehaviour: Behaviour
        /// For IDs without a script: a deterministic mix of behaviours.
        public var mix: Mix?
        /// Added before every answer (without blocking the event loop).
        public var latency: Duration
        /// Requests per second accepted (fixed one-second windows); beyond it, 429 with
        /// `Retry-After: 1` (`IOTDA.021101`).
        public var rateLimit: Int?
        /// How far `X-Sdk-Date` may be from the simulator's clock (IAM allows 15 minutes).
        public var maxClockSkew: Duration
        /// The simulator's clock is the real clock plus this: it checks `X-Sdk-Date`, dates
        /// every answer's `Date` header and issued keys' expiry. Changed at run time by
        /// ``IoTDASimulator/setClockOffset(_:)`` (this value stays the initial one).
        public var clockOffset: Duration
        /// When set, the ECS metadata service's credential routes are served too; when nil,
        /// they get 404 like any unknown route.
        public var metadata: MetadataService?
        /// How many request arrival times ``Counters/arrivalTimes`` keeps (the latest).
        public var arrivalHistoryLimit: Int

        public init(
            port: Int = 0,
            projectID: String = "simulated-project",
            instanceID: String? = nil,
            auth: Auth = .unauthenticated,
            region: String = "cn-north-4",
            defaultBehaviour: Behaviour = .deleteOnce,
            mix: Mix? = nil,
            latency: Duration = .zero,
            rateLimit: Int? = nil,
            maxClockSkew: Duration = .seconds(15 * 60),
            clockOffset: Duration = .zero,
            metadata: MetadataService? = nil,
            arrivalHistoryLimit: Int = 100_000
        ) {
            self.port = port
            self.projectID = projectID
            self.instanceID = instanceID
            self.auth = auth
            self.region = region
            self.defaultBehaviour = defaultBehaviour
            self.mix = mix
            self.latency = latency
            self.rateLimit = rateLimit
            self.maxClockSkew = maxClockSkew
            self.clockOffset = clockOffset
            self.metadata = metadata
            self.arrivalHistoryLimit = arrivalHistoryLimit
        }
    }
}
