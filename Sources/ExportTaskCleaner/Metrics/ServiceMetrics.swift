import CoreMetrics
import FoundationEssentials
import Synchronization

/// The service's metrics (docs/metrics.md, "Metrics"), recorded through swift-metrics with the factory
/// given (Prometheus' in `run`), so that nothing depends on a global bootstrap. Every series
/// exists from the start, at zero, so that rates and alerts work before the first event.
public final class ServiceMetrics: Sendable {
    public static let prefix = "export_task_cleaner_"

    /// The audit outcomes of rows that stand for a request (`requests_total{outcome}`).
    public static let requestOutcomes: [AuditOutcome] = [
        .deleted, .notFound, .notFoundAfterUnknown, .forbidden, .rejected, .retry, .failed, .authRefused, .released,
    ]

    private let requests: [AuditOutcome: CoreMetrics.Counter]
    private let duration: CoreMetrics.Timer
    private let tasks: [TaskState: Gauge]
    private let inFlight: Gauge
    private let concurrencyLimit: Gauge
    private let rateLimit: Gauge
    private let credentialsPaused: Gauge
    private let oldestPendingAge: Gauge
    // Retention (docs/metrics.md): the database's size and what the last prune did.
    private let databaseSize: Gauge
    private let archivedRows: CoreMetrics.Counter
    private let archivedTasks: CoreMetrics.Counter
    private let lastPrune: Gauge
    private let lastPruneDuration: Gauge
    /// When the oldest pending task was queued, as last read: its age is taken at each scrape.
    private let oldestPending = Mutex<Date?>(nil)

    public init(factory: any MetricsFactory) {
        let prefix = Self.prefix
        requests = Dictionary(uniqueKeysWithValues: Self.requestOutcomes.map { outcome in
            (outcome, CoreMetrics.Counter(label: prefix + "requests_total", dimensions: [("outcome", outcome.rawValue)], factory: factory))
        })
        duration = CoreMetrics.Timer(label: prefix + "request_duration_seconds", factory: factory)
        tasks = Dictionary(uniqueKeysWithValues: TaskState.allCases.map { state in
            (state, Gauge(label: prefix + "tasks", dimensions: [("state", state.rawValue)], factory: factory))
        })
        inFlight = Gauge(label: prefix + "in_flight", factory: factory)
        concurrencyLimit = Gauge(label: prefix + "concurrency_limit", factory: factory)
        rateLimit = Gauge(label: prefix + "rate_limit_per_second", factory: factory)
        credentialsPaused = Gauge(label: prefix + "credentials_paused", factory: factory)
        oldestPendingAge = Gauge(label: prefix + "oldest_pending_age_seconds", factory: factory)
        databaseSize = Gauge(label: prefix + "database_size_bytes", factory: factory)
        archivedRows = CoreMetrics.Counter(label: prefix + "archived_audit_rows_total", factory: factory)
        archivedTasks = CoreMetrics.Counter(label: prefix + "archived_tasks_total", factory: factory)
        lastPrune = Gauge(label: prefix + "last_prune_timestamp_seconds", factory: factory)
        lastPruneDuration = Gauge(label: prefix + "last_prune_duration_seconds", factory: factory)
        for gauge in [inFlight, concurrencyLimit, rateLimit, credentialsPaused, oldestPendingAge, databaseSize, lastPrune, lastPruneDuration]
            + Array(tasks.values) {
            gauge.record(0)
        }
    }

    /// A request's audit row was written with `outcome` (lease lost or not: the row is there).
    func requestRecorded(_ outcome: AuditOutcome) {
        requests[outcome]?.increment()
    }

    /// A request attempt took `duration` (every attempt with an audit row's `delivery`, as
    /// `requests_total` counts them).
    func requestFinished(after duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        self.duration.recordNanoseconds(nanoseconds.overflow ? Int64.max : nanoseconds.partialValue &+ attoseconds / 1_000_000_000)
    }

    /// The task counts and when the oldest pending task was queued, as housekeeping last read them.
    /// `keepingAge`: the oldest pending task could not be read; its last reading stands.
    func update(counts: [TaskState: Int], oldestPending: Date?, keepingAge: Bool = false) {
        for (state, gauge) in tasks { gauge.record(counts[state] ?? 0) }
        if !keepingAge { self.oldestPending.withLock { $0 = oldestPending } }
    }

    /// A prune ended at `at` after `duration`, having moved `summary` (docs/metrics.md).
    func pruned(_ summary: PruneSummary, at: Date, duration: Duration) {
        archivedRows.increment(by: summary.auditRows)
        archivedTasks.increment(by: summary.tasks)
        lastPrune.record(at.timeIntervalSince1970)
        lastPruneDuration.record(duration.timeInterval)
    }

    /// The database's size in bytes, as last read.
    func update(databaseSize bytes: Int) {
        databaseSize.record(bytes)
    }

    /// The live figures, read when scraped.
    func update(inFlight requests: Int, concurrency: Int, rate: Double, paused: Bool, now: Date) {
        let age = oldestPending.withLock { $0 }.map { max(0, now.timeIntervalSince($0)) } ?? 0
        oldestPendingAge.record(age.isFinite ? age : 0)
        inFlight.record(requests)
        concurrencyLimit.record(concurrency)
        rateLimit.record(rate)
        credentialsPaused.record(paused ? 1 : 0)
    }
}
