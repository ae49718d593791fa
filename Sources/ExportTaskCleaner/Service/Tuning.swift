/// The service's tuning constants, in one place, each with why it has its value.
///
/// None of them is configuration: they follow from the configured figures (the lease, the
/// concurrency, the poll interval, the rate) or from how SQLite, IAM and systemd behave, and an
/// operator should never need to change them. The types that use them read them from here.
enum Tuning {
    // MARK: Leases

    /// Leases of requests in flight are renewed every third of the lease: two renewals in a row
    /// can fail (the database busy past its timeout) before a lease runs out under a live request.
    static func leaseRenewalInterval(lease: Duration) -> Duration { lease / 3 }

    /// The longest wait between two sweeps for dead leases.
    static let longestLeaseSweepInterval: Duration = .seconds(60)

    /// Dead leases (a process that died) are looked for every half lease, and at least once a
    /// minute: a dead holder's tasks are back to pending at most half a lease (or a minute) after
    /// their lease ran out. A sweep is one indexed `UPDATE`, so a short lease may sweep often.
    static func leaseSweepInterval(lease: Duration) -> Duration { min(lease / 2, longestLeaseSweepInterval) }

    /// A runner sends a claimed task only while its lease, as last written, has more than this
    /// left: a tenth of it, at most 30 s. Less means renewals have been failing, and another
    /// runner may soon take the task over.
    static func leaseSendMargin(lease: Duration) -> Duration { min(lease / 10, .seconds(30)) }

    // MARK: The work loop

    /// The longest the work loop sleeps when idle.
    static let longestIdleTick: Duration = .seconds(1)

    /// The work loop wakes at least this often, even when idle: the watchdog sees it alive, and an
    /// idle loop notices another connection's writes (`PRAGMA data_version`, one cheap read a
    /// tick) within `poll_interval`, or a second when that is longer.
    static func idleTick(pollInterval: Duration) -> Duration { min(pollInterval, longestIdleTick) }

    /// The most tasks claimed ahead of the free slots.
    static let prefetchCap = 32

    /// Tasks claimed ahead of the free slots: half the concurrency, so that a freed slot starts
    /// its next request at once and claims come in batches rather than a task at a time, or
    /// half a second's worth at `rate` if that is more, so that at a low concurrency each claim
    /// still carries many tasks (at 50 requests/s and concurrency 16: 25 ahead, a claim every
    /// 13 deletes instead of every 5; each claim is a write transaction). At least one; at most
    /// 32, since tasks claimed ahead are leased but unworked (a crash leaves them waiting for
    /// their lease to run out) and a larger batch saves no more round trips.
    static func prefetch(concurrency: Int, rate: Double) -> Int {
        let byConcurrency = max(concurrency, 0) / 2
        // Written so that NaN gives 0 and infinity the cap: the rate is validated, but this
        // must not trap whatever it is given.
        let byRate = rate > 0 ? Int(min(rate / 2, Double(prefetchCap))) : 0
        return max(1, min(prefetchCap, max(byConcurrency, byRate)))
    }

    /// A runner tells the work loop that few tasks are ready when this many are left: with every
    /// slot busy, the loop claims more once fewer than `prefetch / 2` wait, so this is the first
    /// count at which that holds, and the claim arrives while the runners still have work.
    static func lowWater(prefetch: Int) -> Int { max(0, prefetch / 2 - 1) }

    /// The longest wait before a failed claim is tried again.
    static let longestClaimRetryDelay: Duration = .seconds(5)

    /// After `failures` failed claims in a row (the database busy past its timeout, the disk
    /// full), the work loop's next tick comes after 200 ms, doubling to 5 s: a locked database
    /// is not hammered, and a brief lock costs little. (`100 << failures` ms, the shift capped so
    /// it cannot overflow.)
    static func claimRetryDelay(failures: Int) -> Duration {
        .milliseconds(min(Int(longestClaimRetryDelay.milliseconds), 100 << min(failures, 6)))
    }

    /// A runner waiting for a far-off start slot (a low rate) wakes this often to see whether the
    /// service is stopping, so that a shutdown never waits for the slot. Once a second: at a low
    /// rate every runner waits, and each wakeup is a thread's (measured: 250 ms steps cost about
    /// three context switches a delete at 20 requests/s).
    static let runnerWakeStep: Duration = .seconds(1)

    /// Claims of at most this many tasks read the rows first and then lease them one by one;
    /// larger ones run as one statement, whose temporary tables are a fixed cost that a claim of
    /// one task would pay in full (measured: below 8, the row-by-row claim is cheaper).
    static let smallClaim = 8

    // MARK: Pacing and limits

    /// A second, and 1% more: no window this long holds more than `max_requests_per_second`
    /// starts. A request reaches the server a little after it starts, and that delay varies, so
    /// the server's view of a second must not fill up either.
    static let startWindow: Duration = .milliseconds(1_010)

    /// The start window forgets departed starts in bulk, once this many (and half its array) have
    /// left: amortised constant time a start, without copying the array on every start.
    static let startWindowCompaction = 1_024

    /// The pacer's longest spacing between starts: the configuration allows rates down to
    /// 0.001 a second, and a day keeps any rate's conversion to `Duration` from trapping.
    static let longestStartSpacing: Duration = .seconds(86_400)

    /// 429s within this long of the last halving count as the same congestion: the answers of
    /// requests already in flight when the server began refusing arrive within about a second,
    /// and halving for each would cut the rate to the floor for one episode.
    static let throttleWindow: Duration = .seconds(1)

    /// After a 429, rate and concurrency recover one step per calm second (additive increase).
    static let recoveryPeriod: Duration = .seconds(1)

    /// A recovery step adds a tenth of the configured rate (at least 1 a second), so the rate is
    /// back within ten calm seconds of the deepest cut; the concurrency gains one a step.
    static let rateRecoverySteps: Double = 10

    // MARK: Credentials

    /// The first pause after the server refuses the credentials (401). IAM locks a key after a
    /// few failed signatures, so refused requests must not come in a burst; a minute lets a
    /// rotated key or a clock fix take effect before the one probe.
    static let credentialPause: Duration = .seconds(60)

    /// Pauses double up to this: a wrong key costs at most four probes an hour, and an
    /// operator's fix is picked up within a quarter of an hour.
    static let longestCredentialPause: Duration = .seconds(15 * 60)

    // MARK: Writing outcomes

    /// Outcomes a transaction writes at most. A batch pays one commit (`fsync`) for all its
    /// outcomes, which is what lets thousands be written a second; the cap bounds how long a
    /// transaction holds the write lock that `enqueue` and the operator's commands wait on, and
    /// the memory a batch takes.
    static let recorderBatch = 512

    /// Group commit at a low rate: when outcomes trickle in while requests are in flight, the
    /// writer waits this long at most for more before it writes, so a transaction carries
    /// several (5 at 50 requests/s) instead of one. A confirmed outcome waits no longer than
    /// this; shutdown and the end of a drain write at once.
    static let groupCommitWait: Duration = .milliseconds(100)

    /// No wait once this many outcomes are waiting: the batch pays for its transaction.
    static let groupCommitEnough = 32

    /// The longest wait before a failed write of outcomes is tried again.
    static let longestRecorderRetryDelay: Duration = .seconds(5)

    /// After the shutdown grace period, how much longer outcomes that cannot be written are
    /// retried before the service gives up on them, logs each, and exits 1. With the grace
    /// period (10 s by default) and one write blocked for SQLite's busy timeout (10 s), this
    /// stays inside the unit's `TimeoutStopSec=60s`, which also covers writes queued behind
    /// one another on the busy timeout (docs/operations.md, "Behaviour under failures").
    static let outcomeWriteGrace: Duration = .seconds(5)

    /// After `failures` failed writes of a batch in a row: 100 ms, doubling to 5 s. Confirmed
    /// outcomes are never dropped, so the writer keeps trying, but a locked or full database is
    /// not hammered. (`50 << failures` ms, the shift capped so it cannot overflow.)
    static func recorderRetryDelay(failures: Int) -> Duration {
        .milliseconds(min(Int(longestRecorderRetryDelay.milliseconds), 50 << min(failures, 7)))
    }

    // MARK: Reporting

    /// `STATUS=` and the heartbeat row are refreshed this often: `systemctl status` and the
    /// `status` command show figures at most 5 s old, for one small write (and a count of the
    /// tasks, only when something changed) every 5 s.
    static let statusInterval: Duration = .seconds(5)

    /// A progress line is logged this often while there is work: enough to follow a long drain
    /// in the journal, few enough lines for a day of work (under 3,000).
    static let progressInterval: Duration = .seconds(30)

    /// The housekeeping loop never sleeps less than this, so that a step that overran (a wait
    /// already past) does not make it spin.
    static let shortestHousekeepingSleep: Duration = .milliseconds(10)

    // MARK: Retries

    /// The longest `Retry-After` honoured, unless `max_delay` is longer: no answer can park a
    /// task for years (docs/operations.md, "Behaviour under failures").
    static let retryAfterLimit: Duration = .seconds(3_600)
}
