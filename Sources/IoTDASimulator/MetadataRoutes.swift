import ExportTaskCleaner
import FoundationEssentials
import NIOCore
import NIOHTTP1

/// The ECS metadata service's routes (``IoTDASimulator/MetadataService``) and the delete route's
/// check of the temporary keys they hand out (``IoTDASimulator/Configuration/Auth/metadataCredentials``).
extension SimulatorCore {
    static let metadataTokenPath = "/meta-data/latest/api/token"
    static let metadataSecurityKeyPath = "/openstack/latest/securitykey"
    /// The longest session the metadata service grants, as on ECS (and what the SDKs ask for).
    static let maxMetadataTokenTTL = 21_600

    /// The answer to a metadata request, not counted in the IoTDA counters; nil when `rawPath`
    /// is not a metadata route or there is no metadata service.
    func decideMetadata(head: HTTPRequestHead, rawPath: Substring) -> Decision? {
        guard let service = configuration.metadata else { return nil }
        let isToken = rawPath == Self.metadataTokenPath
        guard isToken || rawPath == Self.metadataSecurityKeyPath else { return nil }
        let answer: Answer
        if head.method != (isToken ? .PUT : .GET) {
            answer = .metadataMethodNotAllowed
        } else if metadata.isFailing {
            answer = .metadataServerError
        } else if isToken {
            answer = sessionToken(head: head)
        } else {
            answer = securityKey(head: head, service: service)
        }
        if let interval = metadata.drip { return Decision(action: .drip(answer, every: interval), delay: .zero, counted: false) }
        return Decision(action: .answer(answer), delay: .zero, counted: false)
    }

    /// `PUT /meta-data/latest/api/token`.
    private func sessionToken(head: HTTPRequestHead) -> Answer {
        guard let text = head.headers.first(name: "X-Metadata-Token-Ttl-Seconds").map(trimmedWhitespace),
            (1...5).contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let ttl = Int(text), (1...Self.maxMetadataTokenTTL).contains(ttl)
        else {
            logger.debug("metadata session token refused", metadata: ["reason": "bad or missing TTL"])
            return .metadataBadRequest
        }
        let token = metadata.issueSessionToken(ttlSeconds: ttl, now: Self.micros(now()))
        logger.debug("metadata session token issued", metadata: ["ttl_seconds": "\(ttl)"])
        return Answer(status: .ok, body: ByteBuffer(string: token), contentType: .plainText)
    }

    /// `GET /openstack/latest/securitykey`: a fresh temporary key.
    private func securityKey(head: HTTPRequestHead, service: IoTDASimulator.MetadataService) -> Answer {
        let sessionToken = head.headers.first(name: "X-Metadata-Token")
        let issuedAt = Self.micros(now())
        let expiry = service.expiresAt.map(Self.micros) ?? issuedAt &+ Self.micros(service.credentialLifetime)
        guard let key = metadata.issueKey(sessionToken: sessionToken, now: issuedAt, expiresAt: expiry) else {
            logger.debug("metadata credentials refused", metadata: ["reason": "missing, unknown or expired session token"])
            return .metadataUnauthorized
        }
        let expiresAt = Self.expiresAtText(micros: key.expiresAtMicros)
        logger.debug(
            "temporary access key issued",
            metadata: ["access_key": "\(key.accessKey.prefix(4))…", "expires_at": "\(expiresAt)"])
        let json = "{\"credential\":{\"access\":\"\(key.accessKey)\",\"secret\":\"\(key.secretKey)\","
            + "\"securitytoken\":\"\(key.securityToken)\",\"expires_at\":\"\(expiresAt)\"}}"
        return Answer(status: .ok, body: ByteBuffer(string: json), contentType: .json)
    }

    /// Checks a delete signed with a key the metadata service issued: the signature (against
    /// `now`, the simulator's clock), that the key has not expired by `now`, and its
    /// `X-Security-Token`. Counts the use (``MetadataStore/countUse(expired:accepted:)``).
    func authenticateWithIssuedKey(
        head: HTTPRequestHead, rawPath: Substring, rawQuery: Substring?, body: [UInt8], now: Date
    ) -> (answer: Answer, signature: Bool)? {
        var issued: MetadataStore.IssuedKey?
        let result = SignatureVerifier.verify(
            method: head.method.rawValue,
            rawPath: String(rawPath),
            rawQuery: rawQuery.map(String.init),
            headers: head.headers.map { ($0.name, $0.value) },
            body: body,
            secretKey: { accessKey in
                issued = metadata.key(accessKey)
                return issued?.secretKey
            },
            region: configuration.region,
            service: RequestSigner.iotdaService,
            now: now,
            maxSkew: configuration.maxClockSkew
        )
        if case .failure(let failure) = result {
            logger.debug("signature refused", metadata: ["reason": "\(failure.reason)"])
            return (.authenticationFailed(failure.reason), true)
        }
        guard let issued else { return (.authenticationFailed("unknown access key"), true) }

        // A verified signature has exactly one valid X-Sdk-Date.
        let signedAt = head.headers.first(name: RequestSigner.dateHeader)
            .flatMap { SigningDate(basicFormat: trimmedWhitespace($0)) }
            .map { $0.secondsSince1970 * 1_000_000 } ?? .min
        let arrivedExpired = Self.micros(now) >= issued.expiresAtMicros
        let refusal: (answer: Answer, signature: Bool)?
        if arrivedExpired {
            logger.debug("temporary access key refused", metadata: ["reason": "expired"])
            refusal = (.authenticationFailed("the temporary access key has expired."), false)
        } else if head.headers.first(name: RequestSigner.securityTokenHeader) != issued.securityToken {
            refusal = (.authenticationFailed("the security token is missing or invalid."), false)
        } else {
            refusal = nil
        }
        metadata.countUse(expired: arrivedExpired || signedAt >= issued.expiresAtMicros, accepted: refusal == nil)
        return refusal
    }

    // MARK: Time

    /// Microseconds since 1970 (rounded towards the past).
    static func micros(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds &* 1_000_000 &+ attoseconds / 1_000_000_000_000
    }

    static func micros(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
    }

    /// `2026-11-29T12:00:00.000000Z`: UTC, six fractional digits.
    static func expiresAtText(micros: Int64) -> String {
        let seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
        let fields = UTCCalendar.fields(of: Date(timeIntervalSince1970: TimeInterval(seconds)))
        var bytes: [UInt8] = []
        bytes.reserveCapacity(27)
        for (value, width, separator) in [
            (fields.year, 4, "-"), (fields.month, 2, "-"), (fields.day, 2, "T"),
            (fields.hour, 2, ":"), (fields.minute, 2, ":"), (fields.second, 2, "."),
            (Int(micros - seconds * 1_000_000), 6, "Z"),
        ] as [(Int, Int, Unicode.Scalar)] {
            IMFFixdate.appendDigits(value, width: width, to: &bytes)
            bytes.append(UInt8(ascii: separator))
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Answer {
    static let metadataBadRequest = metadataError(400, "bad request")
    static let metadataUnauthorized = metadataError(401, "unauthorized")
    static let metadataMethodNotAllowed = metadataError(405, "method not allowed")
    static let metadataServerError = metadataError(500, "internal server error")

    private static func metadataError(_ status: Int, _ message: String) -> Answer {
        Answer(
            status: HTTPResponseStatus(statusCode: status), body: ByteBuffer(string: "{\"error\":\"\(message)\"}"),
            contentType: .json)
    }
}
