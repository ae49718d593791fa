import FoundationEssentials
import Logging
import PostgresNIO
import Synchronization

/// The queue in a PostgreSQL database, for feeders and services on many hosts
/// (docs/database.md, "PostgreSQL"): the same tables and rules as the SQLite store, leases
/// claimed with `FOR UPDATE SKIP LOCKED`, one audit chain across every service, appended
/// under a transaction-scoped advisory lock.
///
/// Every call leases a connection from a postgres-nio pool and is bounded by
/// ``callTimeout``; the server's own waits end sooner (`lock_timeout`, `statement_timeout`
/// set at connect). A database that went away fails calls as ``StoreError/Kind/unavailable``
/// until it is back: the service keeps its outcomes and retries (docs/operations.md,
/// "Behaviour under failures").
public final class PostgresQueueStore: QueueStore {
    let client: PostgresClient
    let logger: Logger
    /// Who writes: `host:pid`, recorded in every audit row.
    let runner: String
    /// The schema the tables are in: the role's default (`current_schema()`).
    let schema: String
    public let location: String
    private let listener: PostgresChangeListener?
    /// The pool's `run()`, and the listener: both end when cancelled.
    private let tasks: [Task<Void, Never>]
    private let writes = WriteCounter()

    /// A call's bound: a lease of a connection, the statements, the commit. As SQLite's busy
    /// timeout, so that the work loop, waiting for a claim, stays within the liveness bound
    /// the watchdog allows (``Tuning``; docs/operations.md, "Behaviour under failures").
    static let callTimeout = Duration.seconds(10)
    /// An operator's write (`enqueue` of a long list, `requeue` of a whole state) and opening
    /// (a migration waits up to a minute for another's): bounded, but not by the service's bound.
    static let commandTimeout = Duration.seconds(15 * 60)
    /// Server-side bounds, below ``callTimeout``: a statement, and a wait for a row lock.
    static let startupParameters = [
        ("statement_timeout", "8s"), ("lock_timeout", "5s"), ("idle_in_transaction_session_timeout", "60s"),
        ("application_name", "export-task-cleaner"),
    ]

    /// The service's sessions plan without bitmap scans. Its claim reads its LIMIT rows in
    /// order from `export_tasks_due` and stops; a table a feeder has just filled is one the
    /// planner has no statistics for yet (until autovacuum's next ANALYZE), and it would rather
    /// fetch every due row with a bitmap scan and sort them: 15 ms instead of 0.1 ms at 20,000
    /// pending, growing with the backlog (docs/benchmarks.md). Set for the session rather than
    /// in the claim's own transaction, so a claim stays one statement and one round trip; no
    /// other statement of the service gains from a bitmap scan (each reads rows by id, by lease
    /// token or a few by state, or all of them).
    static let servicePlanning = [("enable_bitmapscan", "off")]

    /// What every session of a store opened for `purpose` starts with.
    static func startupParameters(for purpose: StorePurpose) -> [(String, String)] {
        startupParameters + (purpose == .service ? servicePlanning : [])
    }

    /// Connects, and creates or migrates the schema (`write`, `service`) or checks it is
    /// current (`inspect`). `connections` bounds the pool; the service's listener takes one
    /// more. Throws `CleanerError` when the database cannot be used as configured.
    public static func open(url: PostgresURL, password: String?, passwordSource: PostgresPassword.Source = .environment,
                            runner: String = Runner.current, purpose: StorePurpose, connections: Int = 4,
                            logger: Logger) async throws -> PostgresQueueStore {
        // One connection first, made directly: the pool retries a failed connection with a
        // backoff and reports, seconds later, only that it could not; this says at once why
        // (refused, the password, TLS, the role or the database), never with the password.
        do {
            let probe = try await PostgresSetupCheck.connect(url: url, password: password, connectTimeout: .seconds(10),
                                                             startupParameters: [], logger: logger)
            try? await probe.close()
        } catch {
            let reason = PostgresConnectFailure.explain(error, url: url, password: PostgresPassword(password: password, source: passwordSource),
                                                        timeout: .seconds(10))
            throw CleanerError.runtime("database: cannot use \(url.redacted): \(reason)")
        }
        return try await open(url: url, password: password, runner: runner, purpose: purpose, connections: connections,
                              searchPath: nil, logger: logger)
    }

    /// `searchPath`: the tests' way to give each test a schema of its own (its name is also
    /// the connections' `application_name`, so a test can find its sessions).
    package static func open(url: PostgresURL, password: String?, runner: String = Runner.current, purpose: StorePurpose,
                             connections: Int = 4, searchPath: String?, logger: Logger) async throws -> PostgresQueueStore {
        var configuration = url.clientConfiguration(password: password)
        configuration.options.connectTimeout = .seconds(10)
        configuration.options.maximumConnections = max(2, connections) + (purpose == .service ? 1 : 0)
        let parameters = startupParameters(for: purpose)
        configuration.options.additionalStartupParameters = parameters
        if let searchPath {
            configuration.options.additionalStartupParameters = parameters.filter { $0.0 != "application_name" }
                + [("search_path", searchPath), ("application_name", searchPath)]
        }
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        let running = Task { await client.run() }
        do {
            let schema = try await withDeadline(commandTimeout) {
                try await client.withConnection { connection in
                    try await checkEncoding(connection, logger: logger)
                    switch purpose {
                    case .inspect: try await PostgresSchema.check(connection, logger: logger)
                    case .write, .service: try await PostgresSchema.migrate(connection, logger: logger)
                    }
                    var schema = ""
                    for try await name in try await connection.query("SELECT current_schema()::text", logger: logger).decode(String.self) {
                        schema = name
                    }
                    return schema
                }
            }
            return PostgresQueueStore(client: client, running: running, schema: schema, url: url, runner: runner,
                                      listening: purpose == .service, logger: logger)
        } catch {
            running.cancel()
            await running.value
            throw openingError(error, url: url)
        }
    }

    private init(client: PostgresClient, running: Task<Void, Never>, schema: String, url: PostgresURL,
                 runner: String, listening: Bool, logger: Logger) {
        self.client = client
        self.schema = schema
        self.location = url.redacted
        self.runner = runner
        self.logger = logger
        let listener = listening ? PostgresChangeListener() : nil
        self.listener = listener
        tasks = [running] + (listener.map { listener in
            [Task { await listener.run(client: client, schema: schema, logger: logger) }]
        } ?? [])
    }

    /// Text in a database of another encoding would fail on the first answer in Chinese, and
    /// such a batch of outcomes could never be written: refused before anything is created.
    private static func checkEncoding(_ connection: PostgresConnection, logger: Logger) async throws {
        var encoding = ""
        for try await name in try await connection.query("SHOW server_encoding", logger: logger).decode(String.self) {
            encoding = name
        }
        guard encoding == "UTF8" else {
            throw CleanerError.configuration(
                "database: its encoding is \(TextFormat.printable(encoding)), and the queue needs UTF8 (server answers and IDs are Unicode); create the database with ENCODING 'UTF8'")
        }
    }

    private static func openingError(_ error: any Error, url: PostgresURL) -> any Error {
        if error is CleanerError { return error }
        let reason = StoreError.fromPostgres(error)
        return CleanerError.runtime("database: cannot use \(url.redacted): \(reason)")
    }

    /// Closes the pool and the listener; calls made after fail as unavailable.
    public func close() async {
        for task in tasks.reversed() {
            task.cancel()
            await task.value
        }
    }

    public var writeTransactions: Int { writes.value }

    public func changeSignal() async throws -> Int {
        // Without a listener (a command's store) nothing is heard: every read is a change.
        listener?.signal ?? writes.next()
    }

    // MARK: Calls

    /// `body` on a leased connection, bounded by ``callTimeout``; errors as ``StoreError``.
    func read<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        do {
            return try await Self.bounded(client, Self.callTimeout) { try await body($0) }
        } catch {
            throw StoreError.fromPostgres(error)
        }
    }

    /// One statement in a transaction of its own (autocommit: no `BEGIN`, no `COMMIT`, one
    /// round trip), bounded and counted as a write.
    func writeStatement<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let result = try await read(body)
        writes.committed()
        return result
    }

    /// `body` in a transaction (READ COMMITTED, PostgreSQL's default), bounded and counted.
    @discardableResult
    func write<T: Sendable>(timeout: Duration = callTimeout,
                            _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        do {
            let logger = logger
            let result = try await Self.bounded(client, timeout) { connection in
                try await connection.withTransaction(logger: logger) { try await body($0) }
            }
            writes.committed()
            return result
        } catch {
            throw StoreError.fromPostgres(error)
        }
    }

    /// `body` on a connection of the pool, all of it within `limit`: the wait for a connection
    /// is cancelled, and a connection still busy at the deadline is closed, which fails what
    /// runs on it at once. (postgres-nio does not cancel a running query when its task is
    /// cancelled, and a server gone silent, its host off or the network cut, would otherwise
    /// hold the call until TCP gives up, many minutes later.) A transaction cut off so is
    /// rolled back by the server, unless its COMMIT got there first: then the call fails all
    /// the same, and the service's retry finds its leases gone (docs/operations.md,
    /// "Behaviour under failures").
    static func bounded<T: Sendable>(_ client: PostgresClient, _ limit: Duration,
                                     _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + limit
        return try await withDeadline(limit) {
            try await client.withConnection { connection in
                let finished = DoneFlag()
                return try await withThrowingTaskGroup(of: T?.self) { group in
                    group.addTask {
                        defer { finished.set() }
                        return try await body(connection)
                    }
                    group.addTask {
                        // Woken at the deadline, or cancelled: by the body's end (nothing to
                        // do) or by the outer deadline (the body still runs: close).
                        try? await Task.sleep(until: deadline)
                        if !finished.isSet { try? await connection.close() }
                        return nil
                    }
                    defer { group.cancelAll() }
                    while let next = try await group.next() {
                        if let result = next { return result }
                    }
                    throw StoreError(.unavailable, "PostgreSQL: no answer within \(limit.components.seconds) s; the connection was closed")
                }
            }
        }
    }

    /// Runs `body`; when `limit` passes first, or the caller is cancelled, returns at once
    /// (throwing `unavailable`, or `CancellationError`) and cancels `body` without waiting for
    /// it: a postgres-nio call that ignores cancellation (a query on a connection whose server
    /// went silent, a wait for the pool while it cannot connect) then costs a task in the
    /// background, never the caller's bound (nor the service's stop).
    static func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let race = Race<T>()
        let work = Task {
            do { race.finish(.success(try await body())) } catch { race.finish(.failure(error)) }
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                race.start(continuation, timer: Task {
                    guard (try? await Task.sleep(for: limit)) != nil else { return }
                    if race.finish(.failure(StoreError(.unavailable, "PostgreSQL: no answer within \(limit.components.seconds) s"))) {
                        work.cancel()
                    }
                })
            }
        } onCancel: {
            if race.finish(.failure(CancellationError())) { work.cancel() }
        }
    }
}

/// The first of a call's ends — its result, its deadline, its caller's cancellation — resumes
/// the caller; the others find nothing to resume.
final class Race<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var timer: Task<Void, Never>?
        /// A result that came before the caller waited.
        var early: Result<T, any Error>?
        var ended = false
    }

    private let state = Mutex(State())

    /// The caller waits; a result that came before it did resumes it at once.
    func start(_ continuation: CheckedContinuation<T, any Error>, timer: Task<Void, Never>) {
        let early: Result<T, any Error>? = state.withLock { state in
            if let early = state.early { return early }
            state.continuation = continuation
            state.timer = timer
            return nil
        }
        if let early {
            timer.cancel()
            continuation.resume(with: early)
        }
    }

    /// Ends the race with `result`; false when it had ended already.
    @discardableResult
    func finish(_ result: Result<T, any Error>) -> Bool {
        let ending: (CheckedContinuation<T, any Error>?, Task<Void, Never>?)? = state.withLock { state in
            guard !state.ended else { return nil }
            state.ended = true
            guard let continuation = state.continuation else {
                state.early = result
                return (nil, nil)
            }
            defer { (state.continuation, state.timer) = (nil, nil) }
            return (continuation, state.timer)
        }
        guard let ending else { return false }
        ending.1?.cancel()
        ending.0?.resume(with: result)
        return true
    }
}

/// Set once a call's body has ended.
final class DoneFlag: Sendable {
    private let done = Atomic<Bool>(false)
    func set() { done.store(true, ordering: .releasing) }
    var isSet: Bool { done.load(ordering: .acquiring) }
}

/// Write transactions committed, and a count to hand out as a change signal.
final class WriteCounter: Sendable {
    private let count = Atomic<Int>(0)
    private let changes = Atomic<Int>(0)

    var value: Int { count.load(ordering: .relaxed) }
    func committed() { count.add(1, ordering: .relaxed) }
    func next() -> Int { changes.add(1, ordering: .relaxed).newValue }
}
