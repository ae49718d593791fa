import FoundationEssentials
import Logging
import ServiceLifecycle

/// The service's own pruning (docs/operations.md, "Retention"): once at start, then every
/// `retention.every`, in batches that each hold the write lock briefly (``Pruner``), so claims
/// and outcome writes wait little. Stops at graceful shutdown, between batches.
public final class RetentionService: Service {
    private let pruner: Pruner
    private let retention: Configuration.Retention
    private let clock: any ServiceClock
    private let metrics: ServiceMetrics?
    private let logger: Logger

    public init(store: any QueueOperations, retention: Configuration.Retention, clock: any ServiceClock = SystemClock(),
                metrics: ServiceMetrics?, logger: Logger) {
        self.pruner = Pruner(store: store, folder: retention.archiveDirectory, logger: logger)
        self.retention = retention
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                guard await self.pruneOnce() else { return }
                do { try await self.clock.sleep(for: .seconds(self.retention.every)) } catch { return }
            }
        }
    }

    /// One prune; false when retention cannot run on this store at all.
    @discardableResult
    func pruneOnce() async -> Bool {
        let started = clock.instant()
        let now = clock.now()
        do {
            let summary = try await pruner.prune(cutoff: now.addingTimeInterval(-retention.keepFinished), dryRun: false,
                                                 now: { [clock] in clock.now() })
            let duration = clock.instant() - started
            metrics?.pruned(summary, at: clock.now(), duration: duration)
            if let size = try? await pruner.store.databaseSize() { metrics?.update(databaseSize: size) }
            if summary.batches > 0 {
                logger.info("pruned", metadata: [
                    "audit_rows": "\(summary.auditRows)", "tasks": "\(summary.tasks)", "files": "\(summary.files.count)",
                    "archive": "\(pruner.folder)", "longest_lock_hold_ms": "\(summary.longestLockHold.milliseconds)",
                    "duration_ms": "\(duration.milliseconds)",
                ])
            }
            return true
        } catch let error as StoreError where error.kind == .refused {
            logger.warning("retention cannot run on this store", metadata: ["error": "\(error)"])
            return false
        } catch is Pruner.Busy {
            logger.info("prune skipped: another prune is running")
            return true
        } catch {
            if !Task.isCancelled { logger.error("prune failed", metadata: ["error": "\(error)"]) }
            return true
        }
    }
}
