import Crypto
import Synchronization
import FoundationEssentials

/// How a request is signed with an access key: the two algorithms of Huawei Cloud's official
/// SDKs (`core/auth/signer`).
public enum SigningAlgorithm: String, Sendable, CaseIterable {
    /// `SDK-HMAC-SHA256`: HMAC-SHA256 keyed with the secret key itself.
    case sdkHMACSHA256 = "SDK-HMAC-SHA256"
    /// `V11-HMAC-SHA256`: HMAC-SHA256 keyed with a key derived per day, region and service
    /// (HKDF-SHA256), as IoTDA's standard and enterprise editions require.
    case v11HMACSHA256 = "V11-HMAC-SHA256"

    /// What `auth.signing: "auto"` picks for an endpoint host: derived signing exactly when
    /// the SDKs would use it.
    public static func automatic(forHost host: String) -> SigningAlgorithm {
        usesDerivedSigning(host: host) ? .v11HMACSHA256 : .sdkHMACSHA256
    }

    /// Whether the official SDKs sign for `host` with derived keys: exactly when `host` does
    /// not match their regional endpoint pattern
    /// `^[a-z][a-z0-9-]+(\.[a-z]{2,}-[a-z]+-\d{1,2})?\.(my)?(huaweicloud|myhwclouds).(com|cn)`.
    ///
    /// As in Go's `regexp.MatchString` the match is a prefix match (a port or anything else
    /// may follow), it is case-sensitive, and the `.` before `(com|cn)` is unescaped, so it
    /// stands for any one character. Hand-written, as it runs for every client set up:
    /// `iotda.cn-north-4.myhuaweicloud.com` → false; `abc.st1.iotda-app.cn-north-4.myhuaweicloud.com`,
    /// `127.0.0.1` → true.
    public static func usesDerivedSigning(host: String) -> Bool {
        !RegionalEndpointPattern.matches(Array(host.unicodeScalars))
    }
}

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

    static let dateHeader = "X-Sdk-Date"
    static let securityTokenHeader = "X-Security-Token"
    static let authorizationHeader = "Authorization"
    static let lowercasedDateHeader = "x-sdk-date"
    static let lowercasedSecurityTokenHeader = "x-security-token"
    static let lowercasedAuthorizationHeader = "authorization"

    /// Whether a (lower-cased) header name is one the signer writes itself.
    private static func isSignerOwned(_ lowercasedName: String) -> Bool {
        lowercasedName == lowercasedDateHeader || lowercasedName == lowercasedSecurityTokenHeader
            || lowercasedName == lowercasedAuthorizationHeader
    }

    /// The de-duplicated, sorted names of `headers` (already lower-cased). Sorted by UTF-8 bytes
    /// as Go's `sort.Strings` does; duplicates are removed first, keeping the first of equal names.
    static func signedHeaderNames(_ headers: [LowercasedHeader]) -> [String] {
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
    static func signature(
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
    static func credentialScope(stamp: SigningDate, region: String, service: String) -> String {
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
    static func derivedSigningKey(accessKey: String, secretKey: String, info: String) -> [UInt8] {
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

// MARK: - The canonical request

/// A header whose name has been lower-cased (ASCII letters only), so that it is matched against
/// signed header names without lower-casing it again for every lookup.
struct LowercasedHeader: Sendable {
    var name: String
    var value: String

    /// `headers` with their names lower-cased once, in the same order.
    static func lowercasing(_ headers: [(String, String)]) -> [LowercasedHeader] {
        headers.map { LowercasedHeader(name: asciiLowercased($0.0), value: $0.1) }
    }
}

/// Writes a canonical request into one byte buffer:
/// `METHOD \n URI \n QUERY \n HEADER-LINES \n \n SIGNED-HEADERS \n hex(SHA-256(body))`.
///
/// ``start(method:)`` writes `METHOD \n`; the caller appends `URI \n QUERY` (with
/// ``PercentEncoding``); ``finish(_:signedHeaders:headers:body:)`` writes the rest.
enum CanonicalRequest {
    static let newline = UInt8(ascii: "\n")

    /// Room for a typical request, so that the buffer is allocated once.
    private static let typicalCapacity = 512

    /// hex(SHA-256("")), the body hash of every request without a body.
    private static let emptyBodyHash: [UInt8] = {
        var hex: [UInt8] = []
        SHA256.hash(data: [UInt8]()).withUnsafeBytes { appendLowerHex($0, to: &hex) }
        return hex
    }()

    static func start(method: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(typicalCapacity)
        bytes.appendUTF8(method)
        bytes.append(newline)
        return bytes
    }

    /// Appends `\n HEADER-LINES \n \n SIGNED-HEADERS \n hex(SHA-256(body))`: a `name:value` line
    /// for each value of each name in `signedHeaders` (in the order given; values of one name
    /// sorted by their UTF-8 bytes, then trimmed), the names joined by `;`, and the body hash.
    static func finish(
        _ bytes: inout [UInt8], signedHeaders: [String], headers: [LowercasedHeader], body: [UInt8]
    ) {
        bytes.append(newline)
        appendHeaderLines(signedHeaders, from: headers, to: &bytes)
        bytes.append(newline)
        bytes.append(newline)
        appendJoined(signedHeaders, to: &bytes)
        bytes.append(newline)
        if body.isEmpty {
            bytes.append(contentsOf: emptyBodyHash)
        } else {
            SHA256.hash(data: body).withUnsafeBytes { appendLowerHex($0, to: &bytes) }
        }
    }

    /// The header lines, separated (not terminated) by `\n`. A name no header has contributes
    /// no line; one several headers have contributes a line per value, values sorted.
    private static func appendHeaderLines(
        _ names: [String], from headers: [LowercasedHeader], to bytes: inout [UInt8]
    ) {
        var isFirstLine = true
        func appendLine(_ name: String, _ value: String) {
            if !isFirstLine { bytes.append(newline) }
            isFirstLine = false
            bytes.appendUTF8(name)
            bytes.append(UInt8(ascii: ":"))
            bytes.appendUTF8(trimmingWhitespace(value[...]))
        }
        for name in names {
            // Nearly always exactly one header has the name: write it without collecting.
            var matches = 0
            var firstMatch = 0
            for index in headers.indices where headers[index].name == name {
                if matches == 0 { firstMatch = index }
                matches += 1
            }
            if matches == 1 {
                appendLine(name, headers[firstMatch].value)
            } else if matches > 1 {
                let values = headers[firstMatch...].filter { $0.name == name }.map(\.value)
                for value in values.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                    appendLine(name, value)
                }
            }
        }
    }

    /// `names` joined by `;`.
    static func appendJoined(_ names: [String], to bytes: inout [UInt8]) {
        for (index, name) in names.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ";")) }
            bytes.appendUTF8(name)
        }
    }
}

// MARK: - Keys

/// An HMAC-SHA256 key set up once: the HMAC state after absorbing the padded key is kept, so
/// each message costs only its own hashing (no `SymmetricKey` and key schedule per request).
struct HMACKey: Sendable {
    private let keyed: HMAC<SHA256>

    init(_ key: [UInt8]) {
        keyed = HMAC<SHA256>(key: SymmetricKey(data: key))
    }

    func authenticationCode(for message: [UInt8]) -> HMAC<SHA256>.MAC {
        var mac = keyed
        mac.update(data: message)
        return mac.finalize()
    }
}

/// Remembers the last key made and what it was made from (`Source`), so that a key is made
/// once and reused while its source stays the same: a signer's derived key changes once a day.
final class SigningKeyCache<Source: Equatable & Sendable>: Sendable {
    private let last = Mutex<(source: Source, key: HMACKey)?>(nil)

    func key(for source: Source, make: (Source) -> HMACKey) -> HMACKey {
        if let cached = last.withLock({ $0?.source == source ? $0?.key : nil }) { return cached }
        let key = make(source)
        last.withLock { $0 = (source, key) }
        return key
    }
}

// MARK: - Hex and text helpers

extension Array where Element == UInt8 {
    /// Appends the UTF-8 of `text`: one copy of its bytes when they are stored contiguously
    /// (always, for native strings), where `append(contentsOf: text.utf8)` may go byte by byte.
    @inline(__always)
    mutating func appendUTF8<S: StringProtocol>(_ text: S) {
        let copied: Void? = text.utf8.withContiguousStorageIfAvailable { append(contentsOf: $0) }
        if copied == nil { append(contentsOf: text.utf8) }
    }
}

extension ArraySlice where Element == UInt8 {
    /// The runs of bytes between occurrences of `separator`, empty runs included: what
    /// `split(separator: separator, omittingEmptySubsequences: false)` returns, without its
    /// cost (a closure call per byte, and a result array grown from nothing).
    func components(separatedBy separator: UInt8) -> [ArraySlice<UInt8>] {
        var parts: [ArraySlice<UInt8>] = []
        parts.reserveCapacity(8)
        var start = startIndex
        while let end = self[start...].firstIndex(of: separator) {
            parts.append(self[start..<end])
            start = end + 1
        }
        parts.append(self[start...])
        return parts
    }
}

/// Appends `bytes` as lower-case hex digits.
func appendLowerHex(_ bytes: UnsafeRawBufferPointer, to output: inout [UInt8]) {
    for byte in bytes {
        output.append(lowerHexDigit(byte >> 4))
        output.append(lowerHexDigit(byte & 0x0F))
    }
}

@inline(__always)
private func lowerHexDigit(_ nibble: UInt8) -> UInt8 {
    nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") - 10 + nibble
}

/// Lower-cases ASCII letters only, as header names need (and cheaper than `lowercased()`).
/// Returns `s` itself when it has no upper-case letter.
func asciiLowercased(_ s: String) -> String {
    guard s.utf8.contains(where: isASCIIUppercase) else { return s }
    return String(unsafeUninitializedCapacity: s.utf8.count) { buffer in
        let (_, count) = buffer.initialize(from: s.utf8)
        for index in 0..<count where isASCIIUppercase(buffer[index]) {
            buffer[index] |= 0x20
        }
        return count
    }
}

@inline(__always)
private func isASCIIUppercase(_ byte: UInt8) -> Bool {
    byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")
}

/// Trims Unicode white space at both ends, as Go's `strings.TrimSpace` does.
func trimmedWhitespace<S: StringProtocol>(_ s: S) -> String {
    let range = rangeTrimmingWhitespace(s)
    return range == s.startIndex..<s.endIndex ? String(s) : String(s[range])
}

/// `s` without the Unicode white space at either end, as a slice of `s`: nothing is copied.
func trimmingWhitespace(_ s: Substring) -> Substring {
    // The usual header value: printable ASCII at both ends, nothing to trim.
    if let first = s.utf8.first, let last = s.utf8.last, isPrintableASCII(first), isPrintableASCII(last) {
        return s
    }
    return s[rangeTrimmingWhitespace(s)]
}

/// Whether `byte` is printable ASCII other than space (`!` through `~`).
@inline(__always)
private func isPrintableASCII(_ byte: UInt8) -> Bool {
    byte >= 0x21 && byte <= 0x7E
}

/// The range of `s` left when the Unicode white space at both ends (Go's `strings.TrimSpace`)
/// is removed. Only the scalars at the ends are looked at.
private func rangeTrimmingWhitespace<S: StringProtocol>(_ s: S) -> Range<String.Index> {
    let scalars = s.unicodeScalars
    var start = scalars.startIndex
    var end = scalars.endIndex
    while start < end, isWhitespace(scalars[start]) {
        scalars.formIndex(after: &start)
    }
    while start < end {
        let last = scalars.index(before: end)
        guard isWhitespace(scalars[last]) else { break }
        end = last
    }
    return start..<end
}

/// Whether `scalar` has the Unicode White_Space property, as Go's `unicode.IsSpace` asks.
/// ASCII, nearly everything a header or a configuration file has, is answered without the
/// Unicode property tables.
@inline(__always)
private func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
    scalar.isASCII ? isASCIIWhitespace(UInt8(truncatingIfNeeded: scalar.value)) : scalar.properties.isWhitespace
}

/// Whether `byte` is an ASCII white-space character: `\t`, `\n`, `\v`, `\f`, `\r` or space,
/// the only ASCII characters with the Unicode White_Space property.
@inline(__always)
func isASCIIWhitespace(_ byte: UInt8) -> Bool {
    byte == UInt8(ascii: " ") || (byte >= 0x09 && byte <= 0x0D)
}

// MARK: - X-Sdk-Date

/// A signing time in whole UTC seconds, formatted without `DateFormatter` (the signer runs per
/// request): `20060102T150405Z` for `X-Sdk-Date`, `20060102` for a derived key's scope.
struct SigningDate: Sendable, Equatable {
    /// Seconds since 1970-01-01T00:00:00Z.
    var secondsSince1970: Int64

    init(_ date: Date) {
        secondsSince1970 = Int64(date.timeIntervalSince1970.rounded(.down))
    }

    init(secondsSince1970: Int64) {
        self.secondsSince1970 = secondsSince1970
    }

    /// Parses exactly `YYYYMMDDTHHMMSSZ`; nil for anything else, including impossible dates.
    init?(basicFormat text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count == 16, bytes[8] == UInt8(ascii: "T"), bytes[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var value: Int64 = 0
            for byte in bytes[range] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int64(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
              let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15),
              (1...12).contains(month), (1...Self.daysIn(month: month, year: year)).contains(day),
              hour < 24, minute < 60, second < 60
        else { return nil }
        let days = Self.daysFromCivil(year: year, month: month, day: day)
        secondsSince1970 = days * 86_400 + hour * 3_600 + minute * 60 + second
    }

    var date: Date { Date(timeIntervalSince1970: TimeInterval(secondsSince1970)) }

    /// `YYYYMMDDTHHMMSSZ`.
    var basicFormat: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        appendBasicFormat(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `YYYYMMDD`.
    var dayFormat: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8)
        appendDayFormat(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whole days since 1970-01-01: what a derived key's scope changes with.
    var dayNumber: Int64 { Self.floorDivide(secondsSince1970, 86_400) }

    /// Appends ``basicFormat``'s UTF-8.
    func appendBasicFormat(to bytes: inout [UInt8]) {
        appendDayFormat(to: &bytes)
        let secondOfDay = secondsSince1970 - dayNumber * 86_400
        bytes.append(UInt8(ascii: "T"))
        Self.appendDigits(secondOfDay / 3_600, width: 2, to: &bytes)
        Self.appendDigits(secondOfDay % 3_600 / 60, width: 2, to: &bytes)
        Self.appendDigits(secondOfDay % 60, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: "Z"))
    }

    /// Appends ``dayFormat``'s UTF-8.
    func appendDayFormat(to bytes: inout [UInt8]) {
        let (year, month, day) = civil
        Self.appendDigits(year, width: 4, to: &bytes)
        Self.appendDigits(month, width: 2, to: &bytes)
        Self.appendDigits(day, width: 2, to: &bytes)
    }

    /// The UTC calendar date (Howard Hinnant's `civil_from_days`).
    private var civil: (year: Int64, month: Int64, day: Int64) {
        let z = Self.floorDivide(secondsSince1970, 86_400) + 719_468
        let era = Self.floorDivide(z, 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    private static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDivide(y, 400)
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    private static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
        a >= 0 ? a / b : (a - b + 1) / b
    }

    /// Appends `value` in decimal, padded with zeros on the left to `width` digits.
    private static func appendDigits(_ value: Int64, width: Int, to bytes: inout [UInt8]) {
        // Every field of a date in the years 0 to 9999 fills its width exactly.
        switch width {
        case 2 where (0..<100).contains(value):
            bytes.append(UInt8(ascii: "0") + UInt8(value / 10))
            bytes.append(UInt8(ascii: "0") + UInt8(value % 10))
        case 4 where (0..<10_000).contains(value):
            bytes.append(UInt8(ascii: "0") + UInt8(value / 1_000))
            bytes.append(UInt8(ascii: "0") + UInt8(value / 100 % 10))
            bytes.append(UInt8(ascii: "0") + UInt8(value / 10 % 10))
            bytes.append(UInt8(ascii: "0") + UInt8(value % 10))
        default:
            let digits = Array(String(value).utf8)
            if digits.count < width { bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width - digits.count)) }
            bytes.append(contentsOf: digits)
        }
    }
}

// MARK: - The SDKs' regional endpoint pattern

/// A hand-written matcher for
/// `^[a-z][a-z0-9-]+(\.[a-z]{2,}-[a-z]+-\d{1,2})?\.(my)?(huaweicloud|myhwclouds).(com|cn)`
/// with Go's `MatchString` semantics (prefix match, `.` is any character but a newline).
///
/// No backtracking is needed inside the character-class runs: each run is followed by a
/// character outside its class (`.` or `-`), so only the maximal run can succeed.
private enum RegionalEndpointPattern {
    static func matches(_ s: [Unicode.Scalar]) -> Bool {
        // ^[a-z][a-z0-9-]+
        guard let first = s.first, isLower(first) else { return false }
        let labelEnd = run(s, from: 1, while: { isLower($0) || isDigit($0) || $0 == "-" })
        guard labelEnd >= 2 else { return false }
        // (\.[a-z]{2,}-[a-z]+-\d{1,2})? then the tail: try with the group, then without.
        if let afterRegion = regionGroupEnd(s, from: labelEnd), tailMatches(s, from: afterRegion) {
            return true
        }
        return tailMatches(s, from: labelEnd)
    }

    /// `\.[a-z]{2,}-[a-z]+-\d{1,2}` starting at `i`; where it ends, or nil.
    private static func regionGroupEnd(_ s: [Unicode.Scalar], from i: Int) -> Int? {
        guard i < s.count, s[i] == "." else { return nil }
        let lettersEnd = run(s, from: i + 1, while: isLower)
        guard lettersEnd - (i + 1) >= 2, lettersEnd < s.count, s[lettersEnd] == "-" else { return nil }
        let secondEnd = run(s, from: lettersEnd + 1, while: isLower)
        guard secondEnd > lettersEnd + 1, secondEnd < s.count, s[secondEnd] == "-" else { return nil }
        let digitsEnd = run(s, from: secondEnd + 1, while: isDigit)
        let digitCount = digitsEnd - (secondEnd + 1)
        // \d{1,2} must be followed by `\.`, which no digit matches: a longer run cannot succeed.
        guard (1...2).contains(digitCount) else { return nil }
        return digitsEnd
    }

    /// `\.(my)?(huaweicloud|myhwclouds).(com|cn)` starting at `i`.
    private static func tailMatches(_ s: [Unicode.Scalar], from i: Int) -> Bool {
        guard i < s.count, s[i] == "." else { return false }
        for brand in ["huaweicloud", "myhuaweicloud", "myhwclouds", "mymyhwclouds"] {
            guard let afterBrand = literal(brand, in: s, at: i + 1),
                  afterBrand < s.count, s[afterBrand] != "\n"
            else { continue }
            if literal("com", in: s, at: afterBrand + 1) != nil || literal("cn", in: s, at: afterBrand + 1) != nil {
                return true
            }
        }
        return false
    }

    private static func literal(_ text: String, in s: [Unicode.Scalar], at i: Int) -> Int? {
        var index = i
        for scalar in text.unicodeScalars {
            guard index < s.count, s[index] == scalar else { return nil }
            index += 1
        }
        return index
    }

    private static func run(_ s: [Unicode.Scalar], from i: Int, while predicate: (Unicode.Scalar) -> Bool) -> Int {
        var index = i
        while index < s.count, predicate(s[index]) { index += 1 }
        return index
    }

    private static func isLower(_ c: Unicode.Scalar) -> Bool { c >= "a" && c <= "z" }
    private static func isDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }
}
