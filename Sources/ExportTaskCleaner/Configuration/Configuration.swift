import FoundationEssentials
import Logging

/// The service's configuration: the JSON file of docs/configuration.md, with a default for every optional key.
public struct Configuration: Sendable, Equatable {
    public static let defaultPath = "/etc/export-task-cleaner/config.json"
    public static let pathEnvironmentVariable = "EXPORT_TASK_CLEANER_CONFIG"

    /// The SQLite queue. A relative path is resolved against the configuration file's folder.
    public var database: String = "/var/lib/export-task-cleaner/queue.sqlite3"
    /// `https://host[:port]`; `http://` only for loopback hosts.
    public var endpoint: String
    public var region: String
    public var projectID: String
    /// Sent as `Instance-Id` when set (IoTDA standard and enterprise editions).
    public var instanceID: String?
    public var auth = Auth()
    /// Requests in flight at most.
    public var concurrency = 8
    /// The largest `concurrency` allowed.
    public static let maximumConcurrency = 1024
    /// Requests started in any one second at most.
    public var maxRequestsPerSecond: Double = 20
    public var retry = Retry()
    public var requestTimeout: Duration = .milliseconds(30_000)
    public var leaseDuration: Duration = .seconds(300)
    public var shutdownGrace: Duration = .milliseconds(10_000)
    public var pollInterval: Duration = .milliseconds(1_000)
    public var logLevel: Logger.Level = .info
    /// `metrics.listen`: where `GET /metrics` is served; nil (the default): no endpoint.
    public var metricsListen: ListenAddress?
    /// `retention`: on by default (90 days); nil keeps everything.
    public var retention: Retention? = Retention()
    /// `sweep`: the service lists the project's export tasks and queues the finished ones
    /// (docs/configuration.md); nil (the default): it does not.
    public var sweep: Sweep?

    public struct Sweep: Sendable, Equatable {
        /// How often: at start, and then this long after each sweep ended.
        public var every: Duration
        /// `older_than`: an age as `audit --since` reads one (`7d`).
        public var olderThan: String

        public init(every: Duration, olderThan: String = "7d") {
            self.every = every
            self.olderThan = olderThan
        }
    }

    public struct Auth: Sendable, Equatable {
        public var method: AuthMethod = .aksk
        public var signing: Signing = .auto
        /// A `key = value` file with `ak`, `sk` (and `security_token`), or `token`; mode 0600.
        public var credentialsFile: String?
        /// `auth.method: metadata`: where the ECS metadata service answers.
        public var metadataEndpoint: String = MetadataCredentialsClient.defaultEndpoint

        public init(method: AuthMethod = .aksk, signing: Signing = .auto, credentialsFile: String? = nil,
                    metadataEndpoint: String = MetadataCredentialsClient.defaultEndpoint) {
            self.method = method
            self.signing = signing
            self.credentialsFile = credentialsFile
            self.metadataEndpoint = metadataEndpoint
        }
    }

    public enum Signing: Sendable, Equatable {
        /// Derived keys exactly when the endpoint's host is not a regional public endpoint.
        case auto
        case algorithm(SigningAlgorithm)
    }

    public struct Retry: Sendable, Equatable {
        /// Requests per task before it is `failed`.
        public var maxAttempts = 8
        public var baseDelay: Duration = .milliseconds(1_000)
        public var maxDelay: Duration = .milliseconds(300_000)

        public init(maxAttempts: Int = 8, baseDelay: Duration = .milliseconds(1_000), maxDelay: Duration = .milliseconds(300_000)) {
            self.maxAttempts = maxAttempts
            self.baseDelay = baseDelay
            self.maxDelay = maxDelay
        }
    }

    public init(endpoint: String, region: String, projectID: String) {
        self.endpoint = endpoint
        self.region = region
        self.projectID = projectID
    }

    /// The endpoint's host, lower-cased, without port or brackets.
    public var endpointHost: String {
        URLComponents(string: endpoint)?.host?.lowercased() ?? ""
    }

    /// The algorithm requests are signed with, `auto` resolved against the endpoint's host.
    public var signingAlgorithm: SigningAlgorithm {
        switch auth.signing {
        case .algorithm(let algorithm): algorithm
        case .auto: RequestSigner.usesDerivedSigning(host: endpointHost) ? .v11HMACSHA256 : .sdkHMACSHA256
        }
    }
}
