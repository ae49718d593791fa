import FoundationEssentials
import Logging

extension CleanerService {
    /// Works claimed tasks one after another while tasks are ready and the traffic limits let
    /// this runner keep its slot (a 429 may have lowered the concurrency), then gives the slot
    /// back. Tells the work loop when few ready tasks are left, so it claims more in time.
    func runner(_ first: ClaimedTask, ready: ReadyTasks, prefetch: Int, events: AsyncStream<LoopEvent>.Continuation) async {
        let lowWater = Tuning.lowWater(prefetch: prefetch)
        var task = first
        while true {
            await process(task)
            let next = ready.next { inFlight in
                !isStopping && traffic.freeSlots(inFlight: inFlight - 1, now: clock.instant(), mayStartProbe: false).free > 0
            }
            guard let next else { break }
            if next.left == lowWater { events.yield(.runningLow) }
            task = next.task
        }
        events.yield(.slotFreed)
    }

    /// Works one leased task to its outcome and hands it to the recorder. Never throws: every
    /// failure is an outcome of this task alone.
    func process(_ task: ClaimedTask) async {
        if let reason = await waitForStart() {
            recorder.submit(releasing(task, reason: reason))
            return
        }
        let now = clock.now()
        if let generation = credentials?.expiredGeneration(at: now) {
            // Temporary credentials expired before new ones came: pause, and keep the task.
            credentialsExpired(generation: generation)
            recorder.submit(releasing(task, reason: "the temporary credentials expired"))
            return
        }
        // One lock for the check and the count: this is every request's path.
        let mayStart = shared.withLock { shared in
            guard shared.leases.mayStart(task, now: now, margin: options.leaseSendMargin) else {
                shared.statistics.lapsedLeases += 1
                return false
            }
            shared.statistics.requests += 1
            return true
        }
        guard mayStart else {
            // Claimed ahead, and this runner stalled (stopped, or renewals failing) until the
            // lease lapsed: another runner may hold the task now. Given back if it is still ours.
            logger.warning("lease lapsed before the request was sent; not sent", metadata: [
                "task_id": "\(task.id)", "export_task_id": "\(task.exportTaskID)",
            ])
            recorder.submit(releasing(task, reason: "the lease lapsed before the request could start"))
            return
        }
        let request = DeleteRequest(exportTaskID: task.exportTaskID, projectID: task.projectID ?? options.projectID,
                                    instanceID: task.instanceID ?? options.instanceID)
        requestsInFlight.add(1, ordering: .relaxed)
        let result = await transport.delete(request)
        requestsInFlight.subtract(1, ordering: .relaxed)
        metrics?.requestFinished(after: result.duration)
        if result.classification == .authRefused, result.httpStatus == nil, let generation = credentials?.expiredGeneration(at: clock.now()) {
            // The transport found them expired as it signed: nothing was sent.
            credentialsExpired(generation: generation)
        }
        report(traffic.observe(result, now: clock.instant()), result: result, task: task)
        recorder.submit(transition(for: task, result: result, cancelled: Task.isCancelled))
    }

    /// Waits for this request's start slot. Returns why it must not be sent, or nil to send.
    func waitForStart() async -> String? {
        guard !isStopping else { return "shutting down" }
        guard case .start(let slot, var schedule) = traffic.permit(now: clock.instant()) else { return pausedReason }
        var wakeAt = slot
        while true {
            // Sleep in short steps so that a shutdown, or a new rate that voids this slot (a
            // reload), does not wait for a far-off slot (README, "How it works").
            while clock.instant() < wakeAt {
                let step = min(wakeAt - clock.instant(), Tuning.runnerWakeStep)
                do { try await clock.sleep(for: step) } catch { return "cancelled" }
                if isStopping { return "shutting down" }
                if traffic.schedule != schedule { break }
            }
            if traffic.snapshot.circuit.holdsRequests { return pausedReason }
            guard let later = traffic.start(now: clock.instant(), schedule: &schedule) else { return nil }
            wakeAt = later
        }
    }

    /// Why a runner may not send: the credential circuit holds requests back.
    private var pausedReason: String {
        traffic.snapshot.circuit == .awaitingCredentials ? "the temporary credentials expired" : "credentials refused"
    }

    func releasing(_ task: ClaimedTask, reason: String) -> TaskTransition {
        TaskTransition(task: task, change: .release,
                       audit: AuditRecord(outcome: .released, at: clock.now(), errorMessage: "not sent: \(reason)"))
    }

    /// Maps a delete's result to what happens to the task (docs/operations.md, "Behaviour under failures").
    func transition(for task: ClaimedTask, result: DeleteResult, cancelled: Bool) -> TaskTransition {
        let now = clock.now()
        let attempt = task.attempts + 1
        var audit = AuditRecord(
            outcome: .deleted, at: now, attempt: attempt, durationMilliseconds: Int(result.duration.milliseconds),
            httpStatus: result.httpStatus, errorCode: result.errorCode, errorMessage: result.errorMessage,
            requestID: result.requestID, delivery: result.delivery)
        func finish(_ state: TaskState, _ outcome: AuditOutcome) -> TaskTransition {
            audit.outcome = outcome
            return TaskTransition(task: task, change: .finish(state), attempts: attempt, audit: audit)
        }
        switch result.classification {
        case .deleted: return finish(.deleted, .deleted)
        case .notFound where task.unansweredAttempts > 0:
            // An earlier request of this cycle may have reached the server unanswered: it may
            // be what deleted the task (docs/database.md, "The database").
            return finish(.notFoundAfterUnknown, .notFoundAfterUnknown)
        case .notFound: return finish(.notFound, .notFound)
        case .forbidden: return finish(.forbidden, .forbidden)
        case .rejected: return finish(.rejected, .rejected)
        case .authRefused:
            // Not the task's fault: it stays pending, no attempt used. Without a status, it
            // was not sent at all (the temporary credentials had expired): given back.
            audit.outcome = result.httpStatus == nil ? .released : .authRefused
            audit.attempt = nil
            return TaskTransition(task: task, change: .release, attempts: task.attempts, audit: audit)
        case .retryable where cancelled:
            // Cut off by shutdown: back to pending, due now. An attempt counts only if the
            // request may have reached the server.
            audit.outcome = .released
            if result.delivery == .notSent { audit.attempt = nil }
            return TaskTransition(task: task, change: .release,
                                  attempts: result.delivery == .notSent ? task.attempts : attempt, audit: audit)
        case .retryable:
            guard retry.shouldRetry(attempts: attempt) else { return finish(.failed, .failed) }
            let delay = retry.backoff(attempts: attempt, retryAfter: result.retryAfter, unit: random.nextUnit())
            audit.outcome = .retry
            if let asked = result.retryAfter, asked > retry.retryAfterLimit {
                let note = "Retry-After asked for \(asked.components.seconds) s, more than the \(retry.retryAfterLimit.components.seconds) s honoured; retried after \(delay.components.seconds) s"
                audit.errorMessage = audit.errorMessage.map { "\($0); \(note)" } ?? note
            }
            return TaskTransition(task: task, change: .retry(at: now.addingTimeInterval(delay.timeInterval)),
                                  attempts: attempt, audit: audit)
        }
    }

    /// After a batch is written: counts the outcomes, lets go of the leases, logs, and tells the
    /// work loop how many tasks are done and when any of them is due again.
    func committed(_ batch: [(transition: TaskTransition, held: Bool)], written: OutcomeRecorder.Written,
                   events: AsyncStream<LoopEvent>.Continuation) {
        var dueAgain: Date?
        shared.withLock { shared in
            shared.countsDirty = true
            for (transition, held) in batch {
                if written == .written, transition.audit.hasRequest { metrics?.requestRecorded(transition.audit.outcome) }
                shared.leases.finished(transition.task)
                if held {
                    shared.statistics.outcomes[transition.audit.outcome, default: 0] += 1
                } else if written == .written, transition.audit.hasRequest {
                    shared.statistics.staleOutcomes += 1
                }
            }
        }
        // A corrupt file wrote nothing: the recorder logged each outcome, and the loop stops.
        if written == .corrupt { events.yield(.storeCorrupt) }
        for (transition, held) in batch where written == .written {
            guard held else {
                if transition.audit.hasRequest {
                    logger.warning("lease lost before the answer was written; recorded in the audit log only",
                                   metadata: Self.metadata(transition))
                } else {
                    logger.debug("task not given back: its lease had been taken over", metadata: Self.metadata(transition))
                }
                continue
            }
            switch transition.change {
            case .retry(let at):
                dueAgain = min(dueAgain ?? at, at)
                logger.info("request failed; retry scheduled", metadata: Self.metadata(transition, detailed: true))
            case .release:
                dueAgain = min(dueAgain ?? transition.audit.at, transition.audit.at)
                logger.debug("task given back", metadata: Self.metadata(transition, detailed: true))
            case .finish(.failed):
                logger.warning("retries used up; task failed", metadata: Self.metadata(transition, detailed: true))
            case .finish:
                logger.debug("task finished", metadata: Self.metadata(transition))
            }
        }
        events.yield(.committed(count: batch.count, dueAgain: dueAgain))
    }

    /// A transition's log metadata. Built only for lines that are logged (the metadata
    /// argument is an autoclosure), never per task otherwise.
    private static func metadata(_ transition: TaskTransition, detailed: Bool = false) -> Logger.Metadata {
        let audit = transition.audit
        var metadata: Logger.Metadata = [
            "export_task_id": "\(transition.task.exportTaskID)", "task_id": "\(transition.task.id)",
            "outcome": "\(audit.outcome.rawValue)",
        ]
        if let attempt = audit.attempt { metadata["attempt"] = "\(attempt)" }
        if let status = audit.httpStatus { metadata["http_status"] = "\(status)" }
        if let code = audit.errorCode { metadata["error_code"] = "\(code)" }
        if let requestID = audit.requestID { metadata["request_id"] = "\(requestID)" }
        if case .retry(let at) = transition.change { metadata["retry_at"] = "\(Timestamp.format(at))" }
        if detailed, let message = audit.errorMessage { metadata["error"] = "\(message)" }
        return metadata
    }

    /// Logs what an answer changed; `task` is nil for a sweep's list request.
    func report(_ change: TrafficControl.Change, result: DeleteResult, task: ClaimedTask?) {
        switch change {
        case .none:
            break
        case .circuitOpened(let pause, let refusals):
            var metadata: Logger.Metadata = [
                "export_task_id": "\(task?.exportTaskID ?? "none (a list request)")",
                "credentials": "\(credentials?.description ?? options.credentialsDescription)",
                "error_code": "\(result.errorCode ?? "none")",
                "request_id": "\(result.requestID ?? "none")",
                "pause_s": "\(pause.components.seconds)",
                "refusals": "\(refusals)",
            ]
            // The likeliest cause of a 401 that a response shows: the local clock far off.
            let cause = result.clockOffset.flatMap { $0.isSignificant ? $0.explanation : nil }
            if let cause, let offset = result.clockOffset {
                metadata["cause"] = "\(cause)"
                metadata["clock_offset_s"] = "\(offset.seconds)"
            }
            shared.withLock { $0.refusal = "(\(result.errorCode ?? "401"))" + (cause.map { ": \($0)" } ?? "") }
            // Temporary credentials are renewed now, so that the probe goes with new ones.
            credentialSource?.afterRefusal()
            logger.error(cause == nil ? "credentials refused; requests paused" : "credentials refused, the local clock is off; requests paused",
                         metadata: metadata)
            if let status = pauseStatus(traffic.snapshot.circuit) { _ = notifier?.status(status) }
        case .throttled(let rate, let concurrency):
            logger.warning("server asked to slow down (429); rate and concurrency halved", metadata: [
                "export_task_id": "\(task?.exportTaskID ?? "none (a list request)")",
                "rate": "\(rate)", "concurrency": "\(concurrency)",
            ])
        }
    }
}
