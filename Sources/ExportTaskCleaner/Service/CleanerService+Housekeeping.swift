import FoundationEssentials
import Logging

extension CleanerService {
    /// Runs beside the work loop until cancelled: renews leases of requests in flight, expires
    /// dead leases, refreshes the heartbeat and `STATUS=`, and logs progress.
    func housekeeping(startedAt: Date) async {
        var lastRenewal = clock.instant()
        var lastSweep = clock.instant()
        var lastStatus: ContinuousClock.Instant?
        var lastProgress = clock.instant()
        var progressAtLastLog = CleanerStatistics()
        var counts: [TaskState: Int] = [:]
        // With metrics on, the counts are fresh within a poll interval, or, on a queue so large
        // that counting takes long, within 50 times the count's own time (under 2% of a core).
        var lastMetricsCount = clock.instant()
        var metricsCountInterval = options.pollInterval
        var countsInMetrics: [TaskState: Int]?
        while !Task.isCancelled {
            let now = clock.instant()
            if now - lastRenewal >= options.leaseRenewalInterval {
                lastRenewal = now
                await renewLeases()
            }
            if now - lastSweep >= options.leaseSweepInterval {
                lastSweep = now
                await expireDeadLeases()
            }
            if lastStatus.map({ now - $0 >= options.statusInterval }) ?? true {
                lastStatus = now
                counts = await refreshCounts(counts)
                let text = statusText(counts: counts)
                _ = notifier?.status(text)
                let now = clock.now()
                // Not while stopping: the service removes it as it ends, and on a locked
                // database the write would hold up the outcomes' last writes behind it.
                if !isStopping {
                    do { try await database.heartbeat(startedAt: startedAt, status: text, now: now) } catch {
                        logger.warning("cannot write the heartbeat", metadata: ["error": "\(error)"])
                    }
                }
            }
            if metrics != nil, now - lastMetricsCount >= metricsCountInterval {
                lastMetricsCount = now
                let started = clock.instant()
                counts = await refreshCounts(counts)
                if counts != countsInMetrics {
                    countsInMetrics = counts
                    await updateMetrics(counts: counts)
                    // The count's own time (not the renewals' or the sweep's before it).
                    metricsCountInterval = max(options.pollInterval, (clock.instant() - started) * 50)
                }
            }
            if now - lastProgress >= options.progressInterval {
                let statistics = self.statistics
                if statistics != progressAtLastLog {
                    let seconds = (now - lastProgress).timeInterval
                    let finished = statistics.finished - progressAtLastLog.finished
                    logger.info("progress", metadata: [
                        "in_flight": "\(statistics.inFlight)", "pending": "\(counts[.pending] ?? 0)",
                        "finished": "\(statistics.finished)", "deleted": "\(statistics[.deleted])",
                        "retries": "\(statistics[.retry])", "per_second": "\(Int((Double(finished) / seconds).rounded()))",
                    ])
                    progressAtLastLog = statistics
                }
                lastProgress = now
            }
            // Until the next of these is due (every few seconds at most): an idle service
            // should cost nothing.
            var wait = min(options.leaseRenewalInterval - (now - lastRenewal), options.leaseSweepInterval - (now - lastSweep))
            wait = min(wait, options.statusInterval, options.progressInterval - (now - lastProgress))
            if metrics != nil { wait = min(wait, metricsCountInterval - (now - lastMetricsCount)) }
            do { try await clock.sleep(for: max(Tuning.shortestHousekeepingSleep, wait)) } catch { return }
        }
    }

    private func renewLeases() async {
        let tokens = shared.withLock { $0.leases.tokens }
        guard !tokens.isEmpty else { return }
        do {
            // Taken before the write: the lease is known to hold until then at least.
            let until = clock.now().addingTimeInterval(options.leaseDuration.timeInterval)
            let held = try await database.renewLeases(tokens: tokens, until: until)
            shared.withLock { $0.leases.renewed(tokens: tokens, until: until, held: held) }
        } catch {
            logger.error("cannot renew leases", metadata: ["error": "\(error)", "leases": "\(tokens.count)"])
        }
    }

    /// Counts tasks per state, only when something changed since the last count: counting a
    /// large queue is not free, and an idle service should cost nothing.
    private func refreshCounts(_ previous: [TaskState: Int]) async -> [TaskState: Int] {
        let dirty = shared.withLock { shared in
            defer { shared.countsDirty = false }
            return shared.countsDirty
        }
        guard dirty || previous.isEmpty else { return previous }
        do { return try await database.counts() } catch {
            logger.warning("cannot count tasks", metadata: ["error": "\(error)"])
            return previous
        }
    }

    /// The metrics' task counts and the oldest pending task's age (one more read: only when
    /// metrics are on and the counts changed).
    func updateMetrics(counts: [TaskState: Int]) async {
        guard let metrics else { return }
        do {
            let oldest = try await database.oldestPendingEnqueuedAt()
            metrics.update(counts: counts, oldestPending: oldest)
        } catch {
            // The age keeps its last reading; the counts are new.
            metrics.update(counts: counts, oldestPending: nil, keepingAge: true)
        }
    }

    /// The live figures, for a scrape: requests in flight, the limits as 429s left them, and
    /// whether credentials hold requests back.
    public func collectMetrics() {
        let snapshot = traffic.snapshot
        metrics?.update(inFlight: requestsInFlight.load(ordering: .relaxed), concurrency: snapshot.concurrency,
                        rate: snapshot.rate, paused: snapshot.circuit.holdsRequests, now: clock.now())
    }

    /// The line systemd shows in `systemctl status`, also kept in the heartbeat row.
    func statusText(counts: [TaskState: Int]) -> String {
        let statistics = self.statistics
        let snapshot = traffic.snapshot
        var parts = [
            "in flight \(statistics.inFlight)",
            "pending \(counts[.pending] ?? 0)",
            "done \(statistics.finished) (deleted \(statistics[.deleted]), not found \(statistics[.notFound] + statistics[.notFoundAfterUnknown]), forbidden \(statistics[.forbidden]), rejected \(statistics[.rejected]), failed \(statistics[.failed]))",
            "retries \(statistics[.retry])",
        ]
        if let pause = pauseStatus(snapshot.circuit) { parts.append(pause) }
        if snapshot.rate < snapshot.maxRate || snapshot.concurrency < snapshot.maxConcurrency {
            parts.append("slowed by 429: \(Int(snapshot.rate.rounded()))/s, \(snapshot.concurrency) at once")
        }
        if isStopping { parts.append("stopping") }
        return parts.joined(separator: "; ")
    }
}
