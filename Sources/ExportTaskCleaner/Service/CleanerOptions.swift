/// What the cleaner service needs from the configuration, with the service's own pacing.
public struct CleanerOptions: Sendable {
    public var projectID: String
    public var instanceID: String?
    public var concurrency: Int
    public var maxRequestsPerSecond: Double
    public var leaseDuration: Duration
    public var shutdownGrace: Duration
    public var pollInterval: Duration
    /// Exit once nothing is pending or in progress (`run --drain`).
    public var drain: Bool
    /// Where the credentials came from and how requests are signed, for the log line that
    /// says credentials were refused. Never the credentials themselves.
    public var credentialsDescription: String
    /// How often `STATUS=` and the heartbeat are refreshed.
    public var statusInterval: Duration = Tuning.statusInterval
    /// How often a progress line is logged at info while there is work.
    public var progressInterval: Duration = Tuning.progressInterval
    /// After the shutdown grace period, how much longer outcomes that cannot be written are
    /// retried before they are given up on (logged one each, and `run()` throws).
    public var outcomeWriteGrace: Duration = Tuning.outcomeWriteGrace
    /// The group commit's longest wait for more outcomes at a low rate (zero: none).
    public var groupCommitWait: Duration = Tuning.groupCommitWait

    public init(projectID: String, instanceID: String? = nil, concurrency: Int = 8, maxRequestsPerSecond: Double = 20,
                leaseDuration: Duration = .seconds(300), shutdownGrace: Duration = .seconds(10),
                pollInterval: Duration = .seconds(1), drain: Bool = false, credentialsDescription: String = "") {
        self.projectID = projectID
        self.instanceID = instanceID
        self.concurrency = concurrency
        self.maxRequestsPerSecond = maxRequestsPerSecond
        self.leaseDuration = leaseDuration
        self.shutdownGrace = shutdownGrace
        self.pollInterval = pollInterval
        self.drain = drain
        self.credentialsDescription = credentialsDescription
    }

    public init(configuration: Configuration, drain: Bool, credentialsDescription: String) {
        self.init(projectID: configuration.projectID, instanceID: configuration.instanceID,
                  concurrency: configuration.concurrency, maxRequestsPerSecond: configuration.maxRequestsPerSecond,
                  leaseDuration: configuration.leaseDuration, shutdownGrace: configuration.shutdownGrace,
                  pollInterval: configuration.pollInterval, drain: drain, credentialsDescription: credentialsDescription)
    }

    /// Leases are renewed this often while their requests are in flight.
    var leaseRenewalInterval: Duration { Tuning.leaseRenewalInterval(lease: leaseDuration) }
    /// A runner sends a claimed task only while its lease has more than this left.
    var leaseSendMargin: Duration { Tuning.leaseSendMargin(lease: leaseDuration) }
    /// Dead leases (of a process that died) are looked for this often.
    var leaseSweepInterval: Duration { Tuning.leaseSweepInterval(lease: leaseDuration) }
    /// The work loop wakes at least this often, even when idle, so the watchdog sees it alive.
    var idleTick: Duration { Tuning.idleTick(pollInterval: pollInterval) }
}
