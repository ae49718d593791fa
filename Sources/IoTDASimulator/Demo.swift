import ExportTaskCleaner
import FoundationEssentials
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The `demo` command's logic: the real service (``CleanerService`` with an ``IoTDAClient``)
/// against the simulator on loopback, with a fresh queue in a new temporary folder, or in a
/// database the caller names (``Options/database``) that holds no task yet.
///
/// It lives beside the simulator, which the core library cannot import. The executable only
/// parses the options, draws the progress line and runs the service in a signal-aware group.
public enum Demo {
    /// A made-up access key ID; the secret key is random per run and never shown.
    public static let accessKeyID = "DEMOACCESSKEY0000001"
    public static let projectID = "demo-project"
    public static let region = "cn-north-4"
    public static let taskRange = 1...1_000_000
    public static let concurrencyRange = 1...1_000

    public struct Options: Sendable {
        /// How many export task IDs to queue (`demo-000001` …).
        public var tasks: Int
        /// Requests in flight at most.
        public var concurrency: Int
        /// Added by the simulator before every answer.
        public var latency: Duration
        /// How the simulator answers.
        public var mix: Mix
        /// Where the new temporary folder is made (default: the system's temporary directory).
        public var parentFolder: URL?
        /// How often `progress` is called while the service runs.
        public var progressInterval: Duration
        /// The queue, as the configuration's `database` names one: a PostgreSQL URL or a SQLite
        /// file's path (relative to the working folder). It must hold no task, no audit row and
        /// no live service (``requireUnused(_:)``). Nil: a new SQLite file in the temporary folder.
        public var database: String?
        /// Where a PostgreSQL password is found (`PGPASSWORD`, systemd's credential:
        /// ``PostgresPassword``); the demo has no credentials file.
        public var environment: [String: String]

        public init(tasks: Int = 1_000, concurrency: Int = 16, latency: Duration = .milliseconds(20), mix: Mix = .realistic,
                    parentFolder: URL? = nil, progressInterval: Duration = .milliseconds(250), database: String? = nil,
                    environment: [String: String] = [:]) {
            self.tasks = tasks
            self.concurrency = concurrency
            self.latency = latency
            self.mix = mix
            self.parentFolder = parentFolder
            self.progressInterval = progressInterval
            self.database = database
            self.environment = environment
        }
    }

    /// A live snapshot, for the progress line.
    public struct Progress: Sendable {
        public var done: Int
        public var total: Int
        public var inFlight: Int
        public var retries: Int
        /// Tasks finished per second over the last couple of seconds.
        public var perSecond: Double
        public var elapsed: Duration

        /// `  412/1000 done  16 in flight  9 retries  812/s  0.5 s`
        public var line: String {
            let width = String(total).count
            let doneText = String(repeating: " ", count: max(0, width - String(done).count)) + String(done)
            return "\(doneText)/\(total) done  \(inFlight) in flight  \(retries) retries  \(Int(perSecond.rounded()))/s  "
                + Demo.seconds(elapsed)
        }
    }

    /// What the demo did, and where to look at it.
    public struct Report: Sendable {
        public var tasks: Int
        public var concurrency: Int
        public var latency: Duration
        public var endpoint: String
        /// `realistic mix` or `custom mix`.
        public var mixDescription: String
        public var signing: SigningAlgorithm
        /// Tasks per state, from the database.
        public var counts: [TaskState: Int]
        /// Requests the service sent.
        public var requests: Int
        /// Requests that will be (or were) tried again.
        public var retries: Int
        /// Answers the simulator wrote with 429, and with a 5xx status.
        public var tooManyRequests: Int
        public var serverErrors: Int
        /// Requests the simulator refused for a bad signature (0 unless something is wrong).
        public var signatureFailures: Int
        /// From the first claim to the end of the service.
        public var elapsed: Duration
        /// Whether SIGINT or SIGTERM stopped the service before the queue was drained.
        public var interrupted: Bool
        public var folder: String
        /// The queue's path, or its PostgreSQL URL without a password.
        public var databasePath: String
        /// A configuration for `status` and `audit` (no credentials: they need none).
        public var configPath: String
        /// Where the PostgreSQL password came from (`PGPASSWORD`, …), which the printed
        /// commands need too; nil for SQLite.
        public var passwordSource: String? = nil
        /// How the printed commands name the binary: the path of the one that ran, when known,
        /// since after `swift run` no `export-task-cleaner` is on the `PATH`.
        public var executable = "export-task-cleaner"
        /// The sweep's summary line: what the simulator listed and the sweep queued (in `tasks`).
        public var sweep: String? = nil

        /// Tasks that reached a final state.
        public var finished: Int { TaskState.finished.reduce(0) { $0 + (counts[$1] ?? 0) } }
        /// Tasks still pending or in progress.
        public var unfinished: Int { (counts[.pending] ?? 0) + (counts[.inProgress] ?? 0) }

        public var throughput: Double {
            let seconds = elapsed.timeInterval
            return seconds > 0 ? Double(finished) / seconds : 0
        }

        public var statusCommand: String {
            "\(Demo.shellQuoted(executable)) status --config \(Demo.shellQuoted(configPath))"
        }
        public var auditCommand: String {
            "\(Demo.shellQuoted(executable)) audit --config \(Demo.shellQuoted(configPath)) --format table | tail"
        }

        /// The summary table the command prints.
        public var summary: String {
            var lines: [String] = []
            let headline = interrupted
                ? "Interrupted: \(finished) of \(tasks) tasks finished; \(unfinished) left pending."
                : "Drained: \(tasks) tasks, every one finished."
            lines.append(headline)
            lines.append("Simulator \(endpoint): \(mixDescription), \(latency.milliseconds) ms latency, \(signing.rawValue) signatures checked; concurrency \(concurrency).")
            if let sweep { lines.append("Sweep (finished export tasks older than 7d): \(sweep).") }
            lines.append("")
            // `not_found_after_unknown` only when there is one (a request whose answer was lost),
            // so that the rows always add up to the total.
            let outcomes: [TaskState] = [.deleted, .notFound]
                + ((counts[.notFoundAfterUnknown] ?? 0) > 0 ? [.notFoundAfterUnknown] : [])
                + [.forbidden, .rejected, .failed, .invalid]
            let rows: [(String, String, String)] = outcomes.map { state in
                let count = counts[state] ?? 0
                return (state.rawValue, String(count), Demo.percent(count, of: tasks))
            }
            let total = ("total", String(finished), Demo.percent(finished, of: tasks))
            let nameWidth = 18
            let numberWidth = max(7, String(tasks).count + 1)
            func row(_ name: String, _ value: String, _ note: String = "") -> String {
                let padded = TextFormat.padRight(name, to: nameWidth)
                let number = TextFormat.padLeft(value, to: numberWidth)
                return ("  " + padded + number + (note.isEmpty ? "" : "  " + note))
            }
            lines.append(row("OUTCOME", "TASKS"))
            for (name, value, share) in rows { lines.append(row(name, value, share)) }
            lines.append(row(total.0, total.1, total.2))
            if unfinished > 0 {
                lines.append(row("pending", String(counts[.pending] ?? 0)))
                lines.append(row("in_progress", String(counts[.inProgress] ?? 0)))
            }
            lines.append("")
            lines.append(row("requests sent", String(requests)))
            lines.append(row("retries", String(retries)))
            lines.append(row("429s seen", String(tooManyRequests)))
            lines.append(row("5xx seen", String(serverErrors)))
            lines.append(row("throughput", TextFormat.fixed(throughput, places: 1), "tasks/s"))
            lines.append(row("elapsed", TextFormat.fixed(elapsed.timeInterval, places: 2), "s"))
            lines.append(row("signature failures", String(signatureFailures), signatureFailures == 0 ? "" : "(should be 0)"))
            lines.append("")
            lines.append("Database: \(databasePath)")
            if let passwordSource {
                lines.append("Inspect it (the commands read the database password as this run did, from \(passwordSource)):")
            } else {
                lines.append("Inspect it:")
            }
            lines.append("  \(statusCommand)")
            lines.append("  \(auditCommand)")
            return lines.joined(separator: "\n") + "\n"
        }
    }

    /// Runs the demo: starts the simulator (signatures checked with a random secret key), makes
    /// a fresh queue with `options.tasks` IDs, and runs the service in drain mode through
    /// `runService` (which may put it in a signal-aware service group; by default it just runs).
    /// Returns the report once the service has ended: drained, or stopped by graceful shutdown.
    public static func run(
        _ options: Options,
        logger: Logger,
        progress: (@Sendable (Progress) -> Void)? = nil,
        runService: @Sendable (CleanerService) async throws -> Void = { try await $0.run() }
    ) async throws -> Report {
        guard taskRange.contains(options.tasks) else {
            throw CleanerError.configuration("--tasks: expected \(taskRange.lowerBound) to \(taskRange.upperBound), got \(options.tasks)")
        }
        guard concurrencyRange.contains(options.concurrency) else {
            throw CleanerError.configuration(
                "--concurrency: expected \(concurrencyRange.lowerBound) to \(concurrencyRange.upperBound), got \(options.concurrency)")
        }

        let postgres = options.database.map(PostgresURL.isPostgres) ?? false
        let passwordSource = postgres
            ? try PostgresPassword.resolve(environment: options.environment, credentialsFile: nil).source.description : nil
        // A URL is checked before anything starts, and is never resolved as a path.
        if postgres, let url = options.database { _ = try PostgresURL(url) }

        let folder = try makeFolder(in: options.parentFolder ?? FileManager.default.temporaryDirectory)
        let database = options.database.map { postgres ? $0 : absolutePath($0) }
            ?? folder.appendingPathComponent("queue.sqlite3").path
        let configPath = folder.appendingPathComponent("config.json").path

        let key = AccessKey(ak: accessKeyID, sk: randomSecret())
        let simulator = try await IoTDASimulator.start(
            .init(projectID: projectID, auth: .accessKey(key), region: region, mix: options.mix, latency: options.latency),
            logger: logger)
        let signing = SigningAlgorithm.automatic(forHost: "127.0.0.1")
        let client: IoTDAClient
        do {
            client = try IoTDAClient(
                configuration: .init(endpoint: simulator.endpoint, credentials: .accessKey(key), signing: signing, region: region,
                                     concurrency: options.concurrency, requestTimeout: .seconds(10)),
                logger: logger)
        } catch {
            try? await simulator.shutdown()
            throw error
        }

        var opened: (any QueueStore)?
        do {
            var configuration = Configuration(endpoint: simulator.endpoint, region: region, projectID: projectID)
            configuration.database = database
            configuration.concurrency = options.concurrency
            let store = try await StoreOpening.open(configuration: configuration, purpose: .service,
                                                    environment: options.environment, logger: logger)
            opened = store
            if options.database != nil { try await requireUnused(store) }
            try writeConfig(path: configPath, databasePath: database, endpoint: simulator.endpoint)
            try await enqueue(options.tasks, into: store)
            let swept = try await sweep(simulator: simulator, client: client, into: store, logger: logger)
            let total = options.tasks + swept.queued

            let cleanerOptions = CleanerOptions(
                projectID: projectID, concurrency: options.concurrency,
                maxRequestsPerSecond: Double(max(1_000, options.concurrency * 100)),
                leaseDuration: .seconds(60), shutdownGrace: .seconds(5), pollInterval: .milliseconds(200), drain: true,
                credentialsDescription: "the demo key \(key.abbreviatedAK), signed \(signing.rawValue)")
            let service = CleanerService(
                options: cleanerOptions, store: store, transport: client,
                retry: .exponentialJitter(maxAttempts: 8, baseDelay: .milliseconds(200), maxDelay: .seconds(2)),
                logger: logger)

            let start = ContinuousClock.now
            let reporter = progress.map { progress in
                Task { await report(service: service, total: total, start: start,
                                    interval: options.progressInterval, to: progress) }
            }
            let runError: (any Error)?
            do {
                try await runService(service)
                runError = nil
            } catch {
                runError = error
            }
            let elapsed = ContinuousClock.now - start
            reporter?.cancel()
            await reporter?.value
            try await client.shutdown()
            let counters = simulator.counters
            try await simulator.shutdown()
            if let runError { throw runError }

            let statistics = service.statistics
            let counts = try await store.counts()
            await store.close()
            return Report(
                tasks: total, concurrency: options.concurrency, latency: options.latency, endpoint: simulator.endpoint,
                mixDescription: options.mix == .realistic ? "realistic mix" : "custom mix", signing: signing, counts: counts, requests: statistics.requests, retries: statistics[.retry],
                tooManyRequests: counters.responses(status: 429),
                serverErrors: counters.responsesByStatus.filter { (500..<600).contains($0.key) }.values.reduce(0, +),
                signatureFailures: counters.signatureFailures, elapsed: elapsed,
                interrupted: service.outcome != .drained,
                folder: folder.path, databasePath: postgres ? store.location : database, configPath: configPath,
                passwordSource: passwordSource, sweep: swept.line)
        } catch {
            await opened?.close()
            try? await client.shutdown()
            try? await simulator.shutdown()
            // A database refused before anything was written leaves an empty folder: removed.
            rmdir(folder.path)
            throw error
        }
    }


    // MARK: Pieces

    /// Calls `progress` every `interval` until cancelled, with the rate over the last 2 s.
    private static func report(service: CleanerService, total: Int, start: ContinuousClock.Instant, interval: Duration,
                               to progress: @Sendable (Progress) -> Void) async {
        var samples: [(at: ContinuousClock.Instant, done: Int)] = [(start, 0)]
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            let now = ContinuousClock.now
            let statistics = service.statistics
            samples.append((now, statistics.finished))
            while samples.count > 2, now - samples[1].at >= .seconds(2) { samples.removeFirst() }
            let window = (now - samples[0].at).timeInterval
            let rate = window > 0 ? Double(statistics.finished - samples[0].done) / window : 0
            progress(Progress(done: statistics.finished, total: total, inFlight: statistics.inFlight,
                              retries: statistics[.retry], perSecond: rate, elapsed: now - start))
        }
    }

    /// A new folder `export-task-cleaner-demo-XXXXXX` (mode 0700) in `parent`.
    static func makeFolder(in parent: URL) throws -> URL {
        let template = parent.appendingPathComponent("export-task-cleaner-demo-XXXXXX").path
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else {
            throw CleanerError.runtime("cannot make a temporary folder in \(parent.path): \(String(cString: strerror(errno)))")
        }
        return URL(fileURLWithPath: String(cString: made), isDirectory: true)
    }

    /// Queues `demo-000001` … in transactions of up to 50,000.
    static func enqueue(_ count: Int, into store: any QueueStore) async throws {
        let now = Date()
        var next = 1
        while next <= count {
            let last = min(count, next + 49_999)
            let items = (next...last).map { EnqueueItem(exportTaskID: exportTaskID($0)) }
            let summary = try await store.enqueue(items, now: now)
            guard summary.invalid.isEmpty, summary.queued == items.count else {
                throw CleanerError.runtime("the demo queue did not take its IDs (\(summary.queued) of \(items.count) queued)")
            }
            next = last + 1
        }
    }

    /// `demo-000001`: at least six digits.
    public static func exportTaskID(_ number: Int) -> String {
        let digits = String(number)
        return "demo-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// A configuration for `status` and `audit`: the database, the simulator's endpoint and the
    /// demo project. No credentials: those commands never send a request.
    static func writeConfig(path: String, databasePath: String, endpoint: String) throws {
        let object: [String: String] = ["database": databasePath, "endpoint": endpoint, "region": region, "project_id": projectID]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(object)
        data.append(UInt8(ascii: "\n"))
        do {
            try data.write(to: URL(fileURLWithPath: path))
        } catch {
            throw CleanerError.runtime("cannot write \(path): \(error)")
        }
    }

    /// 40 random letters and digits.
    static func randomSecret() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<40).map { _ in alphabet[Int(generator.next(upperBound: UInt64(alphabet.count)))] })
    }

    static func shellQuoted(_ text: String) -> String {
        let safe = text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "/._-+:=@%,".contains($0)) }
        return safe && !text.isEmpty ? text : "'" + text.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }

    static func seconds(_ duration: Duration) -> String {
        TextFormat.fixed(duration.timeInterval, places: 2) + " s"
    }

    static func percent(_ count: Int, of total: Int) -> String {
        guard total > 0 else { return "" }
        return TextFormat.padLeft(TextFormat.fixed(Double(count) * 100 / Double(total), places: 1), to: 5) + "%"
    }
}
