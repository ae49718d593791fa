import FoundationEssentials

/// The service's half of the storage seam, as swift-jobs' `JobQueueDriver` is: what the work
/// loop and its housekeeping need, and nothing an operator asks. Every store implements it
/// (``SQLiteQueueStore``, ``PostgresQueueStore``); the conformance suite in the tests defines
/// what each call means, and the service never learns which store it runs on.
///
/// Every write that ends or gives back a task is guarded by the lease token handed out by
/// `claim`, so a late or duplicate writer changes nothing. A store reports its failures as
/// ``StoreError`` (docs/operations.md, "Behaviour under failures").
public protocol WorkQueue: Sendable {
    /// Atomically leases up to `limit` pending tasks that are due at `now`, writing one attempt
    /// ahead for each (docs/database.md, "The database").
    func claim(limit: Int, leaseToken: String, leaseUntil: Date, now: Date) async throws -> [ClaimedTask]

    /// Applies transitions in one transaction, each with its audit row; returns, for each,
    /// whether its lease still held. Where it did not (a stale writer), the task is left as it
    /// is, and a transition with a request still gets its audit row, marked `lease_lost`.
    ///
    /// Callers that must not lose the write shield it from their own cancellation; a store
    /// may still give up when cancelled, before it has written anything.
    func apply(_ transitions: [TaskTransition]) async throws -> [Bool]

    /// Extends the leases handed out under these tokens that are still held; returns the IDs of
    /// the tasks they hold.
    func renewLeases(tokens: [String], until: Date) async throws -> Set<Int>

    /// Returns tasks whose lease ran out to `pending`, with a `lease_expired` audit row each.
    func expireLeases(now: Date) async throws -> [ExpiredLease]

    /// Number of tasks in each state (every state present, zero when none): the status line.
    func counts() async throws -> [TaskState: Int]

    /// The earliest `next_attempt_at` of a pending task.
    func nextDue() async throws -> Date?

    /// Whether any task is pending (due or scheduled) or in progress.
    func hasUnfinishedTasks() async throws -> Bool

    /// The change signal: a number that changes whenever another writer may have added or
    /// changed tasks (SQLite: `PRAGMA data_version`; PostgreSQL: a count of the notifications
    /// heard, which also moves when the listening connection is lost). An idle service polls
    /// it, so it must be nearly free; a store that cannot tell returns a new number each time.
    func changeSignal() async throws -> Int

    /// Records that a service holds the queue, for `status`.
    func heartbeat(startedAt: Date, status: String, now: Date) async throws

    /// Removes this runner's heartbeat when the service stops.
    func removeHeartbeat() async throws

    /// When the oldest pending task was queued (`oldest_pending_age_seconds`).
    func oldestPendingEnqueuedAt() async throws -> Date?

    /// Write transactions committed so far (for the log line at the end of a run).
    var writeTransactions: Int { get }
}

extension WorkQueue {
    public var writeTransactions: Int { 0 }
}
