import FoundationEssentials
import Logging
import ServiceLifecycle

extension CleanerService {
    /// The one place tasks are claimed and runners started. Claimed tasks wait in `ready` until
    /// a runner takes them; runners are children of one task group and hand each outcome to
    /// the recorder.
    ///
    /// Every decision is `WorkLoopStateMachine`'s: this loop feeds it each event with the time,
    /// performs the effects it returns, answers its requests (reading the store, the traffic
    /// limits, the clock), and awaits the next event when it says so.
    ///
    /// Two task groups: the runners in one, which the grace period's end cancels, and the
    /// shutdown watcher and the machine's timers in the other, which only the loop's end
    /// cancels. A cancelled runner never fires a deadline (docs/operations.md, "Behaviour under failures").
    func workLoop(events: AsyncStream<LoopEvent>, sink: AsyncStream<LoopEvent>.Continuation) async -> RunOutcome {
        await withDiscardingTaskGroup(returning: RunOutcome.self) { timers in
            timers.addTask {
                // Throws only when the loop is over (cancelled): nothing to report then.
                guard (try? await gracefulShutdown()) != nil else { return }
                self.shared.withLock { $0.shutdownPending = true }
                sink.yield(.shutdownRequested(at: self.clock.now()))
            }
            let outcome = await withDiscardingTaskGroup(returning: RunOutcome.self) { runners in
                await workLoop(events: events, sink: sink, runners: &runners, timers: &timers)
            }
            timers.cancelAll()
            return outcome
        }
    }

    private func workLoop(events: AsyncStream<LoopEvent>, sink: AsyncStream<LoopEvent>.Continuation,
                          runners: inout DiscardingTaskGroup, timers: inout DiscardingTaskGroup) async -> RunOutcome {
            var iterator = events.makeAsyncIterator()
            let ready = readyTasks
            // Another runner holds a task: its outcome follows soon, and may share a transaction.
            recorder.setMoreExpected { [weak self] in
                guard let self, !self.isStopping, !self.traffic.snapshot.circuit.holdsRequests else { return false }
                return ready.inFlight + ready.count > 1
            }
            defer { recorder.setMoreExpected(nil) }
            let dataVersion = (try? await database.changeSignal()) ?? 0
            var machine = WorkLoopStateMachine(options: options, dataVersion: dataVersion)
            var event = WorkLoopStateMachine.Event.started
            passes: while true {
                liveness?.beat()
                var actions = machine.on(event, now: clock.now(), credentialsPaused: traffic.snapshot.circuit.isOpen)
                pass: while true {
                    for effect in actions.effects {
                        perform(effect, ready: ready, prefetch: machine.configuration.prefetch,
                                runners: &runners, timers: &timers, sink: sink)
                    }
                    switch actions.then {
                    case .awaitEvent:
                        break pass
                    case .finish:
                        break passes
                    case .pollDataVersion:
                        let version = try? await database.changeSignal()
                        actions = machine.on(.dataVersion(version))
                    case .measureSlots:
                        let slots = traffic.freeSlots(inFlight: ready.slotsInUse, now: clock.instant())
                        actions = machine.on(.slotsFree(free: slots.free, verified: slots.verified, waiting: ready.count))
                    case .claim(let limit, let now):
                        // A shutdown request still waiting in the stream (behind events that came
                        // while a claim blocked on a locked database): no new work.
                        actions = shared.withLock({ $0.shutdownPending })
                            ? machine.on(.claimed(tasks: 0, shortfall: nil))
                            : await claim(limit: limit, now: now, into: ready, machine: &machine)
                    case .checkDrained:
                        // Not drained before the first sweep has queued what it finds, nor while
                        // a refusal (of a sweep's list, say) has just paused requests: the
                        // next pass stops the drain as refused instead.
                        let unfinished = shared.withLock({ $0.firstSweepPending }) || traffic.snapshot.circuit.isOpen
                            ? true : try? await database.hasUnfinishedTasks()
                        actions = machine.on(.drainChecked(unfinished: unfinished))
                    case .settle:
                        actions = machine.on(.settled(now: clock.now()))
                    }
                }
                // nil only when the service is cancelled outright.
                guard let next = await iterator.next() else { break }
                event = switch next {
                case .slotFreed: .slotFreed
                case .runningLow: .runningLow
                case .committed(let count, let dueAgain): .committed(count: count, dueAgain: dueAgain)
                case .tasksReturned: .tasksReturned
                case .storeCorrupt: .storeCorrupt
                case .tick: .tick
                case .shutdownRequested(let at): .shutdownRequested(at: at)
                case .graceExpired: .graceExpired(inFlight: ready.inFlight)
                case .writeDeadlinePassed: .writeDeadlinePassed
                case .reconfigured(let concurrency, let rate): .reconfigured(prefetch: Tuning.prefetch(concurrency: concurrency, rate: rate))
                case .credentialsChanged: .credentialsChanged
                }
            }
            runners.cancelAll()
            return machine.outcome
    }

    private func perform(_ effect: WorkLoopStateMachine.Effect, ready: ReadyTasks, prefetch: Int,
                         runners: inout DiscardingTaskGroup, timers: inout DiscardingTaskGroup,
                         sink: AsyncStream<LoopEvent>.Continuation) {
        switch effect {
        case .markCountsDirty:
            markCountsDirty()
        case .stop(let reason):
            beginStopping(reason: reason.rawValue)
            // Claimed but never started: back to pending.
            recorder.submit(contentsOf: ready.close().map { releasing($0, reason: "shutting down") })
        case .startRunners(let slots):
            for _ in 0..<slots {
                // Checked again as each starts: a sweep's list request may have taken a slot.
                guard let first = ready.startRunner(mayStart: {
                    traffic.freeSlots(inFlight: $0, now: clock.instant(), mayStartProbe: false).free > 0
                }) else { break }
                runners.addTask { await self.runner(first, ready: ready, prefetch: prefetch, events: sink) }
            }
        case .scheduleTick(let wait):
            schedule(.tick, after: wait, in: &timers, sink: sink)
        case .scheduleGraceExpiry(let grace):
            schedule(.graceExpired, after: grace, in: &timers, sink: sink)
        case .scheduleWriteDeadline(let wait):
            schedule(.writeDeadlinePassed, after: wait, in: &timers, sink: sink)
        case .abandonUnwritten(let held):
            logger.error("outcomes still not written after the shutdown grace period; giving up", metadata: ["tasks": "\(held)"])
        case .cancelRequestsInFlight(let runnersHolding):
            logger.warning("shutdown grace expired; cancelling requests in flight", metadata: [
                "in_flight": "\(requestsInFlight.load(ordering: .relaxed))", "runners": "\(runnersHolding)",
            ])
            runners.cancelAll()
        }
    }

    /// Sends `event` after `wait`; a timer cancelled (the loop is over) sends nothing.
    private func schedule(_ event: LoopEvent, after wait: Duration, in timers: inout DiscardingTaskGroup,
                          sink: AsyncStream<LoopEvent>.Continuation) {
        timers.addTask { [clock] in
            guard (try? await clock.sleep(for: wait)) != nil else { return }
            sink.yield(event)
        }
    }

    /// Claims up to `limit` due tasks into `ready` (an invalid one goes straight to the recorder)
    /// and tells the machine what came of it.
    private func claim(limit: Int, now: Date, into ready: ReadyTasks,
                       machine: inout WorkLoopStateMachine) async -> WorkLoopStateMachine.Actions {
        do {
            let token = Self.makeLeaseToken()
            let claim = try await self.claim(limit: limit, leaseToken: token, now: now)
            let tasks = claim.tasks
            if !tasks.isEmpty {
                registerLease(token, tasks: tasks, until: claim.leaseUntil)
                var valid: [ClaimedTask] = []
                valid.reserveCapacity(tasks.count)
                for task in tasks {
                    if let problem = task.problem {
                        // Written by another tool without validation: never sent.
                        recorder.submit(TaskTransition(
                            task: task, change: .finish(.invalid),
                            audit: AuditRecord(outcome: .invalid, at: now, errorMessage: problem)))
                    } else {
                        valid.append(task)
                    }
                }
                ready.append(contentsOf: valid)
            }
            return machine.on(.claimed(tasks: tasks.count, shortfall: claim.shortfall))
        } catch let error as StoreError where error.isCorruption {
            logger.critical("the queue is corrupt; stopping", metadata: ["error": "\(error)"])
            return machine.on(.claimFailed(corrupt: true))
        } catch {
            let actions = machine.on(.claimFailed(corrupt: false))
            logger.error("cannot claim tasks; trying again", metadata: [
                "error": "\(error)", "failures": "\(machine.state.storeFailures)",
            ])
            return actions
        }
    }

    /// What a claim found: the tasks, and when fewer were due than asked for, what the loop
    /// needs to wait well.
    private struct Claim: Sendable {
        var tasks: [ClaimedTask]
        var leaseUntil: Date
        var shortfall: WorkLoopStateMachine.Shortfall?
    }

    private func claim(limit: Int, leaseToken: String, now: Date) async throws -> Claim {
        let until = now.addingTimeInterval(options.leaseDuration.timeInterval)
        // The change signal is read before the claim: a task that commits after it moves it,
        // whether or not the claim saw the task.
        let signal = try? await database.changeSignal()
        let tasks = try await database.claim(limit: limit, leaseToken: leaseToken, leaseUntil: until, now: now)
        guard tasks.count < limit, let signal else { return Claim(tasks: tasks, leaseUntil: until) }
        // The claim has committed: a failure from here on must not lose its tasks, and only
        // costs the loop a claim sooner than it needed (no shortfall: it asks again).
        do {
            let nextDue = try await database.nextDue()
            return Claim(tasks: tasks, leaseUntil: until, shortfall: .init(nextDue: nextDue, dataVersion: signal))
        } catch {
            return Claim(tasks: tasks, leaseUntil: until)
        }
    }

    private func beginStopping(reason: String) {
        shared.withLock { $0.stopping = true }
        recorder.flushNow()
        _ = notifier?.stopping()
        logger.info("cleaner stopping; no new requests", metadata: ["reason": "\(reason)"])
    }

    private func registerLease(_ token: String, tasks: [ClaimedTask], until: Date) {
        shared.withLock {
            $0.leases.claimed(tasks, token: token, until: until)
            $0.countsDirty = true
        }
    }
}
