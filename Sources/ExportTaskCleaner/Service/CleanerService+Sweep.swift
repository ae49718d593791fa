import FoundationEssentials
import Logging

/// The periodic sweep (docs/configuration.md, `sweep`): at start and then `every` after each
/// sweep ends, the service lists the project's export tasks and queues the finished ones older
/// than `older_than` (``ExportTaskSweep``). Each list request borrows one of the work loop's
/// slots (so before the credentials are verified it is the only request in flight), waits for
/// the same start slots as the deletes (`max_requests_per_second`), stops while the credential
/// circuit holds requests, and feeds its answer to it (a 401 opens it; the credential source is
/// read again).
extension CleanerService {
    /// What a sweeping service needs besides its work queue.
    public struct Sweeping: Sendable {
        public var schedule: Configuration.Sweep
        /// The queue swept tasks are put into (the service's own store).
        public var queue: any QueueOperations
        public var lister: any ExportTaskLister

        public init(schedule: Configuration.Sweep, queue: any QueueOperations, lister: any ExportTaskLister) {
            self.schedule = schedule
            self.queue = queue
            self.lister = lister
        }
    }

    /// Sweeps now, then every `schedule.every`, until cancelled or stopping. With `drain`, the
    /// work loop does not call the queue drained before the first sweep has ended.
    func sweepLoop(_ sweeping: Sweeping) async {
        while !Task.isCancelled, !isStopping {
            await sweepOnce(sweeping)
            let events = shared.withLock {
                $0.firstSweepPending = false
                $0.countsDirty = true
                return $0.events
            }
            // Swept tasks are claimable now; a drain waiting for the first sweep looks again.
            events?.yield(.tasksReturned)
            do { try await clock.sleep(for: sweeping.schedule.every) } catch { return }
        }
    }

    /// Waits for a slot of the work loop's: at once while the credentials are verified (a
    /// list request then only narrows the deletes' concurrency by one while it is out); before,
    /// only when no other request is in flight, as a probe. Throws when stopping or paused.
    private func borrowSlot() async throws {
        while !readyTasks.takeSideSlot(mayTake: { slots in
            let measured = traffic.freeSlots(inFlight: slots, now: clock.instant(), mayStartProbe: false)
            return measured.verified || measured.free > 0
        }) {
            if isStopping { throw CleanerError.runtime("not sent: shutting down") }
            if traffic.snapshot.circuit.holdsRequests { throw CleanerError.runtime("not sent: credentials refused") }
            try await clock.sleep(for: Tuning.runnerWakeStep)
        }
    }

    /// Gives the borrowed slot back, and tells the work loop it is free.
    private func giveBackSlot() {
        readyTasks.returnSideSlot()
        shared.withLock { $0.events }?.yield(.slotFreed)
    }

    private func sweepOnce(_ sweeping: Sweeping) async {
        let hooks = ExportTaskSweep.Hooks(
            beforeRequest: { [self] in
                try await borrowSlot()
                if let reason = await waitForStart() {
                    giveBackSlot()
                    throw CleanerError.runtime("not sent: \(reason)")
                }
                // On the wire from here: counted in `in_flight` as a delete is.
                requestsInFlight.add(1, ordering: .relaxed)
            },
            afterAnswer: { [self] result in
                requestsInFlight.subtract(1, ordering: .relaxed)
                giveBackSlot()
                if result.classification == .authRefused, result.httpStatus == nil,
                   let generation = credentials?.expiredGeneration(at: clock.now()) {
                    credentialsExpired(generation: generation)
                }
                report(traffic.observe(result, now: clock.instant()), result: result, task: nil)
            })
        let sweep = ExportTaskSweep(
            options: .init(projectID: options.projectID, instanceID: options.instanceID,
                           olderThan: sweeping.schedule.olderThan, dryRun: false, source: "the service's sweep"),
            lister: sweeping.lister, retry: retry, clock: clock, random: random, hooks: hooks, logger: logger)
        do {
            _ = try await sweep.run(store: sweeping.queue)
        } catch {
            // A shutdown cuts a sweep off: what it queued by then stays queued.
            logger.log(level: isStopping ? .info : .error, "sweep stopped", metadata: [
                "error": "\(TextFormat.printable(error.description))", "queued": "\(error.summary.queued)",
                "pages": "\(error.summary.pages)",
            ])
        }
    }
}
