import Synchronization

/// Tasks claimed ahead of free slots, and the slots in use.
///
/// The work loop claims tasks into it and starts a runner for each free slot; a runner works
/// one task after another for as long as tasks are ready and the traffic limits let it keep
/// its slot, so a steady stream of deletes needs no task creation and no trip through the
/// work loop per delete.
final class ReadyTasks: Sendable {
    private struct State {
        var tasks = ArraySlice<ClaimedTask>()
        var inFlight = 0
        /// Slots lent to requests that are no task's: a sweep's list request.
        var sideSlots = 0
        var closed = false
    }

    private let state = Mutex(State())

    /// Tasks waiting for a slot.
    var count: Int { state.withLock { $0.tasks.count } }

    /// Slots in use: runners working a task.
    var inFlight: Int { state.withLock { $0.inFlight } }

    /// Slots in use, a sweep's list request's included: what the traffic limits count.
    var slotsInUse: Int { state.withLock { $0.inFlight + $0.sideSlots } }

    func append(contentsOf tasks: [ClaimedTask]) {
        state.withLock { $0.tasks.append(contentsOf: tasks) }
    }

    /// Takes a task for a new runner, which holds a slot until `next` returns nil; nil when
    /// none is ready or `mayStart` (given the slots in use) says no, checked under the same lock
    /// as a side slot is lent, so that the two never both take the last one.
    func startRunner(mayStart: (_ slotsInUse: Int) -> Bool = { _ in true }) -> ClaimedTask? {
        state.withLock { state in
            guard !state.closed, !state.tasks.isEmpty, mayStart(state.inFlight + state.sideSlots),
                  let task = state.tasks.popFirst() else { return nil }
            state.inFlight += 1
            return task
        }
    }

    /// Lends a slot to a request that is no task's (a sweep's list) when `mayTake` (given the
    /// slots in use) allows: false when it does not, or once closed. Give it back with
    /// ``returnSideSlot()``.
    func takeSideSlot(mayTake: (_ slotsInUse: Int) -> Bool) -> Bool {
        state.withLock { state in
            guard !state.closed, mayTake(state.inFlight + state.sideSlots) else { return false }
            state.sideSlots += 1
            return true
        }
    }

    func returnSideSlot() {
        state.withLock { $0.sideSlots = max(0, $0.sideSlots - 1) }
    }

    /// A runner's next task, or nil when it must give back its slot: nothing is ready, the
    /// service is stopping, or `mayKeepSlot` (given the slots in use, this one included) says no.
    /// Also returns how many tasks are left ready.
    func next(mayKeepSlot: (_ inFlight: Int) -> Bool) -> (task: ClaimedTask, left: Int)? {
        state.withLock { state in
            if !state.closed, !state.tasks.isEmpty, mayKeepSlot(state.inFlight + state.sideSlots), let task = state.tasks.popFirst() {
                return (task, state.tasks.count)
            }
            state.inFlight -= 1
            return nil
        }
    }

    /// Stops handing out tasks; returns those never started.
    func close() -> [ClaimedTask] {
        state.withLock { state in
            state.closed = true
            defer { state.tasks = [] }
            return Array(state.tasks)
        }
    }
}
