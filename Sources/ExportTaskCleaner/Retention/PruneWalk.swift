/// The walk both stores make over the audit rows after the checkpoint to plan a prune's batch
/// (docs/database.md, "Retention"): each row checked against the chain as the archive will hold
/// it, each row's task classified once (by the store, which knows how to look it up), each row
/// fed to the ``PruneCut``; at the end, the rows up to the cut, the tasks that leave whole with
/// them, and the carries of leaving tasks whose last row lies past the cut.
package struct PruneWalk {
    /// A row's task, as the store found it.
    package enum Task: Sendable, Equatable {
        /// It leaves (finished before the cutoff); its last audit row.
        case leaving(lastRow: Int)
        /// It stays; where its current cycle began (its last `requeued` row), if anywhere.
        case stays(cycleStart: Int?)
        /// The row names no task, or a task that is now another's.
        case orphan
    }

    /// What the walk planned.
    package struct Finished {
        package var entries: [AuditEntry]
        /// Tasks whose every row is in `entries`: they leave with this batch.
        package var leavingWhole: [Int]
        package var carries: [PruneCarry]
        package var heldAt: Int?
    }

    private let position: ChainPosition
    private var cut: PruneCut
    private var previous: String
    private var expectedID: Int
    private var tasks: [Int: Task] = [:]
    private var leaving: [Int] = []
    private var entries: [AuditEntry] = []

    package init(after position: ChainPosition, targetRows: Int) {
        self.position = position
        self.cut = PruneCut(targetRows: targetRows)
        self.previous = position.hash
        self.expectedID = position.lastID &+ 1
    }

    /// How many rows to read at most.
    package var targetRows: Int { cut.targetRows }

    /// Feeds the next row; `classify` is asked once per task (never for a row without one).
    /// Returns false once the cut is made: read no further. Throws when the row does not
    /// continue the chain: a row the archive could not verify is not moved, nor any after it.
    package mutating func feed(_ entry: AuditEntry, classify: (_ entry: AuditEntry, _ taskID: Int) throws -> Task) throws -> Bool {
        guard entry.id == expectedID, let hash = entry.hash,
              AuditChain.hash(previous: previous, values: AuditChain.values(of: entry)) == hash else {
            throw CleanerError.runtime(
                "prune: audit row \(entry.id) does not continue the chain from row \(position.lastID); nothing from it on was archived (see `audit --verify`)")
        }
        previous = hash
        expectedID = entry.id &+ 1
        let task: Task
        if let taskID = entry.taskID {
            if let known = tasks[taskID] {
                task = known
            } else {
                task = try classify(entry, taskID)
                tasks[taskID] = task
                if case .leaving = task { leaving.append(taskID) }
            }
        } else {
            task = .orphan
        }
        let row: PruneCut.Row = switch task {
        case .leaving: .leaving
        case .orphan: .orphan
        case .stays(let start): start.map { entry.id < $0 } == true ? .earlierCycle : .held
        }
        if cut.feed(id: entry.id, row) == .stop {
            if row != .held, cut.cut == entry.id { entries.append(entry) }
            return false
        }
        entries.append(entry)
        return true
    }

    /// The batch up to the cut; with no cut, only where the chain is held (nil: nothing to move).
    package func finish() -> Finished? {
        guard let end = cut.cut else {
            return cut.heldAt.map { Finished(entries: [], leavingWhole: [], carries: [], heldAt: $0) }
        }
        let moved = entries.filter { $0.id <= end }
        var whole: [Int] = []
        var carries: [Int: PruneCarry] = [:]
        for id in leaving {
            guard case .leaving(let last) = tasks[id] else { continue }
            if last <= end {
                whole.append(id)
            } else if let first = moved.first(where: { $0.taskID == id }) {
                carries[id] = PruneCarry(taskID: id, exportTaskID: first.exportTaskID)
            }
        }
        for entry in moved {
            if let id = entry.taskID, carries[id] != nil { carries[id]?.add(entry) }
        }
        return Finished(entries: moved, leavingWhole: whole, carries: carries.values.sorted { $0.taskID < $1.taskID },
                        heldAt: cut.heldAt)
    }
}
