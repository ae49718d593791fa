import AsyncHTTPClient
import FoundationEssentials
import NIOCore
import NIOHTTP1
import Synchronization

/// Reads the temporary credentials of the ECS instance's IAM agency from the metadata service,
/// as the official SDKs do (docs/credentials.md, "Authentication and credentials"):
///
/// 1. `PUT {endpoint}/meta-data/latest/api/token` with `X-Metadata-Token-Ttl-Seconds: 21600`
///    returns a session token (kept for its life, less a minute);
/// 2. `GET {endpoint}/openstack/latest/securitykey` with `X-Metadata-Token` returns `{"credential": {"access", "secret", "securitytoken",
///    "expires_at"}}`. On a 401 the session token is fetched again, once.
///
/// Answers are input: bodies are read up to 64 KiB, each value must be non-empty text without
/// control characters, and `expires_at` a UTC time. No error message carries a body, which may
/// hold a secret. Each request is bounded as a whole, connect to last byte (5 s): an answer
/// whose body trickles in cannot hold a start-up, a `check` or a renewal for longer.
public final class MetadataCredentialsClient: Sendable {
    public static let defaultEndpoint = "http://169.254.169.254"
    static let tokenPath = "/meta-data/latest/api/token"
    static let securityKeyPath = "/openstack/latest/securitykey"
    /// The session token's life asked for: what the SDKs ask.
    static let sessionTokenSeconds = 21_600
    static let maxBodyBytes = 64 * 1024
    /// The longest one request to the metadata service may take, connect to last byte (it is on
    /// the host's own link).
    public static let defaultRequestTimeout: Duration = .seconds(5)

    /// Temporary credentials, and when they stop working.
    public struct Fetched: Sendable {
        public var key: AccessKey
        public var expiresAt: Date
    }

    /// The metadata endpoint: `https://`, or `http://` on loopback or on 169.254.169.254, the
    /// link-local address the metadata service answers on.
    public static func endpoint(parsing text: String) throws(Endpoint.Problem) -> Endpoint {
        try Endpoint(parsing: text, plainHTTPHosts: ["169.254.169.254"])
    }

    public let endpoint: Endpoint
    /// The bound on each request as a whole (``defaultRequestTimeout``; shorter in tests).
    public let requestTimeout: Duration
    private let http: OwnedHTTPClient
    private let session = Mutex<(token: String, renewAt: ContinuousClock.Instant)?>(nil)

    public init(endpoint text: String, requestTimeout: Duration = MetadataCredentialsClient.defaultRequestTimeout) throws {
        self.requestTimeout = requestTimeout
        do {
            endpoint = try Self.endpoint(parsing: text)
        } catch {
            throw CleanerError.configuration("auth.metadata_endpoint \"\(text)\": \(error.reason)")
        }
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(2), read: TimeAmount(requestTimeout)),
            decompression: .disabled)
        configuration.httpVersion = .http1Only
        configuration.tracing.tracer = nil
        http = OwnedHTTPClient(configuration: configuration)
    }

    /// Closes the connections. Calling it again does nothing.
    public func shutdown() async throws {
        try await http.shutdown()
    }

    /// Fetches the agency's current temporary credentials. Every failure is a run-time error
    /// (exit 1, and systemd tries again): the metadata service's answers are not configuration.
    public func fetch() async throws -> Fetched {
        do {
            return try await fetchOnce()
        } catch let error as CleanerError where error.code == .configuration {
            throw CleanerError.runtime(error.message)
        }
    }

    private func fetchOnce() async throws -> Fetched {
        var answer = try await securityKey(token: try await sessionToken(renew: false))
        if answer.status == 401 {
            answer = try await securityKey(token: try await sessionToken(renew: true))
        }
        guard answer.status == 200 else {
            throw CleanerError.runtime("the ECS metadata service answered \(answer.status) to GET \(Self.securityKeyPath)\(Self.hint(answer.status))")
        }
        return try Self.parseSecurityKey(answer.body)
    }

    /// A session token: the one in hand while it lives, or a new one.
    private func sessionToken(renew: Bool) async throws -> String {
        let now = ContinuousClock.now
        if !renew, let session = session.withLock({ $0 }), now < session.renewAt { return session.token }
        var headers = HTTPHeaders()
        headers.add(name: "X-Metadata-Token-Ttl-Seconds", value: String(Self.sessionTokenSeconds))
        let answer = try await send(.PUT, Self.tokenPath, headers: headers)
        guard answer.status == 200 else {
            throw CleanerError.runtime("the ECS metadata service answered \(answer.status) to PUT \(Self.tokenPath)\(Self.hint(answer.status))")
        }
        let token = try CredentialsLoader.credentialValue(answer.body, describedAs: "the ECS metadata service's session token")
        // Renewed a minute before the life asked for ends.
        session.withLock { $0 = (token, now.advanced(by: .seconds(Self.sessionTokenSeconds - 60))) }
        return token
    }

    private func securityKey(token: String) async throws -> (status: Int, body: [UInt8]) {
        var headers = HTTPHeaders()
        headers.add(name: "X-Metadata-Token", value: token)
        return try await send(.GET, Self.securityKeyPath, headers: headers)
    }

    /// One request, its whole answer collected. The deadline covers it all, connect to last
    /// byte, as for IoTDA's requests (`request_timeout_ms`): async-http-client's `execute(_:deadline:)`
    /// of `HTTPClientRequest` stops counting once the head is in, and a body that trickles in
    /// stays under its read timeout. The request ends when the calling task is cancelled (a
    /// reload supersedes a renewal in flight).
    private func send(_ method: HTTPMethod, _ path: String, headers: HTTPHeaders) async throws -> (status: Int, body: [UInt8]) {
        let deadline = NIODeadline.now() + TimeAmount(requestTimeout)
        do {
            let request = try HTTPClient.Request(url: endpoint.baseURL + path, method: method, headers: headers)
            let task = http.client.execute(
                request: request, delegate: ResponseAccumulator(request: request, maxBodySize: Self.maxBodyBytes),
                eventLoop: .indifferent, deadline: deadline, logger: nil)
            let response = try await withTaskCancellationHandler {
                try await task.futureResult.get()
            } onCancel: {
                task.cancel()
            }
            return (Int(response.status.code), response.body.map { Array($0.readableBytesView) } ?? [])
        } catch is ResponseAccumulator.ResponseTooBigError {
            throw CleanerError.runtime("the ECS metadata service's answer is larger than \(Self.maxBodyBytes / 1024) KiB")
        } catch let error as HTTPClientError where error == .deadlineExceeded {
            throw CleanerError.runtime("the ECS metadata service at \(endpoint.baseURL) did not answer in full within \(requestTimeout.milliseconds) ms (\(method.rawValue) \(path))")
        } catch let error as CleanerError {
            throw error
        } catch {
            throw CleanerError.runtime("the ECS metadata service at \(endpoint.baseURL) did not answer: \(TransportErrorDescription.describe(error))")
        }
    }

    private static func hint(_ status: Int) -> String {
        switch status {
        case 404: " (is this an ECS instance with an IAM agency?)"
        case 401, 403: " (the metadata service refused the session token)"
        default: ""
        }
    }

    // MARK: The answer

    private struct SecurityKeyAnswer: Decodable {
        struct Credential: Decodable {
            var access: String
            var secret: String
            var securitytoken: String
            var expires_at: String
        }
        var credential: Credential
    }

    /// The credentials in a `securitykey` answer.
    static func parseSecurityKey(_ body: [UInt8]) throws -> Fetched {
        let answer: SecurityKeyAnswer
        do {
            answer = try JSONDecoder().decode(SecurityKeyAnswer.self, from: Data(body))
        } catch {
            throw CleanerError.runtime("the ECS metadata service's securitykey answer is not the expected JSON (credential: access, secret, securitytoken, expires_at)")
        }
        let credential = answer.credential
        let place = "the ECS metadata service's credential"
        func value(_ text: String, _ name: String, upTo limit: Int) throws -> String {
            guard text.utf8.count <= limit else { throw CleanerError.runtime("\(place) \(name) is longer than \(limit) bytes") }
            return try CredentialsLoader.credentialValue(Array(text.utf8), describedAs: "\(place) \(name)")
        }
        let key = AccessKey(
            ak: try value(credential.access, "access", upTo: 128),
            sk: try value(credential.secret, "secret", upTo: 256),
            securityToken: try value(credential.securitytoken, "securitytoken", upTo: 16 * 1024))
        guard credential.expires_at.utf8.count <= 64, let expiresAt = Timestamp.parse(credential.expires_at) else {
            throw CleanerError.runtime("\(place) expires_at is not a UTC time like 2026-11-29T12:00:00.000000Z")
        }
        return Fetched(key: key, expiresAt: expiresAt)
    }
}
