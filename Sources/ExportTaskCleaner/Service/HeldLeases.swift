import FoundationEssentials

/// The leases this service holds, as far as it knows: what housekeeping renews, and what a
/// runner checks before it sends a claimed task (docs/operations.md, "Behaviour under failures").
///
/// A lease holds until the time last written for it (at the claim, then at each renewal that
/// succeeded), and only for the tasks the last renewal still found under it: a task another
/// runner took over after this one stalled (a stopped process, renewals failing while the
/// database was locked) is not sent again.
struct HeldLeases: Sendable, Equatable {
    private struct Lease: Equatable {
        var tasks: Set<Int>
        var until: Date
    }

    private var leases: [String: Lease] = [:]
    /// Tasks a renewal no longer found under their lease.
    private var lost: Set<Int> = []

    /// The tokens with tasks not yet finished, for renewal.
    var tokens: [String] { Array(leases.keys) }

    var isEmpty: Bool { leases.isEmpty }

    /// A claim leased `tasks` under `token` until `until`.
    mutating func claimed(_ tasks: [ClaimedTask], token: String, until: Date) {
        guard !tasks.isEmpty else { return }
        leases[token] = Lease(tasks: Set(tasks.map(\.id)), until: until)
    }

    /// A renewal wrote `until` for `tokens` and found `held` still under them.
    mutating func renewed(tokens: [String], until: Date, held: Set<Int>) {
        for token in tokens {
            guard var lease = leases[token] else { continue }
            lease.until = max(lease.until, until)
            for task in lease.tasks where !held.contains(task) { lost.insert(task) }
            leases[token] = lease
        }
    }

    /// Whether `task` may be sent at `now`: its lease is known to hold for more than `margin`.
    func mayStart(_ task: ClaimedTask, now: Date, margin: Duration) -> Bool {
        guard let lease = leases[task.leaseToken], lease.tasks.contains(task.id), !lost.contains(task.id) else { return false }
        return now.addingTimeInterval(margin.timeInterval) < lease.until
    }

    /// `task`'s outcome is written (or given up on): nothing more to renew for it.
    mutating func finished(_ task: ClaimedTask) {
        lost.remove(task.id)
        guard var lease = leases[task.leaseToken] else { return }
        lease.tasks.remove(task.id)
        leases[task.leaseToken] = lease.tasks.isEmpty ? nil : lease
    }
}
