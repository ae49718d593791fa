import Foundation
import Testing

@testable import ExportTaskCleaner

/// The work loop's decisions, without a service: each row sets up a state, feeds one input, and
/// names the actions and the state that must follow.
@Suite("Work loop state machine")
struct WorkLoopStateMachineTests {
    typealias Machine = WorkLoopStateMachine
    typealias State = Machine.State

    static let t0 = Date(timeIntervalSinceReferenceDate: 700_000_000)
    static let working = Machine.Configuration(prefetch: 4, drain: false, idleTick: .seconds(1), shutdownGrace: .seconds(10))
    static let draining = Machine.Configuration(prefetch: 4, drain: true, idleTick: .seconds(1), shutdownGrace: .seconds(10))

    struct Row: Sendable, CustomTestStringConvertible {
        enum Input: Sendable {
            case event(Machine.Event, now: Date = t0, credentialsPaused: Bool = false)
            case answer(Machine.Answer)
        }

        var name: String
        var configuration = working
        var state: State
        var input: Input
        var actions: Machine.Actions
        /// The expected state, as changes to `state`.
        var changes: @Sendable (inout State) -> Void = { _ in }

        var testDescription: String { name }
    }

    /// A state in `phase`, with changes.
    static func state(_ phase: Machine.Phase, _ changes: (inout State) -> Void = { _ in }) -> State {
        var state = State(phase: phase)
        changes(&state)
        return state
    }

    static let due = Date(timeIntervalSinceReferenceDate: 700_000_030)

    static let claims: [Row] = [
        Row(name: "first claim before the credentials are verified: no prefetch",
            state: state(.measuring(now: t0)), input: .answer(.slotsFree(free: 1, verified: false, waiting: 0)),
            actions: .init(then: .claim(limit: 1, now: t0)), changes: { $0.phase = .claiming(now: t0, free: 1) }),
        Row(name: "once verified, prefetch is claimed ahead of the free slots",
            state: state(.measuring(now: t0)), input: .answer(.slotsFree(free: 8, verified: true, waiting: 0)),
            actions: .init(then: .claim(limit: 12, now: t0)), changes: { $0.phase = .claiming(now: t0, free: 8) }),
        Row(name: "tasks already waiting count against the claim",
            state: state(.measuring(now: t0)), input: .answer(.slotsFree(free: 2, verified: true, waiting: 3)),
            actions: .init(then: .claim(limit: 3, now: t0)), changes: { $0.phase = .claiming(now: t0, free: 2) }),
        Row(name: "enough tasks waiting: no claim, a runner per free slot",
            state: state(.measuring(now: t0)), input: .answer(.slotsFree(free: 2, verified: true, waiting: 4)),
            actions: .init([.startRunners(2)], then: .settle), changes: { $0.phase = .settling }),
        Row(name: "credentials paused (no slot, not verified): no claim",
            state: state(.measuring(now: t0)), input: .answer(.slotsFree(free: 0, verified: false, waiting: 0)),
            actions: .init(then: .settle), changes: { $0.phase = .settling }),
        Row(name: "idle: no claim, runners for what waits",
            state: state(.measuring(now: t0)) { $0.work = .idle(nextDue: nil) },
            input: .answer(.slotsFree(free: 4, verified: true, waiting: 1)),
            actions: .init([.startRunners(4)], then: .settle), changes: { $0.phase = .settling }),
        Row(name: "a full claim: its tasks are held, failures reset, runners start",
            state: state(.claiming(now: t0, free: 4)) { $0.held = 1; $0.storeFailures = 2 },
            input: .answer(.claimed(tasks: 8, shortfall: nil)),
            actions: .init([.startRunners(4)], then: .settle),
            changes: { $0.phase = .settling; $0.held = 9; $0.storeFailures = 0 }),
        Row(name: "a shortfall: idle until the next due task, data_version remembered",
            state: state(.claiming(now: t0, free: 4)),
            input: .answer(.claimed(tasks: 2, shortfall: .init(nextDue: due, dataVersion: 7))),
            actions: .init([.startRunners(4)], then: .settle),
            changes: { $0.phase = .settling; $0.held = 2; $0.work = .idle(nextDue: due); $0.dataVersion = 7 }),
        Row(name: "tasks returned (dead leases): work",
            state: state(.awaitingEvent) { $0.work = .idle(nextDue: nil); $0.ticking = true },
            input: .event(.tasksReturned), actions: .init(then: .measureSlots),
            changes: { $0.phase = .measuring(now: t0); $0.work = .mayHaveWork }),
    ]

    static let waking: [Row] = [
        Row(name: "idle: the tick comes when the next task is due",
            state: state(.settling) { $0.work = .idle(nextDue: t0.addingTimeInterval(0.25)) },
            input: .answer(.settled(now: t0)),
            actions: .init([.scheduleTick(after: .milliseconds(250))], then: .awaitEvent),
            changes: { $0.phase = .awaitingEvent; $0.ticking = true }),
        Row(name: "idle, the next task due later than a tick: the idle tick",
            state: state(.settling) { $0.work = .idle(nextDue: due) },
            input: .answer(.settled(now: t0)),
            actions: .init([.scheduleTick(after: .seconds(1))], then: .awaitEvent),
            changes: { $0.phase = .awaitingEvent; $0.ticking = true }),
        Row(name: "idle, the due time passed during the pass: a tick in 1 ms",
            state: state(.settling) { $0.work = .idle(nextDue: t0.addingTimeInterval(-1)) },
            input: .answer(.settled(now: t0)),
            actions: .init([.scheduleTick(after: .seconds(0.001))], then: .awaitEvent),
            changes: { $0.phase = .awaitingEvent; $0.ticking = true }),
        Row(name: "a tick already coming: none scheduled",
            state: state(.settling) { $0.ticking = true },
            input: .answer(.settled(now: t0)),
            actions: .init([], then: .awaitEvent),
            changes: { $0.phase = .awaitingEvent }),
        Row(name: "a known due time that has come means work, without polling",
            state: state(.awaitingEvent) { $0.work = .idle(nextDue: t0); $0.ticking = true },
            input: .event(.slotFreed), actions: .init(then: .measureSlots),
            changes: { $0.phase = .measuring(now: t0); $0.work = .mayHaveWork }),
        Row(name: "a commit due again sooner brings the wake forward",
            state: state(.awaitingEvent) { $0.work = .idle(nextDue: due); $0.held = 1; $0.ticking = true },
            input: .event(.committed(count: 1, dueAgain: t0.addingTimeInterval(2))), actions: .init(then: .measureSlots),
            changes: { $0.phase = .measuring(now: t0); $0.held = 0; $0.work = .idle(nextDue: t0.addingTimeInterval(2)) }),
        Row(name: "a tick while idle: poll data_version",
            state: state(.awaitingEvent) { $0.work = .idle(nextDue: nil); $0.ticking = true },
            input: .event(.tick), actions: .init(then: .pollDataVersion),
            changes: { $0.phase = .polling(now: t0); $0.ticking = false }),
        Row(name: "a tick while working: no poll until the loop is idle",
            state: state(.awaitingEvent) { $0.ticking = true },
            input: .event(.tick), actions: .init(then: .measureSlots),
            changes: { $0.phase = .measuring(now: t0); $0.ticking = false; $0.pollDue = true }),
        Row(name: "idle, no tick since the last poll: no poll",
            state: state(.awaitingEvent) { $0.work = .idle(nextDue: nil); $0.ticking = true },
            input: .event(.runningLow), actions: .init(then: .measureSlots), changes: { $0.phase = .measuring(now: t0) }),
        Row(name: "data_version changed: work may be due, the counts are stale",
            state: state(.polling(now: t0)) { $0.work = .idle(nextDue: nil); $0.dataVersion = 5 },
            input: .answer(.dataVersion(6)), actions: .init([.markCountsDirty], then: .measureSlots),
            changes: { $0.phase = .measuring(now: t0); $0.work = .mayHaveWork; $0.dataVersion = 6 }),
        Row(name: "data_version unchanged: still idle",
            state: state(.polling(now: t0)) { $0.work = .idle(nextDue: nil); $0.dataVersion = 5 },
            input: .answer(.dataVersion(5)), actions: .init(then: .measureSlots), changes: { $0.phase = .measuring(now: t0) }),
        Row(name: "data_version unreadable: still idle",
            state: state(.polling(now: t0)) { $0.work = .idle(nextDue: nil); $0.dataVersion = 5 },
            input: .answer(.dataVersion(nil)), actions: .init(then: .measureSlots), changes: { $0.phase = .measuring(now: t0) }),
    ]

    static let failures: [Row] = [
        Row(name: "a failed claim counts a failure; the free slots still get runners",
            state: state(.claiming(now: t0, free: 2)) { $0.held = 3 },
            input: .answer(.claimFailed(corrupt: false)), actions: .init([.startRunners(2)], then: .settle),
            changes: { $0.phase = .settling; $0.storeFailures = 1 }),
        Row(name: "claims failing: an answer that frees a slot does not try again before the backoff tick",
            state: state(.awaitingEvent) { $0.held = 3; $0.storeFailures = 1; $0.ticking = true },
            input: .event(.committed(count: 1, dueAgain: nil)), actions: .init(then: .measureSlots),
            changes: { $0.phase = .measuring(now: t0); $0.held = 2; $0.claimBackingOff = true }),
        Row(name: "claims failing, backing off: the free slots get runners, no claim",
            state: state(.measuring(now: t0)) { $0.held = 2; $0.storeFailures = 1; $0.claimBackingOff = true; $0.ticking = true },
            input: .answer(.slotsFree(free: 3, verified: true, waiting: 0)), actions: .init([.startRunners(3)], then: .settle),
            changes: { $0.phase = .settling }),
        Row(name: "claims failing: the backoff tick tries again",
            state: state(.awaitingEvent) { $0.held = 2; $0.storeFailures = 1; $0.claimBackingOff = true; $0.ticking = true },
            input: .event(.tick), actions: .init(then: .measureSlots),
            changes: { $0.phase = .measuring(now: t0); $0.claimBackingOff = false; $0.ticking = false; $0.pollDue = true }),
    ] + [(1, 200), (2, 400), (3, 800), (5, 3_200), (6, 5_000), (30, 5_000)].map { failures, milliseconds in
        Row(name: "after \(failures) failed claims the next tick is \(milliseconds) ms away",
            state: state(.settling) { $0.storeFailures = failures; $0.work = .idle(nextDue: t0) },
            input: .answer(.settled(now: t0)),
            actions: .init([.scheduleTick(after: .milliseconds(milliseconds))], then: .awaitEvent),
            changes: { $0.phase = .awaitingEvent; $0.ticking = true })
    } + [
        Row(name: "a corrupt database with nothing held: stop and finish",
            state: state(.claiming(now: t0, free: 4)), input: .answer(.claimFailed(corrupt: true)),
            actions: .init([.stop(.databaseCorrupt)], then: .finish(.databaseCorrupt)),
            changes: { $0.phase = .awaitingEvent; $0.lifecycle = .finished(.databaseCorrupt) }),
        Row(name: "a corrupt database with tasks held: stop, wait for their outcomes, no runners",
            state: state(.claiming(now: t0, free: 4)) { $0.held = 3 }, input: .answer(.claimFailed(corrupt: true)),
            actions: .init([.stop(.databaseCorrupt)], then: .settle),
            changes: { $0.phase = .settling; $0.lifecycle = .stopping(.databaseCorrupt) }),
        Row(name: "outcomes not written for corruption while running: stop, wait for the rest",
            state: state(.awaitingEvent) { $0.held = 3 }, input: .event(.storeCorrupt),
            actions: .init([.stop(.databaseCorrupt)], then: .settle),
            changes: { $0.phase = .settling; $0.lifecycle = .stopping(.databaseCorrupt) }),
        Row(name: "outcomes not written for corruption while stopping gracefully: the outcome becomes databaseCorrupt",
            state: state(.awaitingEvent) { $0.lifecycle = .stopping(.stopped); $0.held = 3 }, input: .event(.storeCorrupt),
            actions: .init(then: .settle),
            changes: { $0.phase = .settling; $0.lifecycle = .stopping(.databaseCorrupt) }),
        Row(name: "stopping: the last commit finishes with the stop's outcome",
            state: state(.awaitingEvent) { $0.lifecycle = .stopping(.databaseCorrupt); $0.held = 3 },
            input: .event(.committed(count: 3, dueAgain: nil)), actions: .init(then: .finish(.databaseCorrupt)),
            changes: { $0.held = 0; $0.lifecycle = .finished(.databaseCorrupt) }),
        Row(name: "stopping: no tick is scheduled",
            state: state(.settling) { $0.lifecycle = .stopping(.stopped); $0.held = 1 },
            input: .answer(.settled(now: t0)), actions: .init([], then: .awaitEvent),
            changes: { $0.phase = .awaitingEvent }),
    ]

    static let shutdown: [Row] = [
        Row(name: "shutdown with tasks held: stop, start the grace period, wait",
            state: state(.awaitingEvent) { $0.held = 2; $0.ticking = true }, input: .event(.shutdownRequested(at: t0)),
            actions: .init([.stop(.gracefulShutdown), .scheduleGraceExpiry(after: .seconds(10)), .scheduleWriteDeadline(after: .seconds(15))], then: .settle),
            changes: { $0.phase = .settling; $0.lifecycle = .stopping(.stopped) }),
        Row(name: "shutdown with nothing held: finish",
            state: state(.awaitingEvent) { $0.ticking = true }, input: .event(.shutdownRequested(at: t0)),
            actions: .init([.stop(.gracefulShutdown), .scheduleGraceExpiry(after: .seconds(10)), .scheduleWriteDeadline(after: .seconds(15))], then: .finish(.stopped)),
            changes: { $0.lifecycle = .finished(.stopped) }),
        Row(name: "shutdown while already stopping: only the grace period; the first outcome stands",
            configuration: draining,
            state: state(.awaitingEvent) { $0.lifecycle = .stopping(.credentialsRefused); $0.held = 1 },
            input: .event(.shutdownRequested(at: t0)), actions: .init([.scheduleGraceExpiry(after: .seconds(10)), .scheduleWriteDeadline(after: .seconds(15))], then: .settle),
            changes: { $0.phase = .settling }),
        Row(name: "shutdown taken up 4 s late (a claim blocked): the deadlines count from the request",
            state: state(.awaitingEvent) { $0.held = 2; $0.ticking = true },
            input: .event(.shutdownRequested(at: t0.addingTimeInterval(-4))),
            actions: .init([.stop(.gracefulShutdown), .scheduleGraceExpiry(after: .seconds(6)), .scheduleWriteDeadline(after: .seconds(11))],
                           then: .settle),
            changes: { $0.phase = .settling; $0.lifecycle = .stopping(.stopped) }),
        Row(name: "shutdown taken up after both deadlines: they pass at once",
            state: state(.awaitingEvent) { $0.held = 2; $0.ticking = true },
            input: .event(.shutdownRequested(at: t0.addingTimeInterval(-60))),
            actions: .init([.stop(.gracefulShutdown), .scheduleGraceExpiry(after: .zero), .scheduleWriteDeadline(after: .zero)],
                           then: .settle),
            changes: { $0.phase = .settling; $0.lifecycle = .stopping(.stopped) }),
        Row(name: "grace expired with requests in flight: cancel them",
            state: state(.awaitingEvent) { $0.lifecycle = .stopping(.stopped); $0.held = 3 },
            input: .event(.graceExpired(inFlight: 2)), actions: .init([.cancelRequestsInFlight(2)], then: .settle),
            changes: { $0.phase = .settling }),
        Row(name: "grace expired with only unwritten outcomes held: nothing to cancel",
            state: state(.awaitingEvent) { $0.lifecycle = .stopping(.stopped); $0.held = 3 },
            input: .event(.graceExpired(inFlight: 0)), actions: .init(then: .settle), changes: { $0.phase = .settling }),
        Row(name: "write deadline with outcomes still unwritten: give up on them and finish",
            state: state(.awaitingEvent) { $0.lifecycle = .stopping(.stopped); $0.held = 3 },
            input: .event(.writeDeadlinePassed), actions: .init([.abandonUnwritten(3)], then: .finish(.stopped)),
            changes: { $0.lifecycle = .finished(.stopped) }),
        Row(name: "write deadline while draining stopped on refused credentials: that outcome stands",
            configuration: draining,
            state: state(.awaitingEvent) { $0.lifecycle = .stopping(.credentialsRefused); $0.held = 1 },
            input: .event(.writeDeadlinePassed), actions: .init([.abandonUnwritten(1)], then: .finish(.credentialsRefused)),
            changes: { $0.lifecycle = .finished(.credentialsRefused) }),
        Row(name: "write deadline with everything written: nothing to do",
            state: state(.awaitingEvent) { $0.lifecycle = .stopping(.stopped); $0.held = 0 },
            input: .event(.writeDeadlinePassed), actions: .init(then: .finish(.stopped)),
            changes: { $0.lifecycle = .finished(.stopped) }),
        Row(name: "write deadline while running (a stray event): nothing to do",
            state: state(.awaitingEvent) { $0.held = 2; $0.ticking = true }, input: .event(.writeDeadlinePassed),
            actions: .init(then: .measureSlots), changes: { $0.phase = .measuring(now: t0) }),
    ]

    static let drain: [Row] = [
        Row(name: "drain: idle, nothing held: ask the store",
            configuration: draining, state: state(.measuring(now: t0)) { $0.work = .idle(nextDue: nil) },
            input: .answer(.slotsFree(free: 4, verified: true, waiting: 0)),
            actions: .init([.startRunners(4)], then: .checkDrained), changes: { $0.phase = .checkingDrain }),
        Row(name: "drain: a shortfall with nothing held goes straight to the check",
            configuration: draining, state: state(.claiming(now: t0, free: 1)),
            input: .answer(.claimed(tasks: 0, shortfall: .init(nextDue: nil, dataVersion: 3))),
            actions: .init([.startRunners(1)], then: .checkDrained),
            changes: { $0.phase = .checkingDrain; $0.work = .idle(nextDue: nil); $0.dataVersion = 3 }),
        Row(name: "drain: tasks held: no check",
            configuration: draining, state: state(.measuring(now: t0)) { $0.work = .idle(nextDue: nil); $0.held = 1 },
            input: .answer(.slotsFree(free: 4, verified: true, waiting: 0)),
            actions: .init([.startRunners(4)], then: .settle), changes: { $0.phase = .settling }),
        Row(name: "drain: work may be due: no check",
            configuration: draining, state: state(.measuring(now: t0)),
            input: .answer(.slotsFree(free: 0, verified: false, waiting: 0)),
            actions: .init(then: .settle), changes: { $0.phase = .settling }),
        Row(name: "drain: claims failing: no check",
            configuration: draining, state: state(.measuring(now: t0)) { $0.work = .idle(nextDue: nil); $0.storeFailures = 1 },
            input: .answer(.slotsFree(free: 0, verified: true, waiting: 0)),
            actions: .init(then: .settle), changes: { $0.phase = .settling }),
        Row(name: "drain: the store has nothing unfinished: drained",
            configuration: draining, state: state(.checkingDrain) { $0.work = .idle(nextDue: nil) },
            input: .answer(.drainChecked(unfinished: false)), actions: .init(then: .finish(.drained)),
            changes: { $0.phase = .awaitingEvent; $0.lifecycle = .finished(.drained) }),
        Row(name: "drain: the store has unfinished tasks (retries not due, other leases): go on",
            configuration: draining, state: state(.checkingDrain) { $0.work = .idle(nextDue: due) },
            input: .answer(.drainChecked(unfinished: true)), actions: .init(then: .settle), changes: { $0.phase = .settling }),
        Row(name: "drain: the store could not say: go on",
            configuration: draining, state: state(.checkingDrain) { $0.work = .idle(nextDue: nil) },
            input: .answer(.drainChecked(unfinished: nil)), actions: .init(then: .settle), changes: { $0.phase = .settling }),
        Row(name: "drain: credentials refused with nothing held: stop and finish",
            configuration: draining, state: state(.awaitingEvent) { $0.ticking = true },
            input: .event(.slotFreed, credentialsPaused: true),
            actions: .init([.stop(.credentialsRefused)], then: .finish(.credentialsRefused)),
            changes: { $0.lifecycle = .finished(.credentialsRefused) }),
        Row(name: "drain: credentials refused with tasks held: stop, wait for their outcomes",
            configuration: draining, state: state(.awaitingEvent) { $0.held = 2; $0.ticking = true },
            input: .event(.committed(count: 1, dueAgain: t0), credentialsPaused: true),
            actions: .init([.stop(.credentialsRefused)], then: .settle),
            changes: { $0.phase = .settling; $0.held = 1; $0.lifecycle = .stopping(.credentialsRefused) }),
        Row(name: "not draining, credentials refused: carry on (the circuit probes later)",
            state: state(.awaitingEvent) { $0.ticking = true },
            input: .event(.slotFreed, credentialsPaused: true), actions: .init(then: .measureSlots),
            changes: { $0.phase = .measuring(now: t0) }),
    ]

    @Test("claims: prefetch only once verified, shortfalls, returned tasks", arguments: claims)
    func claiming(_ row: Row) { check(row) }

    @Test("waking: next due times, ticks, data_version", arguments: waking)
    func wakingUp(_ row: Row) { check(row) }

    @Test("store failures and corruption", arguments: failures)
    func storeFailures(_ row: Row) { check(row) }

    @Test("graceful shutdown and its grace period", arguments: shutdown)
    func shuttingDown(_ row: Row) { check(row) }

    @Test("draining, and credentials refused while draining", arguments: drain)
    func draining(_ row: Row) { check(row) }

    private func check(_ row: Row) {
        var machine = Machine(configuration: row.configuration, state: row.state)
        let actions = switch row.input {
        case .event(let event, let now, let paused): machine.on(event, now: now, credentialsPaused: paused)
        case .answer(let answer): machine.on(answer)
        }
        var expected = row.state
        row.changes(&expected)
        #expect(actions == row.actions)
        #expect(machine.state == expected)
    }

    // MARK: Whole runs

    @Test("a drain from start to end: one task unverified, then prefetch, then the store is empty")
    func wholeDrain() {
        var machine = Machine(configuration: Self.draining, state: State(dataVersion: 1))
        let t1 = Self.t0.addingTimeInterval(0.5)
        #expect(machine.on(.started, now: Self.t0, credentialsPaused: false) == .init(then: .measureSlots))
        #expect(machine.on(.slotsFree(free: 1, verified: false, waiting: 0)) == .init(then: .claim(limit: 1, now: Self.t0)))
        #expect(machine.on(.claimed(tasks: 1, shortfall: nil)) == .init([.startRunners(1)], then: .settle))
        #expect(machine.on(.settled(now: Self.t0))
            == .init([.scheduleTick(after: .seconds(1))], then: .awaitEvent))
        #expect(machine.on(.committed(count: 1, dueAgain: nil), now: t1, credentialsPaused: false) == .init(then: .measureSlots))
        #expect(machine.on(.slotsFree(free: 8, verified: true, waiting: 0)) == .init(then: .claim(limit: 12, now: t1)))
        #expect(machine.on(.claimed(tasks: 0, shortfall: .init(nextDue: nil, dataVersion: 1)))
            == .init([.startRunners(8)], then: .checkDrained))
        #expect(machine.outcome == .stopped)
        #expect(machine.on(.drainChecked(unfinished: false)) == .init(then: .finish(.drained)))
        #expect(machine.outcome == .drained)
    }

    @Test("claims failing: the tick backs off, growing, and a claim that works resets it")
    func backoffGrowsAndResets() {
        var machine = Machine(configuration: Self.working, state: State())
        var ticks: [Duration] = []
        var event = Machine.Event.started
        for _ in 0..<4 {
            #expect(machine.on(event, now: Self.t0, credentialsPaused: false) == .init(then: .measureSlots))
            #expect(machine.on(.slotsFree(free: 1, verified: true, waiting: 0)) == .init(then: .claim(limit: 5, now: Self.t0)))
            #expect(machine.on(.claimFailed(corrupt: false)) == .init([.startRunners(1)], then: .settle))
            let settled = machine.on(.settled(now: Self.t0))
            for case .scheduleTick(let after) in settled.effects { ticks.append(after) }
            event = .tick
        }
        #expect(ticks == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1_600)])
        _ = machine.on(.tick, now: Self.t0, credentialsPaused: false)
        _ = machine.on(.slotsFree(free: 1, verified: true, waiting: 0))
        #expect(machine.on(.claimed(tasks: 5, shortfall: nil)) == .init([.startRunners(1)], then: .settle))
        #expect(machine.state.storeFailures == 0)
        #expect(machine.on(.settled(now: Self.t0)) == .init([.scheduleTick(after: .seconds(1))], then: .awaitEvent))
    }
}
