import AsyncHTTPClient
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Deletes export tasks over HTTPS: `DELETE /v5/iot/{project_id}/export-tasks/{export_task_id}`.
///
/// One shared AsyncHTTPClient `HTTPClient` (HTTP/1.1 keep-alive, up to `concurrency` connections,
/// TLS verification on, redirects off). Each request is signed with the access key (or carries
/// `X-Auth-Token`), and the response is reduced to a ``DeleteResult``. Whether the request was
/// written before a failure decides ``Delivery``: the response delegate learns when the request
/// head went out.
///
/// Safe to share across tasks. Call ``shutdown()`` once, when no request is in flight any more.
public final class IoTDAClient: IoTDATransport, Sendable {
    public struct Configuration: Sendable {
        /// `https://host[:port]`; `http://` only for loopback hosts (127.0.0.0/8, ::1, localhost).
        public var endpoint: String
        public var credentials: Credentials
        /// The signing algorithm for access keys, already resolved from `auto` by the caller.
        public var signing: SigningAlgorithm
        /// The region named in derived signing keys (`cn-north-4`).
        public var region: String
        /// The most connections to keep open, which is the most requests in flight.
        public var concurrency: Int
        /// The deadline for one request, from the start of the call to the end of the response
        /// (waiting for a connection included).
        public var requestTimeout: Duration
        /// The longest wait for a TCP (and TLS) connection.
        public var connectTimeout: Duration
        public var userAgent: String

        public init(
            endpoint: String,
            credentials: Credentials,
            signing: SigningAlgorithm,
            region: String,
            concurrency: Int,
            requestTimeout: Duration,
            connectTimeout: Duration = .seconds(5),
            userAgent: String = IoTDAClient.defaultUserAgent
        ) {
            self.endpoint = endpoint
            self.credentials = credentials
            self.signing = signing
            self.region = region
            self.concurrency = concurrency
            self.requestTimeout = requestTimeout
            self.connectTimeout = connectTimeout
            self.userAgent = userAgent
        }
    }

    public static let defaultUserAgent = "export-task-cleaner/\(ExportTaskCleanerVersion.current)"

    /// The most of a response body read; the rest is discarded.
    static let maxBodyBytes = 64 * 1024

    private enum Auth: Sendable {
        case signed(RequestSigner)
        case token(String)
    }

    /// The parsed endpoint.
    public let endpoint: Endpoint
    private let auth: Auth
    private let userAgent: String
    private let requestTimeout: TimeAmount
    private let requestTimeoutMilliseconds: Int64
    private let connectTimeoutMilliseconds: Int64
    private let httpClient: HTTPClient
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let isShutDown = Atomic<Bool>(false)

    public init(configuration: Configuration, logger: Logger, now: @escaping @Sendable () -> Date = Date.init) throws {
        let endpoint = try Endpoint(parsing: configuration.endpoint)
        guard configuration.concurrency >= 1 else {
            throw CleanerError.configuration("concurrency must be at least 1 (got \(configuration.concurrency))")
        }
        guard configuration.requestTimeout > .zero else {
            throw CleanerError.configuration("request_timeout_ms must be positive")
        }
        guard configuration.connectTimeout > .zero else {
            throw CleanerError.configuration("the connect timeout must be positive")
        }
        switch configuration.credentials {
        case .accessKey(let key):
            guard !key.ak.isEmpty, !key.sk.isEmpty else {
                throw CleanerError.configuration("auth: the access key ID and secret key must not be empty")
            }
            auth = .signed(RequestSigner(algorithm: configuration.signing, accessKey: key, region: configuration.region))
        case .token(let token):
            guard !token.isEmpty else { throw CleanerError.configuration("auth: the token must not be empty") }
            auth = .token(token)
        }
        self.endpoint = endpoint
        self.userAgent = configuration.userAgent
        self.requestTimeout = TimeAmount(configuration.requestTimeout)
        self.requestTimeoutMilliseconds = Self.milliseconds(configuration.requestTimeout)
        self.connectTimeoutMilliseconds = Self.milliseconds(configuration.connectTimeout)
        self.logger = logger
        self.now = now

        var pool = HTTPClient.Configuration.ConnectionPool(
            // Shorter than the usual 60 s of load balancers, so the server rarely closes a
            // connection just as a request goes out on it.
            idleTimeout: .seconds(30),
            concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.concurrency
        )
        // The service retries with backoff itself; a failed connect should fail the waiting
        // requests now (as not sent) rather than after the connect timeout.
        pool.retryConnectionEstablishment = false
        var http = HTTPClient.Configuration(
            tlsConfiguration: nil,  // the default: full certificate and host name verification
            redirectConfiguration: .disallow,
            timeout: .init(connect: TimeAmount(configuration.connectTimeout), read: nil),
            connectionPool: pool,
            decompression: .disabled
        )
        http.httpVersion = .http1Only
        // No distributed tracing: a span per delete costs more than the rest of the bookkeeping.
        http.tracing.tracer = nil
        httpClient = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup,
            configuration: http,
            backgroundActivityLogger: logger
        )

        var metadata: Logger.Metadata = [
            "endpoint": "\(endpoint.baseURL)",
            "concurrency": "\(configuration.concurrency)",
            "request_timeout_ms": "\(requestTimeoutMilliseconds)",
        ]
        switch configuration.credentials {
        case .accessKey(let key):
            metadata["auth"] = "aksk"
            metadata["signing"] = "\(configuration.signing.rawValue)"
            metadata["region"] = "\(configuration.region)"
            metadata["access_key"] = "\(key.abbreviatedAK)"
        case .token:
            metadata["auth"] = "token"
        }
        logger.debug("IoTDA client ready", metadata: metadata)
    }

    /// Closes the connections. Requests still in flight fail (as ``DeleteClassification/retryable``).
    /// Calling it again does nothing.
    public func shutdown() async throws {
        guard !isShutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        try await httpClient.shutdown()
    }

    deinit {
        // A client dropped without shutdown() (say, on an error path) still releases its
        // connections, instead of tripping AsyncHTTPClient's debug-build check.
        if !isShutDown.load(ordering: .acquiring) {
            let _: EventLoopFuture<Void> = httpClient.shutdown()
        }
    }

    public func delete(_ request: DeleteRequest) async -> DeleteResult {
        let clock = ContinuousClock()
        let start = clock.now
        if Task.isCancelled {
            return .noResponse(delivery: .notSent, message: "cancelled", duration: .zero)
        }
        let segments = ["v5", "iot", request.projectID, "export-tasks", request.exportTaskID]
        let path = PercentEncoding.path(segments)

        var headers = HTTPHeaders()
        headers.reserveCapacity(8)
        switch auth {
        case .signed(let signer):
            var toSign: [(String, String)] = [("Host", endpoint.hostHeader), ("X-Project-Id", request.projectID)]
            if let instanceID = request.instanceID, !instanceID.isEmpty { toSign.append(("Instance-Id", instanceID)) }
            let signed = signer.sign(
                method: "DELETE", pathSegments: segments, query: [], headers: toSign, body: [], date: now())
            for (name, value) in signed { headers.add(name: name, value: value) }
        case .token(let token):
            headers.add(name: "Host", value: endpoint.hostHeader)
            headers.add(name: "X-Project-Id", value: request.projectID)
            if let instanceID = request.instanceID, !instanceID.isEmpty { headers.add(name: "Instance-Id", value: instanceID) }
            headers.add(name: "X-Auth-Token", value: token)
        }
        headers.add(name: "User-Agent", value: userAgent)

        let httpRequest: HTTPClient.Request
        do {
            httpRequest = try HTTPClient.Request(url: endpoint.baseURL + path, method: .DELETE, headers: headers)
        } catch {
            // Cannot happen with an escaped path; never retried if it does.
            return DeleteResult(
                classification: .rejected, delivery: .notSent,
                errorMessage: "could not build the request: \(error)", duration: clock.now - start)
        }

        let delegate = DeleteResponseDelegate(maxBodyBytes: Self.maxBodyBytes)
        let task = httpClient.execute(
            request: httpRequest,
            delegate: delegate,
            eventLoop: .indifferent,
            deadline: .now() + requestTimeout,
            logger: nil
        )
        let response: ReceivedResponse
        do {
            response = try await withTaskCancellationHandler {
                try await task.futureResult.get()
            } onCancel: {
                task.cancel()
            }
        } catch {
            let duration = clock.now - start
            if let error = error as? HTTPClientError, Self.refusals.contains(error.shortDescription) {
                // The HTTP client found the request itself malformed (a header value with a
                // line break, say): nothing was sent, and sending it again cannot help.
                return DeleteResult(
                    classification: .rejected, delivery: .notSent,
                    errorMessage: "the HTTP client refused the request: \(error.shortDescription)", duration: duration)
            }
            let delivery: Delivery = delegate.wasHeadSent ? .unknown : .notSent
            let message = describe(error)
            logger.trace(
                "delete failed without a response",
                metadata: [
                    "export_task_id": "\(request.exportTaskID)", "delivery": "\(delivery.rawValue)",
                    "error": "\(message)",
                ])
            return .noResponse(delivery: delivery, message: message, duration: duration)
        }

        let arrived = now()
        var result = DeleteResult(
            classification: DeleteClassification(httpStatus: response.status),
            delivery: .answered,
            httpStatus: response.status,
            requestID: response.requestID,
            duration: clock.now - start
        )
        if !(200..<300).contains(response.status) {
            let body = ErrorBody.parse(response.body)
            result.errorCode = body.code
            result.errorMessage = body.message ?? (response.reason.isEmpty ? nil : response.reason)
            if result.requestID == nil { result.requestID = body.requestID }
        }
        if let retryAfter = response.retryAfter {
            result.retryAfter = RetryAfter.parse(retryAfter, now: arrived)
        }
        logger.trace(
            "delete answered",
            metadata: [
                "export_task_id": "\(request.exportTaskID)", "http_status": "\(response.status)",
                "request_id": "\(result.requestID ?? "")",
            ])
        return result
    }

    /// async-http-client's errors (by their short description) for a request it will not send
    /// as built; anything else without a response may be passing.
    static let refusals: Set<String> = [
        "Invalid header field names", "Invalid header field values", "Invalid URL", "Empty host",
        "Incompatible headers",
    ]

    /// A short, secret-free description of a failure without a response.
    private func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded: return "timed out after \(requestTimeoutMilliseconds) ms"
            case .connectTimeout: return "connect timed out after \(connectTimeoutMilliseconds) ms"
            case .remoteConnectionClosed: return "connection closed before a response"
            case .readTimeout: return "timed out waiting for a response"
            case .writeTimeout: return "timed out writing the request"
            case .cancelled: return "cancelled"
            case .alreadyShutdown: return "client shut down"
            case .tlsHandshakeTimeout: return "TLS handshake timed out"
            case .getConnectionFromPoolTimeout: return "timed out waiting for a connection"
            // The short description: the long one may carry header values, and so a secret.
            default: return "HTTP client error: \(error.shortDescription)"
            }
        }
        if error is CancellationError { return "cancelled" }
        return TransportErrorDescription.describe(error)
    }

    private static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

// MARK: - Endpoint

extension IoTDAClient {
    /// A parsed `endpoint`: scheme, host and port, nothing else.
    public struct Endpoint: Sendable, Hashable {
        /// `https` or `http`.
        public var scheme: String
        /// The host, lower-cased; an IPv6 literal without brackets.
        public var host: String
        /// The port given, if any.
        public var port: Int?
        /// `scheme://authority`, without a trailing slash: requests go to `baseURL + path`.
        public var baseURL: String
        /// The `Host` header sent (and signed): host[:port] as written in the endpoint.
        public var hostHeader: String

        /// Parses `https://host[:port]` (a trailing `/` is allowed). `http://` is accepted only
        /// for loopback hosts. Throws ``CleanerError/configuration(_:)`` naming `endpoint`.
        public init(parsing text: String) throws {
            func bad(_ why: String) -> CleanerError {
                CleanerError.configuration("endpoint \"\(text)\": \(why)")
            }
            let lower = text.lowercased()
            let rest: Substring
            if lower.hasPrefix("https://") {
                scheme = "https"
                rest = text.dropFirst(8)
            } else if lower.hasPrefix("http://") {
                scheme = "http"
                rest = text.dropFirst(7)
            } else {
                throw bad("must start with https:// (or http:// for a loopback address)")
            }
            var authority = rest
            if let slash = rest.firstIndex(of: "/") {
                guard rest[slash...] == "/" else { throw bad("must not have a path; give only https://host[:port]") }
                authority = rest[..<slash]
            }
            guard !authority.contains(where: { $0 == "?" || $0 == "#" }) else {
                throw bad("must not have a query or fragment")
            }
            guard !authority.contains("@") else { throw bad("must not contain user information") }
            guard !authority.isEmpty else { throw bad("has no host") }
            guard authority.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
                throw bad("the host must be plain ASCII without spaces (use the punycode form)")
            }
            var hostPart: Substring
            var portPart: Substring?
            if authority.hasPrefix("[") {
                guard let close = authority.firstIndex(of: "]") else { throw bad("unterminated IPv6 address") }
                hostPart = authority[authority.index(after: authority.startIndex)..<close]
                let after = authority[authority.index(after: close)...]
                if !after.isEmpty {
                    guard after.hasPrefix(":") else { throw bad("unexpected text after the IPv6 address") }
                    portPart = after.dropFirst()
                }
            } else if let colon = authority.lastIndex(of: ":") {
                hostPart = authority[..<colon]
                portPart = authority[authority.index(after: colon)...]
            } else {
                hostPart = authority
            }
            guard !hostPart.isEmpty else { throw bad("has no host") }
            if authority.hasPrefix("[") {
                guard (try? SocketAddress(ipAddress: String(hostPart), port: 0)) != nil else {
                    throw bad("invalid IPv6 address")
                }
            } else {
                guard hostPart.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_" }) else {
                    throw bad("invalid host name")
                }
            }
            if let portPart {
                guard let port = Int(portPart), (1...65535).contains(port), portPart.allSatisfy(\.isNumber) else {
                    throw bad("invalid port")
                }
                self.port = port
            } else {
                self.port = nil
            }
            host = hostPart.lowercased()
            let hostForHeader = authority.hasPrefix("[") ? "[\(host)]" : host
            hostHeader = port.map { "\(hostForHeader):\($0)" } ?? hostForHeader
            baseURL = "\(scheme)://\(hostHeader)"
            if scheme == "http", !Self.isLoopback(host) {
                throw bad("http:// is allowed only for loopback addresses (127.0.0.0/8, ::1, localhost); use https://")
            }
            guard URL(string: baseURL + "/v5/iot/p/export-tasks/x")?.host != nil else {
                throw bad("not a valid URL")
            }
        }

        /// Whether `host` (lower-case, IPv6 without brackets) is a loopback address or `localhost`.
        public static func isLoopback(_ host: String) -> Bool {
            if host == "localhost" || host == "localhost." { return true }
            guard let address = try? SocketAddress(ipAddress: host, port: 0), let ip = address.ipAddress else {
                return false
            }
            switch address.protocol {
            case .inet: return ip.hasPrefix("127.")
            case .inet6: return ip == "::1" || ip.hasPrefix("::ffff:127.")
            default: return false
            }
        }
    }
}

// MARK: - Response delegate

/// What the delegate collected from a response.
struct ReceivedResponse: Sendable {
    var status = 0
    var reason = ""
    var requestID: String?
    var retryAfter: String?
    var body: [UInt8] = []
}

/// Collects the response and records whether the request head was written, which decides
/// ``Delivery`` when the request fails. AsyncHTTPClient calls it on the request's event loop.
final class DeleteResponseDelegate: HTTPClientResponseDelegate {
    typealias Response = ReceivedResponse

    private let headSent = Atomic<Bool>(false)
    private let received = Mutex(ReceivedResponse())
    private let maxBodyBytes: Int

    init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    var wasHeadSent: Bool { headSent.load(ordering: .acquiring) }

    func didSendRequestHead(task: HTTPClient.Task<ReceivedResponse>, _ head: HTTPRequestHead) {
        headSent.store(true, ordering: .releasing)
    }

    func didReceiveHead(task: HTTPClient.Task<ReceivedResponse>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        received.withLock {
            $0.status = Int(head.status.code)
            $0.reason = head.status.reasonPhrase
            $0.requestID = head.headers.first(name: "X-Request-Id")
            $0.retryAfter = head.headers.first(name: "Retry-After")
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<ReceivedResponse>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        received.withLock {
            let room = maxBodyBytes - $0.body.count
            if room > 0 { $0.body.append(contentsOf: buffer.readableBytesView.prefix(room)) }
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<ReceivedResponse>) throws -> ReceivedResponse {
        received.withLock { $0 }
    }
}

// MARK: - Describing transport errors

/// Short descriptions of connection-level errors. NIO's connection errors (`NIOConnectionError`)
/// live in NIOPosix, which this target does not import, so they are read by reflection.
enum TransportErrorDescription {
    static func describe(_ error: any Error) -> String {
        if let io = error as? IOError { return describe(errno: io.errnoCode) ?? "\(io)" }
        if let channel = error as? ChannelError {
            switch channel {
            case .connectTimeout: return "connect timed out"
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed, .inputClosed:
                return "connection closed before a response"
            default: return "connection error: \(channel)"
            }
        }
        let typeName = String(describing: type(of: error))
        if typeName == "NIOConnectionError" {
            var dnsFailed = false
            var inner: [any Error] = []
            for child in Mirror(reflecting: error).children {
                switch child.label {
                case "dnsAError", "dnsAAAAError":
                    let optional = Mirror(reflecting: child.value)
                    if optional.displayStyle == .optional, !optional.children.isEmpty { dnsFailed = true }
                case "connectionErrors":
                    for failure in Mirror(reflecting: child.value).children {
                        for field in Mirror(reflecting: failure.value).children where field.label == "error" {
                            if let e = field.value as? any Error { inner.append(e) }
                        }
                    }
                default: break
                }
            }
            if let first = inner.first { return describe(first) }
            if dnsFailed { return "DNS lookup failed" }
            return "could not connect"
        }
        if typeName.contains("NIOSSLError") || typeName.contains("BoringSSL") {
            return "TLS error: \(error)"
        }
        return "\(error)"
    }

    private static func describe(errno: Int32) -> String? {
        switch errno {
        case ECONNREFUSED: return "connection refused"
        case ECONNRESET: return "connection reset by peer"
        case ETIMEDOUT: return "connection timed out"
        case EHOSTUNREACH: return "host unreachable"
        case ENETUNREACH: return "network unreachable"
        case EPIPE: return "connection closed before a response"
        default: return nil
        }
    }
}
