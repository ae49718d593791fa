import FoundationEssentials
import Logging

/// A sweep (docs/commands.md, "sweep"): lists the project's export tasks page by page
/// (``SweepPager``), decides each (``SweepSelection``), and queues the finished ones old enough,
/// a page at a time, through the store's ``QueueOperations/enqueue(_:now:)`` (an ID already
/// queued is left as it is). A dry run lists and counts and queues nothing.
///
/// A list request is retried as a delete is: 408, 429, 5xx and failures without an answer,
/// with the retry strategy's backoff (at least `Retry-After`, cut to its limit), at most
/// ``Options/maximumAttempts`` times a page. Anything else stops the sweep with a
/// ``SweepFailure``; what was queued by then stays queued.
public struct ExportTaskSweep: Sendable {
    public struct Options: Sendable {
        public var projectID: String
        public var instanceID: String?
        /// `--older-than`, as `audit --since` reads it: an age (`7d`) or a time.
        public var olderThan: String
        public var dryRun: Bool
        /// Which sweep this is, in each swept task's `queued` audit row (docs/database.md).
        public var source: String
        public var pageLimit = 50
        public var maximumPages = SweepPager.defaultMaximumPages
        public var maximumAttempts = 5

        public init(projectID: String, instanceID: String?, olderThan: String, dryRun: Bool,
                    source: String = "sweep command") {
            self.projectID = projectID
            self.instanceID = instanceID
            self.olderThan = olderThan
            self.dryRun = dryRun
            self.source = source
        }
    }

    /// What the service shares with a sweep: its pacing before each request, and each answer
    /// for its credential circuit. Both do nothing by default (the `sweep` command).
    public struct Hooks: Sendable {
        public var beforeRequest: @Sendable () async throws -> Void
        public var afterAnswer: @Sendable (DeleteResult) async -> Void

        public init(beforeRequest: @escaping @Sendable () async throws -> Void = {},
                    afterAnswer: @escaping @Sendable (DeleteResult) async -> Void = { _ in }) {
            self.beforeRequest = beforeRequest
            self.afterAnswer = afterAnswer
        }
    }

    public let options: Options
    public let lister: any ExportTaskLister
    public let retry: any RetryStrategy
    public let clock: any ServiceClock
    public let random: any RandomSource
    public let hooks: Hooks
    public let logger: Logger

    public init(options: Options, lister: any ExportTaskLister, retry: any RetryStrategy, clock: any ServiceClock,
                random: any RandomSource = SystemRandomSource(), hooks: Hooks = Hooks(), logger: Logger) {
        self.options = options
        self.lister = lister
        self.retry = retry
        self.clock = clock
        self.random = random
        self.hooks = hooks
        self.logger = logger
    }

    /// Sweeps once into `store` (nil or a dry run: nothing is queued).
    public func run(store: (any QueueOperations)?) async throws(SweepFailure) -> SweepSummary {
        var summary = SweepSummary()
        guard let cutoff = AuditFilter.since(options.olderThan, now: clock.now()) else {
            throw SweepFailure(code: .configuration, message: "older than: \(AuditFilter.sinceProblem(options.olderThan))",
                               summary: summary)
        }
        var pager = SweepPager(maximumPages: options.maximumPages)
        while case .fetch(let marker) = pager.step {
            let request = ListExportTasksRequest(projectID: options.projectID, instanceID: options.instanceID,
                                                 limit: options.pageLimit, marker: marker)
            let page = try await fetch(request, summary: summary)
            summary.pages += 1
            var items: [EnqueueItem] = []
            for task in page.tasks {
                let selection = SweepSelection.decide(task, cutoff: cutoff)
                summary.count(selection, exportTaskID: task.exportTaskID)
                switch selection {
                case .queue:
                    items.append(EnqueueItem(exportTaskID: task.exportTaskID, auditNote: auditNote(task)))
                case .invalid(let problem):
                    logger.debug("listed export task skipped", metadata: [
                        "export_task_id": "\(ExportTaskID.shown(task.exportTaskID))", "problem": "\(problem)",
                    ])
                case .processing, .tooYoung:
                    break
                }
            }
            if !items.isEmpty, !options.dryRun, let store {
                do {
                    let queued = try await store.enqueue(EnqueueList(items), now: clock.now())
                    summary.queued += queued.queued
                    summary.alreadyQueued += queued.alreadyQueued
                } catch {
                    throw SweepFailure(code: .runtime, message: "could not queue: \(error)", summary: summary)
                }
            }
            if case .failed(let reason) = pager.received(page) {
                throw SweepFailure(code: .runtime, message: "the list of export tasks: \(reason)", summary: summary)
            }
        }
        logger.info("sweep finished", metadata: [
            "pages": "\(summary.pages)", "listed": "\(summary.listed)", "eligible": "\(summary.eligible)",
            "queued": "\(summary.queued)", "already_queued": "\(summary.alreadyQueued)",
            "processing": "\(summary.processing)", "too_young": "\(summary.tooYoung)", "invalid": "\(summary.invalid)",
            "dry_run": "\(options.dryRun)",
        ])
        return summary
    }

    /// A swept task's `queued` audit row says where it came from and why (docs/database.md):
    /// `queued by sweep command: Success, ended 2026-11-20T10:00:00.000Z, older than 7d`.
    private func auditNote(_ task: ListedExportTask) -> String {
        let text = "queued by \(options.source): \(task.status ?? ""), ended \(task.endTime ?? ""), older than \(options.olderThan)"
        return TextFormat.printable(text)
    }

    /// One page, retried while the answer says to try again.
    private func fetch(_ request: ListExportTasksRequest, summary: SweepSummary) async throws(SweepFailure) -> ExportTaskPage {
        var attempts = 0
        while true {
            do {
                try Task.checkCancellation()
                try await hooks.beforeRequest()
            } catch let error as CleanerError {
                throw SweepFailure(code: .runtime, message: error.message, summary: summary)
            } catch {
                throw SweepFailure(code: .runtime, message: "cancelled", summary: summary)
            }
            attempts += 1
            let result = await lister.list(request)
            await hooks.afterAnswer(result.response)
            let response = result.response
            if let status = response.httpStatus, (200..<300).contains(status), response.unfinishedAnswerStatus == nil {
                if let page = result.page { return page }
                throw SweepFailure(code: .runtime, message: "the list of export tasks: \(result.problem ?? "no page")",
                                   response: response, summary: summary)
            }
            switch response.classification {
            case .retryable where attempts < options.maximumAttempts && retry.shouldRetry(attempts: attempts):
                let delay = retry.backoff(attempts: attempts, retryAfter: response.retryAfter, unit: random.nextUnit())
                logger.info("list of export tasks to be tried again", metadata: [
                    "http_status": "\(response.httpStatus.map(String.init) ?? "none")", "attempts": "\(attempts)",
                    "delay_ms": "\(delay.milliseconds)", "error": "\(response.errorMessage.map(TextFormat.printable) ?? "")",
                ])
                do {
                    try await clock.sleep(for: delay)
                } catch {
                    throw SweepFailure(code: .runtime, message: "cancelled", summary: summary)
                }
            case .retryable:
                throw SweepFailure(code: .runtime, message: "the list of export tasks failed \(attempts) times", response: response,
                                   summary: summary)
            case .authRefused:
                throw SweepFailure(code: .credentialsRefused, message: "the credentials were refused", response: response,
                                   summary: summary)
            default:
                throw SweepFailure(code: .runtime, message: "the list of export tasks was refused", response: response,
                                   summary: summary)
            }
        }
    }
}

/// Why a sweep stopped: a code for the exit status, a message, the answer that stopped it
/// (explained as `check --probe` explains it), and what the sweep had done by then.
public struct SweepFailure: Error, Sendable, CustomStringConvertible {
    public var code: CleanerError.Code
    public var message: String
    public var response: DeleteResult?
    public var summary: SweepSummary

    public init(code: CleanerError.Code, message: String, response: DeleteResult? = nil, summary: SweepSummary) {
        self.code = code
        self.message = message
        self.response = response
        self.summary = summary
    }

    /// The message, with the answer explained when there was one.
    public var description: String {
        guard let response else { return message }
        return "\(message): \(SetupCheck.explainList(response).explanation)"
    }
}
