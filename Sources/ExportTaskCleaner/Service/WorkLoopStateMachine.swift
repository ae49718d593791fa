import FoundationEssentials

/// The work loop's decisions, as a value: no I/O, no clock, no locks.
///
/// The loop (`CleanerService.workLoop`) interprets it, as `ServiceGroup` and async-http-client's
/// `HTTPConnectionPool.StateMachine` do theirs. Each event of the loop's stream begins a *pass*,
/// fed in with `on(_:now:credentialsPaused:)`. In a pass the machine asks the loop for what it
/// needs, one request at a time (`Actions.then`); the loop performs the request and feeds the
/// answer in with `on(_:)`, until the pass ends with `.awaitEvent` (or `.finish`). A pass:
///
/// 1. While draining, credentials refused (the circuit open) stop the service.
/// 2. Unless stopping: when idle, a known next due time that has come means work; otherwise,
///    once a tick, `PRAGMA data_version` is polled, and a change means work.
/// 3. With the free slots measured: when there may be work and room, claim — the free slots,
///    plus `prefetch` ahead once an answer shows the credentials work, minus the tasks already
///    waiting; then start a runner per free slot.
/// 4. While draining, with nothing held, no work known and no failing store, ask the store
///    whether anything is unfinished; if not, the service has drained.
/// 5. Stopping and nothing held (every claimed task's outcome written): finish. Otherwise
///    make sure a tick is coming, and await the next event.
///
/// A shutdown request sets two deadlines: at the end of the grace period the requests in
/// flight are cancelled; `Tuning.outcomeWriteGrace` later, outcomes that still cannot be
/// written are given up on (the recorder logs each) and the loop finishes.
struct WorkLoopStateMachine: Sendable {
    /// The figures the decisions depend on, fixed for a run but for `prefetch` (a reload may
    /// change the concurrency it derives from).
    struct Configuration: Equatable, Sendable {
        /// Tasks claimed ahead of the free slots (`Tuning.prefetch`).
        var prefetch: Int
        /// `run --drain`: end once nothing is pending or in progress.
        var drain: Bool
        /// The longest wait between two passes when idle (`CleanerOptions.idleTick`, from `Tuning`).
        var idleTick: Duration
        /// How long requests in flight may run on after a shutdown request.
        var shutdownGrace: Duration
        /// How much longer outcomes that cannot be written are retried.
        var writeGrace: Duration = Tuning.outcomeWriteGrace
    }

    // MARK: Inputs

    /// What happened: an element of the loop's stream, or the start.
    enum Event: Equatable, Sendable {
        /// The loop started: its first pass.
        case started
        /// A runner gave back its slot.
        case slotFreed
        /// Few claimed tasks are left for the runners.
        case runningLow
        /// `count` claimed tasks' outcomes are written; some are due again from `dueAgain` on.
        case committed(count: Int, dueAgain: Date?)
        /// Tasks may be claimable that were not (dead leases were expired).
        case tasksReturned
        /// Outcomes could not be written because the file is corrupt: stop, and end with
        /// `databaseCorrupt` (exit 1) even when already stopping for another reason.
        case storeCorrupt
        /// The tick the machine scheduled.
        case tick
        /// Graceful shutdown was asked for at this time: its deadlines count from then, however
        /// late the loop takes the request up (after a claim blocked on a locked database).
        case shutdownRequested(at: Date)
        /// The shutdown grace period ran out, with `inFlight` requests still running.
        case graceExpired(inFlight: Int)
        /// The time for writing outcomes after the grace period ran out.
        case writeDeadlinePassed
        /// A reload changed the concurrency: this many tasks are claimed ahead from now on.
        case reconfigured(prefetch: Int)
        /// New credentials arrived: a paused circuit may let a probe through now.
        case credentialsChanged
    }

    /// What a claim found when fewer tasks were due than asked for, read in the same trip.
    struct Shortfall: Equatable, Sendable {
        var nextDue: Date?
        var dataVersion: Int
    }

    /// The loop's answer to the request the machine made.
    enum Answer: Equatable, Sendable {
        /// To `.pollDataVersion`; nil when it could not be read.
        case dataVersion(Int?)
        /// To `.measureSlots`: how many requests may start now, whether the credentials are known
        /// to work, and how many claimed tasks wait for a slot.
        case slotsFree(free: Int, verified: Bool, waiting: Int)
        /// To `.claim`: `tasks` claimed (invalid ones included: their outcome is written too).
        case claimed(tasks: Int, shortfall: Shortfall?)
        /// To `.claim`: the store failed; `corrupt` when trying again cannot help.
        case claimFailed(corrupt: Bool)
        /// To `.checkDrained`: whether the store still has unfinished tasks; nil when it could not say.
        case drainChecked(unfinished: Bool?)
        /// To `.settle`: the time.
        case settled(now: Date)
    }

    // MARK: Outputs

    enum StopReason: String, Equatable, Sendable {
        case gracefulShutdown = "graceful shutdown"
        case credentialsRefused = "credentials refused while draining"
        case databaseCorrupt = "database corrupt"
    }

    /// Done at once, in order.
    enum Effect: Equatable, Sendable {
        /// Another connection changed the database: the task counts are stale.
        case markCountsDirty
        /// No new requests: say so, and give the tasks claimed but never started back to pending.
        case stop(StopReason)
        /// Start up to this many runners, one per ready task.
        case startRunners(Int)
        /// Send `.tick` after this long.
        case scheduleTick(after: Duration)
        /// Send `.graceExpired` after this long.
        case scheduleGraceExpiry(after: Duration)
        /// Send `.writeDeadlinePassed` after this long.
        case scheduleWriteDeadline(after: Duration)
        /// Outcomes of this many claimed tasks are still unwritten at the deadline: say so; the
        /// recorder gives up on those that keep failing.
        case abandonUnwritten(Int)
        /// Cancel the runners: their requests are cut off and their tasks released.
        case cancelRequestsInFlight(Int)
    }

    /// What the loop does after the effects.
    enum Next: Equatable, Sendable {
        /// Read `PRAGMA data_version`; answer `.dataVersion`.
        case pollDataVersion
        /// Answer `.slotsFree`.
        case measureSlots
        /// Claim up to `limit` due tasks as of `now`; answer `.claimed` or `.claimFailed`.
        case claim(limit: Int, now: Date)
        /// Ask the store whether any task is unfinished; answer `.drainChecked`.
        case checkDrained
        /// Answer `.settled`.
        case settle
        /// Wait for the next event of the stream.
        case awaitEvent
        /// The loop is over.
        case finish(CleanerService.RunOutcome)
    }

    struct Actions: Equatable, Sendable {
        var effects: [Effect]
        var then: Next

        init(_ effects: [Effect] = [], then: Next) {
            self.effects = effects
            self.then = then
        }
    }

    // MARK: State

    enum Lifecycle: Equatable, Sendable {
        case running
        /// No new requests; the outcome once every claimed task's outcome is written.
        case stopping(CleanerService.RunOutcome)
        case finished(CleanerService.RunOutcome)
    }

    /// Whether the queue may hold due work the loop has not claimed.
    enum Work: Equatable, Sendable {
        case mayHaveWork
        /// The last claim found fewer due tasks than it asked for; the next is due at `nextDue`
        /// (nil: none known). Another connection may add work: `data_version` tells.
        case idle(nextDue: Date?)
    }

    /// Where a pass stands: the request whose answer the machine waits for.
    enum Phase: Equatable, Sendable {
        case awaitingEvent
        case polling(now: Date)
        case measuring(now: Date)
        case claiming(now: Date, free: Int)
        case checkingDrain
        case settling
    }

    struct State: Equatable, Sendable {
        var lifecycle = Lifecycle.running
        var phase = Phase.awaitingEvent
        var work = Work.mayHaveWork
        /// Tasks claimed and not yet committed: the loop finishes only when it is zero, so no
        /// outcome is left unwritten.
        var held = 0
        /// The `data_version` last seen.
        var dataVersion = 0
        /// A tick came since the last poll of `data_version`.
        var pollDue = false
        /// A tick is scheduled and has not come yet.
        var ticking = false
        /// Claims failed in a row.
        var storeFailures = 0
        /// After a failed claim, only the backoff tick tries again: each claim on a locked
        /// database blocks for SQLite's busy timeout, and the other events (answers, freed
        /// slots) would otherwise each try one more, holding up a shutdown request behind them.
        var claimBackingOff = false
    }

    private(set) var configuration: Configuration
    private(set) var state: State

    init(configuration: Configuration, state: State = State()) {
        self.configuration = configuration
        self.state = state
    }

    init(options: CleanerOptions, dataVersion: Int) {
        self.init(configuration: Configuration(
            prefetch: Tuning.prefetch(concurrency: options.concurrency, rate: options.maxRequestsPerSecond), drain: options.drain,
            idleTick: options.idleTick, shutdownGrace: options.shutdownGrace, writeGrace: options.outcomeWriteGrace),
                  state: State(dataVersion: dataVersion))
    }

    /// How the loop ends if it is cut off now (the service cancelled outright).
    var outcome: CleanerService.RunOutcome {
        switch state.lifecycle {
        case .running: .stopped
        case .stopping(let outcome), .finished(let outcome): outcome
        }
    }

    var isRunning: Bool { state.lifecycle == .running }

    // MARK: Transitions

    /// An event of the loop's stream: updates the state, then begins a pass with what the loop
    /// saw as it took the event (the time; whether the credential circuit is open).
    mutating func on(_ event: Event, now: Date, credentialsPaused: Bool) -> Actions {
        precondition(state.phase == .awaitingEvent, "an event in the middle of a pass")
        if case .finished(let outcome) = state.lifecycle { return Actions(then: .finish(outcome)) }
        var effects: [Effect] = []
        switch event {
        case .started, .slotFreed, .runningLow, .credentialsChanged:
            break
        case .reconfigured(let prefetch):
            configuration.prefetch = max(0, prefetch)
        case .committed(let count, let dueAgain):
            state.held -= count
            if case .idle(let nextDue) = state.work, let due = dueAgain {
                state.work = .idle(nextDue: min(nextDue ?? due, due))
            }
        case .tasksReturned:
            state.work = .mayHaveWork
        case .storeCorrupt:
            if isRunning {
                effects.append(stop(.databaseCorrupt, outcome: .databaseCorrupt))
            } else if case .stopping = state.lifecycle {
                state.lifecycle = .stopping(.databaseCorrupt)
            }
        case .tick:
            state.ticking = false
            state.pollDue = true
        case .shutdownRequested(let at):
            if isRunning { effects.append(stop(.gracefulShutdown, outcome: .stopped)) }
            let late = Duration.seconds(max(0, now.timeIntervalSince(at)))
            effects.append(.scheduleGraceExpiry(after: max(.zero, configuration.shutdownGrace - late)))
            effects.append(.scheduleWriteDeadline(after: max(.zero, configuration.shutdownGrace + configuration.writeGrace - late)))
        case .graceExpired(let inFlight):
            if inFlight > 0 { effects.append(.cancelRequestsInFlight(inFlight)) }
        case .writeDeadlinePassed:
            if case .stopping(let outcome) = state.lifecycle, state.held > 0 {
                state.lifecycle = .finished(outcome)
                return enter(.awaitingEvent, [.abandonUnwritten(state.held)], then: .finish(outcome))
            }
        }
        state.claimBackingOff = state.storeFailures > 0 && event != .tick
        if isRunning, configuration.drain, credentialsPaused {
            effects.append(stop(.credentialsRefused, outcome: .credentialsRefused))
        }
        guard isRunning else { return endPass(effects) }
        if case .idle(let nextDue?) = state.work, nextDue <= now { state.work = .mayHaveWork }
        if case .idle = state.work, state.pollDue {
            // Once a tick: has another connection changed the database?
            state.pollDue = false
            return enter(.polling(now: now), effects, then: .pollDataVersion)
        }
        return enter(.measuring(now: now), effects, then: .measureSlots)
    }

    /// The loop's answer to the machine's last request.
    mutating func on(_ answer: Answer) -> Actions {
        switch (state.phase, answer) {
        case (.polling(let now), .dataVersion(let version)):
            var effects: [Effect] = []
            if let version, version != state.dataVersion {
                state.dataVersion = version
                state.work = .mayHaveWork
                effects.append(.markCountsDirty)
            }
            return enter(.measuring(now: now), effects, then: .measureSlots)

        case (.measuring(let now), .slotsFree(let free, let verified, let waiting)):
            // Nothing is claimed ahead until an answer shows the credentials work.
            let ahead = verified ? configuration.prefetch : 0
            if state.work == .mayHaveWork, !state.claimBackingOff, free + ahead > 0, waiting < free + ahead / 2 {
                return enter(.claiming(now: now, free: free), [], then: .claim(limit: free + ahead - waiting, now: now))
            }
            return afterClaim(free: free, [])

        case (.claiming(_, let free), .claimed(let tasks, let shortfall)):
            state.storeFailures = 0
            state.held += tasks
            if let shortfall {
                // Nothing more is due now: wait for the next due task, or for another
                // connection to change the database.
                state.work = .idle(nextDue: shortfall.nextDue)
                state.dataVersion = shortfall.dataVersion
            }
            return afterClaim(free: free, [])

        case (.claiming(_, let free), .claimFailed(let corrupt)):
            if corrupt {
                // Trying again cannot help; nothing more is sent.
                return afterClaim(free: free, [stop(.databaseCorrupt, outcome: .databaseCorrupt)])
            }
            state.storeFailures += 1
            return afterClaim(free: free, [])

        case (.checkingDrain, .drainChecked(let unfinished)):
            guard unfinished == false else { return endPass([]) }
            state.lifecycle = .finished(.drained)
            return enter(.awaitingEvent, [], then: .finish(.drained))

        case (.settling, .settled(let now)):
            var effects: [Effect] = []
            if !state.ticking, isRunning {
                state.ticking = true
                effects.append(.scheduleTick(after: tickDelay(now: now)))
            }
            return enter(.awaitingEvent, effects, then: .awaitEvent)

        default:
            preconditionFailure("answer \(answer) does not fit phase \(state.phase)")
        }
    }

    // MARK: Steps of a pass

    private mutating func stop(_ reason: StopReason, outcome: CleanerService.RunOutcome) -> Effect {
        state.lifecycle = .stopping(outcome)
        return .stop(reason)
    }

    /// After the claim (or none): start runners, then see whether draining is done.
    private mutating func afterClaim(free: Int, _ effects: [Effect]) -> Actions {
        var effects = effects
        guard isRunning else { return endPass(effects) }
        if free > 0 { effects.append(.startRunners(free)) }
        if configuration.drain, state.held == 0, state.work != .mayHaveWork, state.storeFailures == 0 {
            return enter(.checkingDrain, effects, then: .checkDrained)
        }
        return endPass(effects)
    }

    /// Finishes when stopping with nothing held; otherwise asks for what settling needs.
    private mutating func endPass(_ effects: [Effect]) -> Actions {
        if case .stopping(let outcome) = state.lifecycle, state.held == 0 {
            state.lifecycle = .finished(outcome)
            return enter(.awaitingEvent, effects, then: .finish(outcome))
        }
        return enter(.settling, effects, then: .settle)
    }

    private mutating func enter(_ phase: Phase, _ effects: [Effect], then next: Next) -> Actions {
        state.phase = phase
        return Actions(effects, then: next)
    }

    /// Until the next tick: backing off while claims fail; otherwise the idle tick, or sooner
    /// when a task is known to be due sooner.
    private func tickDelay(now: Date) -> Duration {
        if state.storeFailures > 0 { return Tuning.claimRetryDelay(failures: state.storeFailures) }
        var delay = configuration.idleTick
        if case .idle(let nextDue?) = state.work {
            delay = min(delay, .seconds(max(0.001, nextDue.timeIntervalSince(now))))
        }
        return delay
    }
}
