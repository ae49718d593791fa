import Crypto
import Synchronization
import FoundationEssentials

/// Signs IoTDA requests with an access key, byte for byte as the official SDKs do.
///
/// The canonical request is
/// `METHOD \n URI \n QUERY \n HEADERS \n SIGNED-HEADERS \n hex(SHA-256(body))`, where URI is
/// each path segment escaped (``PercentEncoding``) with a `/` at the end, QUERY the pairs
/// sorted and escaped, HEADERS one `name:value` line per signed header (names lower-cased,
/// values trimmed), and SIGNED-HEADERS their sorted names joined by `;`.
///
/// - `SDK-HMAC-SHA256` signs `SDK-HMAC-SHA256 \n <X-Sdk-Date> \n hex(SHA-256(canonical))`
///   with the secret key: `Authorization: SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=…, Signature=…`.
/// - `V11-HMAC-SHA256` signs `V11-HMAC-SHA256 \n <X-Sdk-Date> \n <info> \n hex(SHA-256(canonical))`,
///   with `info` = `YYYYMMDD/<region>/<service>`, keyed with the lower-case hex text of
///   HKDF-SHA256(IKM: SK, salt: AK, info, 32 bytes):
///   `Authorization: V11-HMAC-SHA256 Credential=<AK>/<info>, SignedHeaders=…, Signature=…`.
///
/// A signer is a small immutable value: share it across tasks freely.
///
/// Signing runs per request, so it works on UTF-8 bytes: the canonical request, the string to
/// sign and the `Authorization` value are each written into one byte buffer, and the HMAC keys
/// are set up once (the secret key's at `init`, the derived key's once a day).
public struct RequestSigner: Sendable {
    /// The algorithm used for every request.
    public let algorithm: SigningAlgorithm
    /// The region named in a derived key's scope (`cn-north-4`).
    public let region: String
    /// The service named in a derived key's scope; IoTDA's is `iotdm`.
    public let service: String

    private let accessKey: AccessKey

    /// IoTDA's service name in a derived key's scope.
    public static let iotdaService = "iotdm"

    /// The `SDK-HMAC-SHA256` key: HMAC-SHA256 keyed with the secret key, set up once.
    private let secretKeyMAC: HMACKey

    /// The derived key of the current day (keyed by the day number), so that HKDF runs once a
    /// day rather than per request.
    private let derivedKeys = SigningKeyCache<Int64>()

    public init(algorithm: SigningAlgorithm, accessKey: AccessKey, region: String, service: String = "iotdm") {
        self.algorithm = algorithm
        self.accessKey = accessKey
        self.region = region
        self.service = service
        self.secretKeyMAC = HMACKey(Array(accessKey.sk.utf8))
    }

    /// The access key ID requests are signed with (not a secret; fine for logs).
    public var accessKeyID: String { accessKey.ak }

    /// Whether the official SDKs sign for `host` with derived keys
    /// (see ``SigningAlgorithm/usesDerivedSigning(host:)``).
    public static func usesDerivedSigning(host: String) -> Bool {
        SigningAlgorithm.usesDerivedSigning(host: host)
    }

    /// Signs a request. `headers` are the headers to sign (any case; the caller includes Host,
    /// X-Project-Id, Instance-Id…). Adds `X-Sdk-Date`, `X-Security-Token` (when the key has
    /// one; it is signed too) and `Authorization`; returns the full header list to send.
    ///
    /// Every header passed in is signed. Any `X-Sdk-Date`, `X-Security-Token` or
    /// `Authorization` among `headers` is replaced by the signer's own. Send the path and query
    /// as ``PercentEncoding/path(_:)`` and ``PercentEncoding/query(_:)`` write them.
    public func sign(
        method: String,
        pathSegments: [String],
        query: [(String, String)],
        headers: [(String, String)],
        body: [UInt8],
        date: Date
    ) -> [(String, String)] {
        let stamp = SigningDate(date)
        let dateText = stamp.basicFormat

        // The headers to send, in the caller's order and case, and the same headers with their
        // names lower-cased once, for the canonical request.
        var outgoing: [(String, String)] = []
        outgoing.reserveCapacity(headers.count + 3)
        var signed: [LowercasedHeader] = []
        signed.reserveCapacity(headers.count + 2)
        for (name, value) in headers {
            let lowercased = asciiLowercased(name)
            guard !Self.isSignerOwned(lowercased) else { continue }
            outgoing.append((name, value))
            signed.append(LowercasedHeader(name: lowercased, value: value))
        }
        outgoing.append((Self.dateHeader, dateText))
        signed.append(LowercasedHeader(name: Self.lowercasedDateHeader, value: dateText))
        if let token = accessKey.securityToken, !token.isEmpty {
            outgoing.append((Self.securityTokenHeader, token))
            signed.append(LowercasedHeader(name: Self.lowercasedSecurityTokenHeader, value: token))
        }
        let signedHeaders = Self.signedHeaderNames(signed)

        var canonical = CanonicalRequest.start(method: method)
        PercentEncoding.appendCanonicalURI(segments: pathSegments.lazy.map(\.utf8), to: &canonical)
        canonical.append(CanonicalRequest.newline)
        if !query.isEmpty {
            PercentEncoding.appendCanonicalQuery(query.map { ($0.0.utf8, $0.1.utf8) }, to: &canonical)
        }
        CanonicalRequest.finish(&canonical, signedHeaders: signedHeaders, headers: signed, body: body)

        let signature = Self.signature(
            algorithm: algorithm, canonicalRequest: canonical, stamp: stamp,
            region: region, service: service, key: signingKey(for: stamp)
        )
        outgoing.append((Self.authorizationHeader, authorizationValue(
            stamp: stamp, signedHeaders: signedHeaders, signature: signature
        )))
        return outgoing
    }

    /// The canonical request the signature covers, for `signedHeaders` (lower-case names, in
    /// the order given; the signer passes them sorted). A signed header missing from `headers`
    /// contributes no line, as in the SDKs; one present several times contributes a line per
    /// value, values sorted.
    public static func canonicalRequest(
        method: String,
        pathSegments: [String],
        query: [(String, String)],
        headers: [(String, String)],
        signedHeaders: [String],
        body: [UInt8]
    ) -> String {
        var canonical = CanonicalRequest.start(method: method)
        PercentEncoding.appendCanonicalURI(segments: pathSegments.lazy.map(\.utf8), to: &canonical)
        canonical.append(CanonicalRequest.newline)
        PercentEncoding.appendCanonicalQuery(query.map { ($0.0.utf8, $0.1.utf8) }, to: &canonical)
        CanonicalRequest.finish(
            &canonical, signedHeaders: signedHeaders, headers: LowercasedHeader.lowercasing(headers), body: body
        )
        return String(decoding: canonical, as: UTF8.self)
    }

    // MARK: - Keys and the Authorization value

    /// The HMAC key for a request signed at `stamp`.
    private func signingKey(for stamp: SigningDate) -> HMACKey {
        switch algorithm {
        case .sdkHMACSHA256:
            secretKeyMAC
        case .v11HMACSHA256:
            derivedKeys.key(for: stamp.dayNumber) { [accessKey, region, service] _ in
                HMACKey(Self.derivedSigningKey(
                    accessKey: accessKey.ak, secretKey: accessKey.sk,
                    info: Self.credentialScope(stamp: stamp, region: region, service: service)
                ))
            }
        }
    }

    /// `SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex` or
    /// `V11-HMAC-SHA256 Credential=AK/YYYYMMDD/region/service, SignedHeaders=a;b, Signature=hex`.
    private func authorizationValue(stamp: SigningDate, signedHeaders: [String], signature: [UInt8]) -> String {
        var value: [UInt8] = []
        value.reserveCapacity(256)
        value.appendUTF8(algorithm.rawValue)
        switch algorithm {
        case .sdkHMACSHA256:
            value.appendUTF8(" Access=")
            value.appendUTF8(accessKey.ak)
        case .v11HMACSHA256:
            value.appendUTF8(" Credential=")
            value.appendUTF8(accessKey.ak)
            value.append(UInt8(ascii: "/"))
            Self.appendCredentialScope(stamp: stamp, region: region, service: service, to: &value)
        }
        value.appendUTF8(", SignedHeaders=")
        CanonicalRequest.appendJoined(signedHeaders, to: &value)
        value.appendUTF8(", Signature=")
        value.append(contentsOf: signature)
        return String(decoding: value, as: UTF8.self)
    }

    // MARK: - Shared with SignatureVerifier

    package static let dateHeader = "X-Sdk-Date"
    package static let securityTokenHeader = "X-Security-Token"
    package static let authorizationHeader = "Authorization"
    package static let lowercasedDateHeader = "x-sdk-date"
    package static let lowercasedSecurityTokenHeader = "x-security-token"
    package static let lowercasedAuthorizationHeader = "authorization"

    /// Whether a (lower-cased) header name is one the signer writes itself.
    private static func isSignerOwned(_ lowercasedName: String) -> Bool {
        lowercasedName == lowercasedDateHeader || lowercasedName == lowercasedSecurityTokenHeader
            || lowercasedName == lowercasedAuthorizationHeader
    }

    /// The de-duplicated, sorted names of `headers` (already lower-cased). Sorted by UTF-8 bytes
    /// as Go's `sort.Strings` does; duplicates are removed first, keeping the first of equal names.
    package static func signedHeaderNames(_ headers: [LowercasedHeader]) -> [String] {
        var names: [String] = []
        names.reserveCapacity(headers.count)
        for header in headers where !names.contains(header.name) {
            names.append(header.name)
        }
        names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        return names
    }

    /// The signature of a canonical request, as 64 lower-case hex digits (UTF-8):
    /// HMAC-SHA256 with `key` over
    /// `ALGORITHM \n X-Sdk-Date \n [YYYYMMDD/region/service \n] hex(SHA-256(canonical))`,
    /// the scope line for `V11-HMAC-SHA256` only.
    package static func signature(
        algorithm: SigningAlgorithm,
        canonicalRequest: [UInt8],
        stamp: SigningDate,
        region: String,
        service: String,
        key: HMACKey
    ) -> [UInt8] {
        var stringToSign: [UInt8] = []
        stringToSign.reserveCapacity(160)
        stringToSign.appendUTF8(algorithm.rawValue)
        stringToSign.append(CanonicalRequest.newline)
        stamp.appendBasicFormat(to: &stringToSign)
        stringToSign.append(CanonicalRequest.newline)
        if algorithm == .v11HMACSHA256 {
            appendCredentialScope(stamp: stamp, region: region, service: service, to: &stringToSign)
            stringToSign.append(CanonicalRequest.newline)
        }
        SHA256.hash(data: canonicalRequest).withUnsafeBytes { appendLowerHex($0, to: &stringToSign) }

        var signature: [UInt8] = []
        signature.reserveCapacity(64)
        key.authenticationCode(for: stringToSign).withUnsafeBytes { appendLowerHex($0, to: &signature) }
        return signature
    }

    /// `YYYYMMDD/region/service`, a derived key's scope (its HKDF `info`).
    package static func credentialScope(stamp: SigningDate, region: String, service: String) -> String {
        var scope: [UInt8] = []
        scope.reserveCapacity(10 + region.utf8.count + service.utf8.count)
        appendCredentialScope(stamp: stamp, region: region, service: service, to: &scope)
        return String(decoding: scope, as: UTF8.self)
    }

    private static func appendCredentialScope(
        stamp: SigningDate, region: String, service: String, to bytes: inout [UInt8]
    ) {
        stamp.appendDayFormat(to: &bytes)
        bytes.append(UInt8(ascii: "/"))
        bytes.appendUTF8(region)
        bytes.append(UInt8(ascii: "/"))
        bytes.appendUTF8(service)
    }

    /// The SDKs' derived key: the lower-case hex *text* of HKDF-SHA256(IKM: SK, salt: AK, info,
    /// 32 bytes), whose 64 UTF-8 bytes key the HMAC.
    package static func derivedSigningKey(accessKey: String, secretKey: String, info: String) -> [UInt8] {
        let key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Array(secretKey.utf8)),
            salt: Array(accessKey.utf8),
            info: Array(info.utf8),
            outputByteCount: 32
        )
        var text: [UInt8] = []
        text.reserveCapacity(64)
        key.withUnsafeBytes { appendLowerHex($0, to: &text) }
        return text
    }
}
