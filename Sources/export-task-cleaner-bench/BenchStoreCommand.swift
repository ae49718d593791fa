import ArgumentParser
import ExportTaskCleaner
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Measures the queue store alone, for `scripts/bench`: a fresh database with `--tasks` pending
/// tasks (a new SQLite file, or an empty PostgreSQL database named by its URL, the password from
/// `PGPASSWORD`), then `claim(limit: batch)` and one `apply` of `batch` finish transitions (deleted,
/// each with its audit row, as after a 204) until nothing is left. A binary of its own, built
/// beside the product but not shipped (`scripts/package` packages `export-task-cleaner` only).
@main
struct BenchStoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-task-cleaner-bench-store",
        abstract: "Measures the queue store's claim and finish throughput on a fresh database.")

    @Option(name: .long, help: ArgumentHelp(
        "A SQLite file to create (must not exist), or an empty PostgreSQL database's URL (password from PGPASSWORD).",
        valueName: "path-or-url"))
    var database: String

    @Option(name: .long, help: "Pending tasks to create.")
    var tasks = 200_000

    @Option(name: .long, help: "Tasks per claim and per apply.")
    var batch = 64

    func validate() throws {
        guard tasks > 0 else { throw ValidationError("--tasks must be at least 1") }
        guard batch > 0 else { throw ValidationError("--batch must be at least 1") }
        guard PostgresURL.isPostgres(database) || !FileManager.default.fileExists(atPath: database) else {
            throw ValidationError("--database: \(database) exists; give a path to a new file")
        }
    }

    func run() async throws {
        // As the service opens it (StoreOpening): a path is SQLite, a URL PostgreSQL.
        var configuration = Configuration(endpoint: "http://127.0.0.1:9", region: "bench", projectID: "bench")
        configuration.database = database
        let store = try await StoreOpening.open(configuration: configuration, purpose: .service,
                                                environment: ProcessInfo.processInfo.environment)
        do {
            let queued = try await store.counts().values.reduce(0, +)
            guard queued == 0 else {
                throw CleanerError.runtime("bench-store: \(store.location) already holds \(queued) tasks; give it an empty database")
            }
            try await measure(store)
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }

    /// Fills the queue, then claims and finishes until it is empty; prints the figures.
    private func measure(_ store: any QueueStore) async throws {
        let fillStart = ContinuousClock.now
        var items: [EnqueueItem] = []
        items.reserveCapacity(tasks)
        for index in 0..<tasks {
            items.append(EnqueueItem(exportTaskID: "bench-\(index)"))
        }
        let summary = try await store.enqueue(items, now: Date())
        items = []
        let fillSeconds = (ContinuousClock.now - fillStart).timeInterval
        guard summary.queued == tasks else {
            throw CleanerError.runtime("bench-store: \(summary.queued) of \(tasks) tasks queued")
        }

        let start = ContinuousClock.now
        let cpuStart = Self.processCPUSeconds()
        var finished = 0
        var rounds = 0
        var claimTime = Duration.zero
        while finished < tasks, rounds <= tasks {
            rounds += 1
            let now = Date()
            let claimStart = ContinuousClock.now
            let claimed = try await store.claim(limit: batch, leaseToken: "bench-\(rounds)",
                                          leaseUntil: now.addingTimeInterval(300), now: now)
            claimTime += ContinuousClock.now - claimStart
            if claimed.isEmpty { break }
            let at = Date()
            let transitions = claimed.map { task in
                TaskTransition(task: task, change: .finish(.deleted), attempts: task.attempts + 1,
                               audit: AuditRecord(outcome: .deleted, at: at, attempt: task.attempts + 1,
                                                  durationMilliseconds: 20, httpStatus: 204,
                                                  requestID: "0123456789abcdef0123456789abcdef", delivery: .answered))
            }
            let applied = try await store.apply(transitions)
            finished += applied.filter { $0 }.count
        }
        let seconds = (ContinuousClock.now - start).timeInterval
        let cpuSeconds = Self.processCPUSeconds() - cpuStart
        guard finished == tasks else {
            throw CleanerError.runtime("bench-store: finished \(finished) of \(tasks) tasks")
        }
        let rate = Double(finished) / seconds
        print("fill \(tasks) tasks: \(TextFormat.fixed(fillSeconds, places: 3)) s")
        print("claim+finish \(finished) tasks in batches of \(batch): \(TextFormat.fixed(seconds, places: 3)) s, \(Int(rate.rounded())) tasks/s, \(TextFormat.fixed(cpuSeconds * 1e6 / Double(finished), places: 1)) µs CPU per task (claim \(TextFormat.fixed(claimTime.timeInterval / seconds * 100, places: 0)) % of the time)")
    }
}

extension BenchStoreCommand {
    /// CPU time of this process (user and system), in seconds.
    static func processCPUSeconds() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}
