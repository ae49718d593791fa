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

/// Deletes export tasks over HTTPS: `DELETE /v5/iot/{project_id}/export-tasks/{export_task_id}`;
/// lists them for a sweep (`GET /v5/iot/{project_id}/export-tasks`, in `IoTDAClient+List.swift`).
///
/// One shared AsyncHTTPClient `HTTPClient` (HTTP/1.1 keep-alive, up to `concurrency` connections,
/// TLS verification on, redirects off). Each request is signed with the access key (or carries
/// `X-Auth-Token`), and the response is reduced to a ``DeleteResult``. A failure without a
/// response is ``Delivery/notSent`` only where it proves the request never left
/// (``FailedDelivery``); the response delegate learns when the request head went out.
///
/// Safe to share across tasks. Call ``shutdown()`` once, when no request is in flight any more.
public final class IoTDAClient: IoTDATransport, Sendable {
    public struct Configuration: Sendable {
        /// `https://host[:port]`; `http://` only for loopback hosts (127.0.0.0/8, ::1, localhost).
        public var endpoint: String
        /// The credentials, replaceable while the client runs; each request signs with what
        /// they hold when it starts.
        public var credentials: CredentialProvider
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
            credentials: CredentialProvider,
            concurrency: Int,
            requestTimeout: Duration,
            connectTimeout: Duration = .seconds(5),
            userAgent: String = IoTDAClient.defaultUserAgent
        ) {
            self.endpoint = endpoint
            self.credentials = credentials
            self.concurrency = concurrency
            self.requestTimeout = requestTimeout
            self.connectTimeout = connectTimeout
            self.userAgent = userAgent
        }

        /// Fixed credentials: `signing` is the algorithm for access keys, already resolved from
        /// `auto`; `region` is named in derived signing keys (`cn-north-4`).
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
            self.init(endpoint: endpoint,
                      credentials: CredentialProvider(credentials, source: "the caller", signing: signing, region: region),
                      concurrency: concurrency, requestTimeout: requestTimeout, connectTimeout: connectTimeout,
                      userAgent: userAgent)
        }
    }

    public static let defaultUserAgent = "export-task-cleaner/\(ExportTaskCleanerVersion.current)"

    /// The most of a response body read; the rest is discarded.
    static let maxBodyBytes = 64 * 1024

    /// The parsed endpoint.
    public let endpoint: Endpoint
    private let credentials: CredentialProvider
    private let userAgent: String
    private let requestTimeout: TimeAmount
    private let requestTimeoutMilliseconds: Int64
    private let connectTimeoutMilliseconds: Int64
    private let http: OwnedHTTPClient
    let logger: Logger
    private let now: @Sendable () -> Date

    public init(configuration: Configuration, logger: Logger, now: @escaping @Sendable () -> Date = Date.init) throws {
        let endpoint: Endpoint
        do {
            endpoint = try Endpoint(parsing: configuration.endpoint)
        } catch {
            throw CleanerError.configuration("endpoint \"\(configuration.endpoint)\": \(error.reason)")
        }
        guard configuration.concurrency >= 1 else {
            throw CleanerError.configuration("concurrency must be at least 1 (got \(configuration.concurrency))")
        }
        guard configuration.requestTimeout > .zero else {
            throw CleanerError.configuration("request_timeout_ms must be positive")
        }
        guard configuration.connectTimeout > .zero else {
            throw CleanerError.configuration("the connect timeout must be positive")
        }
        switch configuration.credentials.current.credentials {
        case .accessKey(let key):
            guard !key.ak.isEmpty, !key.sk.isEmpty else {
                throw CleanerError.configuration("auth: the access key ID and secret key must not be empty")
            }
        case .token(let token):
            guard !token.isEmpty else { throw CleanerError.configuration("auth: the token must not be empty") }
        }
        credentials = configuration.credentials
        self.endpoint = endpoint
        self.userAgent = configuration.userAgent
        self.requestTimeout = TimeAmount(configuration.requestTimeout)
        self.requestTimeoutMilliseconds = configuration.requestTimeout.milliseconds
        self.connectTimeoutMilliseconds = configuration.connectTimeout.milliseconds
        self.logger = logger
        self.now = now

        let settings = Self.httpConfiguration(concurrency: configuration.concurrency, connectTimeout: configuration.connectTimeout)
        http = OwnedHTTPClient(configuration: settings, backgroundActivityLogger: logger)

        var metadata: Logger.Metadata = [
            "endpoint": "\(endpoint.baseURL)",
            "connections": "\(configuration.concurrency)",
            "request_timeout_ms": "\(requestTimeoutMilliseconds)",
        ]
        switch configuration.credentials.current.credentials {
        case .accessKey(let key):
            metadata["auth"] = "aksk"
            metadata["signing"] = "\(configuration.credentials.signing.rawValue)"
            metadata["region"] = "\(configuration.credentials.region)"
            metadata["access_key"] = "\(key.abbreviatedAK)"
        case .token:
            metadata["auth"] = "token"
        }
        logger.debug("IoTDA client ready", metadata: metadata)
    }

    /// The HTTP client's settings for `concurrency` connections: HTTP/1.1 keep-alive, TLS
    /// verification on, redirects off, no decompression, no tracing. Public for the benchmark
    /// that measures the client alone (`scripts/bench`, (e)).
    public static func httpConfiguration(concurrency: Int, connectTimeout: Duration) -> HTTPClient.Configuration {
        var pool = HTTPClient.Configuration.ConnectionPool(
            // Shorter than the usual 60 s of load balancers, so the server rarely closes a
            // connection just as a request goes out on it.
            idleTimeout: .seconds(30),
            concurrentHTTP1ConnectionsPerHostSoftLimit: concurrency
        )
        // The service retries with backoff itself; a failed connect should fail the waiting
        // requests now (as not sent) rather than after the connect timeout.
        pool.retryConnectionEstablishment = false
        var settings = HTTPClient.Configuration(
            tlsConfiguration: nil,  // the default: full certificate and host name verification
            redirectConfiguration: .disallow,
            timeout: .init(connect: TimeAmount(connectTimeout), read: nil),
            connectionPool: pool,
            decompression: .disabled
        )
        settings.httpVersion = .http1Only
        // No distributed tracing: a span per delete costs more than the rest of the bookkeeping.
        settings.tracing.tracer = nil
        return settings
    }

    /// Closes the connections. Requests still in flight fail (as ``DeleteClassification/retryable``).
    /// Calling it again does nothing.
    public func shutdown() async throws {
        try await http.shutdown()
    }

    public func delete(_ request: DeleteRequest) async -> DeleteResult {
        let sent = await send(
            method: .DELETE, segments: ["v5", "iot", request.projectID, "export-tasks", request.exportTaskID], query: [],
            projectID: request.projectID, instanceID: request.instanceID, maxBodyBytes: Self.maxBodyBytes)
        switch sent {
        case .failed(let result) where result.httpStatus == nil:
            logger.trace(
                "delete failed without a response",
                metadata: [
                    "export_task_id": "\(request.exportTaskID)", "delivery": "\(result.delivery.rawValue)",
                    "error": "\(result.errorMessage ?? "")",
                ])
            return result
        case .failed(let result):
            // An answer whose body did not finish: its status is the outcome.
            return result
        case .answered(let result, _):
            logger.trace(
                "delete answered",
                metadata: [
                    "export_task_id": "\(request.exportTaskID)", "http_status": "\(result.httpStatus ?? 0)",
                    "request_id": "\(result.requestID ?? "")",
                ])
            return result
        }
    }

    /// What ``send(method:segments:query:projectID:instanceID:maxBodyBytes:)`` got: an answer
    /// (its result and its body, cut at the limit), or a failure (without a status, or one
    /// whose head came and whose body did not, which is then the result).
    enum Sent {
        case answered(DeleteResult, ReceivedResponse)
        case failed(DeleteResult)
    }

    /// Signs and sends one request of the export-task API (the path's segments escaped, the
    /// query in the canonical order the signature covers) and reduces the answer.
    func send(
        method: HTTPMethod, segments: [String], query: [(String, String)], projectID: String, instanceID: String?,
        maxBodyBytes: Int
    ) async -> Sent {
        let clock = ContinuousClock()
        let start = clock.now
        if Task.isCancelled {
            return .failed(.noResponse(delivery: .notSent, message: "cancelled", duration: .zero))
        }
        let path = PercentEncoding.path(segments)
        let queryString = PercentEncoding.query(query)

        let signedAt = now()
        guard let (authorization, generation) = credentials.authorization(at: signedAt) else {
            // Temporary credentials expired and not yet replaced: nothing may be signed with them.
            return .failed(DeleteResult(classification: .authRefused, delivery: .notSent,
                                        errorMessage: Self.expiredCredentials, duration: clock.now - start))
        }
        var headers = HTTPHeaders()
        headers.reserveCapacity(8)
        switch authorization {
        case .signed(let signer):
            var toSign: [(String, String)] = [("Host", endpoint.hostHeader), ("X-Project-Id", projectID)]
            if let instanceID, !instanceID.isEmpty { toSign.append(("Instance-Id", instanceID)) }
            let signed = signer.sign(
                method: method.rawValue, pathSegments: segments, query: query, headers: toSign, body: [], date: signedAt)
            for (name, value) in signed { headers.add(name: name, value: value) }
        case .token(let token):
            headers.add(name: "Host", value: endpoint.hostHeader)
            headers.add(name: "X-Project-Id", value: projectID)
            if let instanceID, !instanceID.isEmpty { headers.add(name: "Instance-Id", value: instanceID) }
            headers.add(name: "X-Auth-Token", value: token)
        }
        headers.add(name: "User-Agent", value: userAgent)

        let httpRequest: HTTPClient.Request
        do {
            let url = endpoint.baseURL + path + (queryString.isEmpty ? "" : "?" + queryString)
            httpRequest = try HTTPClient.Request(url: url, method: method, headers: headers)
        } catch {
            // Cannot happen with an escaped path; never retried if it does.
            return .failed(DeleteResult(
                classification: .rejected, delivery: .notSent,
                errorMessage: "could not build the request: \(error)", duration: clock.now - start))
        }

        let delegate = DeleteResponseDelegate(maxBodyBytes: maxBodyBytes)
        let task = http.client.execute(
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
                return .failed(DeleteResult(
                    classification: .rejected, delivery: .notSent,
                    errorMessage: "the HTTP client refused the request: \(error.shortDescription)", duration: duration))
            }
            if let status = delegate.receivedStatus {
                // The head came and the body did not: the status line is the server's decision
                // (a 2xx deleted it), so it is the outcome; only the error body is missing.
                var result = answered(delegate.receivedSoFar, generation: generation, duration: duration)
                result.errorMessage = describeUnfinished(error, status: status)
                result.unfinishedAnswerStatus = status
                return .failed(result)
            }
            let delivery = FailedDelivery.classify(error, headWritten: delegate.wasHeadSent)
            return .failed(.noResponse(delivery: delivery, message: describe(error), duration: duration))
        }
        return .answered(answered(response, generation: generation, duration: clock.now - start), response)
    }

    /// The result of an answer: its status, and what its headers and error body say.
    private func answered(_ response: ReceivedResponse, generation: Int, duration: Duration) -> DeleteResult {
        let arrived = now()
        var result = DeleteResult(
            classification: DeleteClassification(httpStatus: response.status),
            delivery: .answered,
            httpStatus: response.status,
            requestID: response.requestID,
            duration: duration
        )
        result.credentialsGeneration = generation
        if !(200..<300).contains(response.status) {
            let body = ErrorBody.parse(response.body)
            result.errorCode = body.code
            result.errorMessage = body.message ?? (response.reason.isEmpty ? nil : response.reason)
            if result.requestID == nil { result.requestID = body.requestID }
        }
        if let retryAfter = response.retryAfter {
            result.retryAfter = RetryAfter.parse(retryAfter, now: arrived)
        }
        if response.status == 401, let date = response.date, let serverTime = RetryAfter.parseHTTPDate(date) {
            // For the clock diagnosis: IAM refuses a signature whose time is 15 minutes off.
            result.clockOffset = ClockOffset(local: arrived, server: serverTime)
        }
        return result
    }

    /// The message of a request not sent because the credentials in hand have expired.
    static let expiredCredentials = "not sent: the temporary credentials expired before new ones arrived"

    /// async-http-client's errors (by their short description) for a request it will not send
    /// as built; anything else without a response may be passing.
    static let refusals: Set<String> = [
        "Invalid header field names", "Invalid header field values", "Invalid URL", "Empty host",
        "Incompatible headers",
    ]

    /// A failure after the answer's head came: the server answered and did not finish.
    private func describeUnfinished(_ error: any Error, status: Int) -> String {
        if let error = error as? HTTPClientError, error == .deadlineExceeded {
            return "answered HTTP \(status) but did not finish its answer within \(requestTimeoutMilliseconds) ms"
        }
        return "answered HTTP \(status) but did not finish its answer: \(describe(error))"
    }

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
}
