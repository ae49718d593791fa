import ExportTaskCleaner
import FoundationEssentials
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// The simulator's shared state and its decisions, used by every connection's handler.
final class SimulatorCore: Sendable {
    private struct State {
        var counters: IoTDASimulator.Counters
        var scripts: [String: Behaviour] = [:]
        /// Requests per ID that reached the ID's behaviour since it was set.
        var behaviourAttempts: [String: Int] = [:]
        var windowStart: ContinuousClock.Instant?
        var windowCount = 0
        /// What ListExportTasks lists.
        var exportTasks = ExportTaskList()
        /// Scripted answers to the next list requests, first first.
        var listAnswers: [IoTDASimulator.ListAnswer] = []
    }

    let configuration: IoTDASimulator.Configuration
    private let state: Mutex<State>
    /// The credentials requests must authenticate with now (a lock of its own, held only to
    /// copy the value: authentication runs outside every lock).
    private let auth: Mutex<IoTDASimulator.Configuration.Auth>
    /// The simulator's clock minus the real clock, in nanoseconds.
    private let clockOffsetNanoseconds: Atomic<Int64>
    /// The metadata service's session tokens, issued keys and counts.
    let metadata = MetadataStore()
    let logger: Logger

    init(configuration: IoTDASimulator.Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        var counters = IoTDASimulator.Counters()
        counters.arrivals = ArrivalRing(capacity: configuration.arrivalHistoryLimit)
        self.state = Mutex(State(counters: counters))
        self.auth = Mutex(configuration.auth)
        self.clockOffsetNanoseconds = Atomic(Self.nanoseconds(configuration.clockOffset))
    }

    var counters: IoTDASimulator.Counters {
        var counters = state.withLock { $0.counters }
        let counts = metadata.counts
        counters.metadataTokenRequests = counts.tokenRequests
        counters.metadataCredentialRequests = counts.credentialRequests
        counters.metadataRefusals = counts.refusals
        counters.expiredCredentialRequests = counts.expiredCredentialRequests
        counters.acceptedWithTemporaryKey = counts.acceptedWithTemporaryKey
        return counters
    }

    func setAuth(_ auth: IoTDASimulator.Configuration.Auth) {
        self.auth.withLock { $0 = auth }
    }

    // MARK: The clock

    /// The simulator's clock: the real clock plus the offset.
    func now() -> Date {
        let offset = clockOffsetNanoseconds.load(ordering: .relaxed)
        return offset == 0 ? Date() : Date(timeIntervalSinceNow: TimeInterval(offset) / 1e9)
    }

    func setClockOffset(_ offset: Duration) {
        clockOffsetNanoseconds.store(Self.nanoseconds(offset), ordering: .relaxed)
    }

    /// `duration` in whole nanoseconds (rounded towards zero), within ±292 years.
    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, overflow2) = product.addingReportingOverflow(attoseconds / 1_000_000_000)
        return overflow || overflow2 ? (seconds < 0 ? .min : .max) : sum
    }

    func connectionAccepted() {
        state.withLock { $0.counters.connections += 1 }
    }

    func script(_ exportTaskID: String, _ behaviour: Behaviour) {
        state.withLock {
            $0.scripts[exportTaskID] = behaviour
            $0.behaviourAttempts[exportTaskID] = nil
        }
    }

    // MARK: Deciding

    /// Decides the answer to a complete request. Counts it as received and in flight: every
    /// decision must be followed by exactly one ``completed(_:)``.
    func decide(head: HTTPRequestHead, body: [UInt8]) -> Decision {
        let uri = head.uri
        let rawPath: Substring
        let rawQuery: Substring?
        if let mark = uri.utf8.firstIndex(of: UInt8(ascii: "?")) {
            rawPath = uri[..<mark]
            rawQuery = uri[uri.index(after: mark)...]
        } else {
            rawPath = uri[...]
            rawQuery = nil
        }
        let route: Route? = switch head.method {
        case .DELETE: Self.route(rawPath)
        case .GET: Self.listRoute(rawPath)
        default: nil
        }
        if route == nil, let decision = decideMetadata(head: head, rawPath: rawPath) { return decision }

        // Authentication and the header checks need no shared state: done before locking.
        var refusal: (answer: Answer, signature: Bool)? = nil
        if let route {
            refusal = authenticate(head: head, rawPath: rawPath, rawQuery: rawQuery, body: body)
            if refusal == nil {
                if route.projectID != configuration.projectID {
                    refusal = (.projectMismatch, false)
                } else if let header = head.headers.first(name: "X-Project-Id"), header != configuration.projectID {
                    refusal = (.projectMismatch, false)
                } else if let instance = configuration.instanceID, head.headers.first(name: "Instance-Id") != instance {
                    refusal = (.instanceMismatch, false)
                }
            }
        }

        let latency = configuration.latency
        return state.withLock { s -> Decision in
            // Read under the lock, so the recorded arrivals are in order.
            let arrival = ContinuousClock.now
            s.counters.requests += 1
            s.counters.arrivals.append(arrival)
            s.counters.inFlight += 1
            if s.counters.inFlight > s.counters.maxInFlight { s.counters.maxInFlight = s.counters.inFlight }

            guard let route else { return Decision(action: .answer(.routeNotFound), delay: latency) }
            if let id = route.exportTaskID { s.counters.attemptsByID[id, default: 0] += 1 } else { s.counters.listRequests += 1 }

            if let refusal {
                if refusal.answer.status == .unauthorized {
                    s.counters.authFailures += 1
                    if refusal.signature { s.counters.signatureFailures += 1 }
                }
                return Decision(action: .answer(refusal.answer), delay: latency)
            }

            if let limit = configuration.rateLimit {
                if let start = s.windowStart, arrival - start < .seconds(1) {
                    // same window
                } else {
                    s.windowStart = arrival
                    s.windowCount = 0
                }
                guard s.windowCount < limit else {
                    s.counters.rateLimited += 1
                    return Decision(action: .answer(.rateLimited), delay: latency)
                }
                s.windowCount += 1
            }

            guard let id = route.exportTaskID else {
                return Decision(action: .answer(Self.listAnswer(rawQuery: rawQuery, state: &s)), delay: latency)
            }

            let behaviour = s.scripts[id] ?? configuration.mix?.behaviour(for: id) ?? configuration.defaultBehaviour
            let n = s.behaviourAttempts[id, default: 0] + 1
            s.behaviourAttempts[id] = n
            var decision = Self.evaluate(behaviour, attempt: n, id: id, state: &s)
            decision.delay += latency
            return decision
        }
    }

    private static func evaluate(_ behaviour: Behaviour, attempt n: Int, id: String, state s: inout State) -> Decision {
        func deleteOnce() -> Decision {
            if s.counters.deleteCountByID[id] == nil {
                s.counters.deleteCountByID[id] = 1
                s.exportTasks.remove(id)
                return Decision(action: .answer(.deleted), delay: .zero)
            }
            return Decision(action: .answer(.notFound), delay: .zero)
        }
        switch behaviour {
        case .deleteOnce:
            return deleteOnce()
        case .notFound:
            return Decision(action: .answer(.notFound), delay: .zero)
        case .forbidden:
            return Decision(action: .answer(.forbidden), delay: .zero)
        case .badRequest:
            return Decision(action: .answer(.badRequest), delay: .zero)
        case .tooManyRequests(let seconds, let times):
            return n <= times
                ? Decision(action: .answer(.tooManyRequests(retryAfterSeconds: seconds)), delay: .zero)
                : deleteOnce()
        case .serverError(let status, let times):
            return n <= times ? Decision(action: .answer(.serverError(status: status)), delay: .zero) : deleteOnce()
        case .delay(let wait, let then):
            var decision = evaluate(then, attempt: n, id: id, state: &s)
            decision.delay += max(wait, .zero)
            return decision
        case .dropConnection(let times):
            return n <= times ? Decision(action: .drop, delay: .zero) : deleteOnce()
        case .drip(let interval, let then):
            var decision = evaluate(then, attempt: n, id: id, state: &s)
            if case .answer(let answer) = decision.action { decision.action = .drip(answer, every: interval) }
            return decision
        }
    }

    /// Records that a decided request was answered with `status`, or dropped (`nil`).
    func completed(_ status: Int?) {
        state.withLock { s in
            s.counters.inFlight -= 1
            if let status {
                s.counters.responsesByStatus[status, default: 0] += 1
                if status == 204 { s.counters.successfulDeletes += 1 }
            } else {
                s.counters.droppedConnections += 1
            }
        }
    }

    // MARK: Routing and authentication

    struct Route {
        var projectID: String
        /// Nil for the list (`GET /v5/iot/{project_id}/export-tasks`).
        var exportTaskID: String?
    }

    /// `/v5/iot/{project_id}/export-tasks` (ListExportTasks), the project percent-decoded.
    static func listRoute(_ rawPath: Substring) -> Route? {
        let segments = rawPath.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard segments.count == 5, segments[0].isEmpty,
            segments[1].elementsEqual("v5".utf8), segments[2].elementsEqual("iot".utf8),
            segments[4].elementsEqual("export-tasks".utf8),
            let project = decode(segments[3]), !project.isEmpty
        else { return nil }
        return Route(projectID: project, exportTaskID: nil)
    }

    /// The answer to an authenticated list request: the next scripted one, else the page the
    /// query asks for, else 400 for a query IoTDA would refuse.
    private static func listAnswer(rawQuery: Substring?, state s: inout State) -> Answer {
        if !s.listAnswers.isEmpty {
            let scripted = s.listAnswers.removeFirst()
            return Answer(status: HTTPResponseStatus(statusCode: scripted.status), body: ByteBuffer(bytes: scripted.body),
                          retryAfterSeconds: scripted.retryAfterSeconds)
        }
        guard let query = ExportTaskList.parseQuery(rawQuery) else { return .badRequest }
        return s.exportTasks.page(query)
    }

    func addExportTasks(_ tasks: [IoTDASimulator.ExportTask]) {
        state.withLock { $0.exportTasks.add(tasks) }
    }

    var exportTasks: [IoTDASimulator.ExportTask] { state.withLock { $0.exportTasks.tasks } }

    func scriptList(_ answers: [IoTDASimulator.ListAnswer]) {
        state.withLock { $0.listAnswers.append(contentsOf: answers) }
    }

    /// `/v5/iot/{project_id}/export-tasks/{export_task_id}`, segments percent-decoded.
    static func route(_ rawPath: Substring) -> Route? {
        let segments = rawPath.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard segments.count == 6, segments[0].isEmpty,
            segments[1].elementsEqual("v5".utf8), segments[2].elementsEqual("iot".utf8),
            segments[4].elementsEqual("export-tasks".utf8),
            let project = decode(segments[3]), let id = decode(segments[5]),
            !project.isEmpty, !id.isEmpty
        else { return nil }
        return Route(projectID: project, exportTaskID: id)
    }

    private static func decode(_ segment: Substring.UTF8View) -> String? {
        guard segment.contains(UInt8(ascii: "%")) else { return String(Substring(segment)) }
        return PercentEncoding.unescape(Substring(segment)).map { String(decoding: $0, as: UTF8.self) }
    }

    private func authenticate(
        head: HTTPRequestHead, rawPath: Substring, rawQuery: Substring?, body: [UInt8]
    ) -> (answer: Answer, signature: Bool)? {
        switch auth.withLock({ $0 }) {
        case .unauthenticated:
            return nil
        case .token(let token):
            guard let sent = head.headers.first(name: "X-Auth-Token") else {
                return (.authenticationFailed("the X-Auth-Token header is missing."), false)
            }
            return sent == token ? nil : (.authenticationFailed("the token is invalid."), false)
        case .accessKey(let key):
            let headers = head.headers.map { ($0.name, $0.value) }
            let result = SignatureVerifier.verify(
                method: head.method.rawValue,
                rawPath: String(rawPath),
                rawQuery: rawQuery.map(String.init),
                headers: headers,
                body: body,
                secretKey: { $0 == key.ak ? key.sk : nil },
                region: configuration.region,
                service: RequestSigner.iotdaService,
                now: now(),
                maxSkew: configuration.maxClockSkew
            )
            if case .failure(let failure) = result {
                logger.debug("signature refused", metadata: ["reason": "\(failure.reason)"])
                return (.authenticationFailed(failure.reason), true)
            }
            if let token = key.securityToken, !token.isEmpty, head.headers.first(name: "X-Security-Token") != token {
                return (.authenticationFailed("the security token is missing or invalid."), false)
            }
            return nil
        case .metadataCredentials:
            return authenticateWithIssuedKey(head: head, rawPath: rawPath, rawQuery: rawQuery, body: body, now: now())
        }
    }
}
