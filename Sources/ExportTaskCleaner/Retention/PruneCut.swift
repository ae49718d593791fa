/// Where a batch of pruning ends (docs/database.md, "Retention"). The archive is always a
/// prefix of the audit chain: a batch takes audit rows in ID order from the checkpoint on, up
/// to its target, and stops before the first row of a task's current cycle (since its last
/// `requeued` row) when that task stays in the database. A task that leaves may have rows on
/// both sides of a batch's end: its task row leaves with the batch that holds its last row,
/// and meanwhile the database carries what its archived rows counted (``PruneCarry``), so the
/// consistency check holds for every task between any two batches.
///
/// A decision with several inputs, so a state machine fed one row at a time, tested by table
/// (`PruneCutTests`); the store reads the rows and says what each is.
package struct PruneCut: Sendable, Equatable {
    /// What the row after the checkpoint is, as the store found its task.
    package enum Row: Sendable, Equatable {
        /// A row of a task that leaves (finished before the cutoff).
        case leaving
        /// A row from before the current cycle of a task that stays: archived, the task stays.
        case earlierCycle
        /// A row whose task is gone (removed by hand): archived.
        case orphan
        /// A row of the current cycle of a task that stays: the chain is held here.
        case held
    }

    package enum Decision: Sendable, Equatable {
        /// Feed the next row.
        case more
        /// The batch ends at ``cut`` (nil: nothing can be moved now).
        case stop
    }

    /// Rows a batch holds at most.
    package let targetRows: Int
    /// The last row of the batch so far.
    package private(set) var cut: Int?
    /// Set when a held row stopped the batch.
    package private(set) var heldAt: Int?
    private var taken = 0

    package init(targetRows: Int) {
        self.targetRows = max(1, targetRows)
    }

    /// Takes the next row in ID order (IDs dense from the checkpoint on).
    package mutating func feed(id: Int, _ row: Row) -> Decision {
        guard taken < targetRows else { return .stop }
        if row == .held {
            heldAt = id
            return .stop
        }
        taken += 1
        cut = id
        return taken < targetRows ? .more : .stop
    }
}
