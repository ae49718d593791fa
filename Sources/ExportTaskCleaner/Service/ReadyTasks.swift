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
        var closed = false
    }

    private let state = Mutex(State())

    /// Tasks waiting for a slot.
    var count: Int { state.withLock { $0.tasks.count } }

    /// Slots in use: runners working a task.
    var inFlight: Int { state.withLock { $0.inFlight } }

    func append(contentsOf tasks: [ClaimedTask]) {
        state.withLock { $0.tasks.append(contentsOf: tasks) }
    }

    /// Takes a task for a new runner, which holds a slot until `next` returns nil.
    func startRunner() -> ClaimedTask? {
        state.withLock { state in
            guard !state.closed, let task = state.tasks.popFirst() else { return nil }
            state.inFlight += 1
            return task
        }
    }

    /// A runner's next task, or nil when it must give back its slot: nothing is ready, the
    /// service is stopping, or `mayKeepSlot` (given the slots in use, this one included) says no.
    /// Also returns how many tasks are left ready.
    func next(mayKeepSlot: (_ inFlight: Int) -> Bool) -> (task: ClaimedTask, left: Int)? {
        state.withLock { state in
            if !state.closed, !state.tasks.isEmpty, mayKeepSlot(state.inFlight), let task = state.tasks.popFirst() {
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
