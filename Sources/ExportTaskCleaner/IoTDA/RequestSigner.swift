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

    /// The derived key of the current day, so that HKDF runs once a day rather than per request.
    private let derivedKeys = DerivedKeyCache()

    public init(algorithm: SigningAlgorithm, accessKey: AccessKey, region: String, service: String = "iotdm") {
        self.algorithm = algorithm
        self.accessKey = accessKey
        self.region = region
        self.service = service
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
        var outgoing = headers.filter { !Self.signerOwnedHeaders.contains(asciiLowercased($0.0)) }
        outgoing.reserveCapacity(outgoing.count + 3)
        outgoing.append((Self.dateHeader, stamp.basicFormat))
        if let token = accessKey.securityToken, !token.isEmpty {
            outgoing.append((Self.securityTokenHeader, token))
        }
        let signedHeaders = Self.signedHeaderNames(outgoing)
        let canonical = Self.canonicalRequest(
            method: method,
            canonicalURI: PercentEncoding.canonicalURI(segments: pathSegments.map(\.utf8)),
            canonicalQuery: PercentEncoding.canonicalQuery(query.map { (Array($0.0.utf8), Array($0.1.utf8)) }),
            headers: outgoing,
            signedHeaders: signedHeaders,
            bodyHash: hexSHA256(body)
        )
        let authorization = Self.authorization(
            algorithm: algorithm, canonicalRequest: canonical, stamp: stamp,
            accessKey: accessKey.ak, secretKey: accessKey.sk,
            region: region, service: service, signedHeaders: signedHeaders,
            derivedKey: { [derivedKeys, accessKey] info in
                derivedKeys.key(for: info) {
                    Self.derivedSigningKey(accessKey: accessKey.ak, secretKey: accessKey.sk, info: info)
                }
            }
        ).header
        outgoing.append((Self.authorizationHeader, authorization))
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
        canonicalRequest(
            method: method,
            canonicalURI: PercentEncoding.canonicalURI(segments: pathSegments.map(\.utf8)),
            canonicalQuery: PercentEncoding.canonicalQuery(query.map { (Array($0.0.utf8), Array($0.1.utf8)) }),
            headers: headers,
            signedHeaders: signedHeaders,
            bodyHash: hexSHA256(body)
        )
    }

    // MARK: - Shared with SignatureVerifier

    static let dateHeader = "X-Sdk-Date"
    static let securityTokenHeader = "X-Security-Token"
    static let authorizationHeader = "Authorization"
    private static let signerOwnedHeaders: Set<String> = ["x-sdk-date", "x-security-token", "authorization"]

    /// The lower-cased, de-duplicated, sorted names of `headers`.
    static func signedHeaderNames(_ headers: [(String, String)]) -> [String] {
        Set(headers.map { asciiLowercased($0.0) }).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    static func canonicalRequest(
        method: String,
        canonicalURI: String,
        canonicalQuery: String,
        headers: [(String, String)],
        signedHeaders: [String],
        bodyHash: String
    ) -> String {
        var lines: [String] = []
        lines.reserveCapacity(signedHeaders.count)
        for name in signedHeaders {
            let values = headers.lazy
                .filter { asciiLowercased($0.0) == name }
                .map(\.1)
                .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for value in values {
                lines.append(name + ":" + trimmedWhitespace(value))
            }
        }
        var canonical = method
        canonical += "\n" + canonicalURI
        canonical += "\n" + canonicalQuery
        canonical += "\n" + lines.joined(separator: "\n") + "\n"
        canonical += "\n" + signedHeaders.joined(separator: ";")
        canonical += "\n" + bodyHash
        return canonical
    }

    /// The signature of `canonicalRequest` and the `Authorization` header value carrying it.
    static func authorization(
        algorithm: SigningAlgorithm,
        canonicalRequest: String,
        stamp: SigningDate,
        accessKey: String,
        secretKey: String,
        region: String,
        service: String,
        signedHeaders: [String],
        derivedKey: ((String) -> [UInt8])? = nil
    ) -> (signature: String, header: String) {
        let canonicalHash = hexSHA256(Array(canonicalRequest.utf8))
        let signedList = signedHeaders.joined(separator: ";")
        switch algorithm {
        case .sdkHMACSHA256:
            let stringToSign = "SDK-HMAC-SHA256\n\(stamp.basicFormat)\n\(canonicalHash)"
            let signature = hexHMACSHA256(key: Array(secretKey.utf8), message: stringToSign)
            return (signature, "SDK-HMAC-SHA256 Access=\(accessKey), SignedHeaders=\(signedList), Signature=\(signature)")
        case .v11HMACSHA256:
            let info = "\(stamp.dayFormat)/\(region)/\(service)"
            let stringToSign = "V11-HMAC-SHA256\n\(stamp.basicFormat)\n\(info)\n\(canonicalHash)"
            let signingKey = derivedKey?(info) ?? derivedSigningKey(accessKey: accessKey, secretKey: secretKey, info: info)
            let signature = hexHMACSHA256(key: signingKey, message: stringToSign)
            return (signature, "V11-HMAC-SHA256 Credential=\(accessKey)/\(info), SignedHeaders=\(signedList), Signature=\(signature)")
        }
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
        return key.withUnsafeBytes { lowerHexBytes($0) }
    }
}

/// Remembers the last derived key: the key depends only on the day (and the fixed AK, SK,
/// region and service), so one HKDF a day serves every request.
final class DerivedKeyCache: Sendable {
    private let last = Mutex<(info: String, key: [UInt8])?>(nil)

    func key(for info: String, derive: () -> [UInt8]) -> [UInt8] {
        if let cached = last.withLock({ $0 }), cached.info == info { return cached.key }
        let key = derive()
        last.withLock { $0 = (info, key) }
        return key
    }
}

// MARK: - Hashing and text helpers

func hexSHA256(_ bytes: [UInt8]) -> String {
    String(decoding: SHA256.hash(data: bytes).withUnsafeBytes { lowerHexBytes($0) }, as: UTF8.self)
}

func hexHMACSHA256(key: [UInt8], message: String) -> String {
    let code = HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key))
    return String(decoding: code.withUnsafeBytes { lowerHexBytes($0) }, as: UTF8.self)
}

private let lowerHexDigits: [UInt8] = Array("0123456789abcdef".utf8)

func lowerHexBytes(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
    var output: [UInt8] = []
    output.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        output.append(lowerHexDigits[Int(byte >> 4)])
        output.append(lowerHexDigits[Int(byte & 0x0F)])
    }
    return output
}

/// Lower-cases ASCII letters only, as header names need (and cheaper than `lowercased()`).
func asciiLowercased(_ s: String) -> String {
    guard s.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else { return s }
    return String(decoding: s.utf8.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 | 0x20 : $0 }, as: UTF8.self)
}

/// Trims Unicode white space at both ends, as Go's `strings.TrimSpace` does.
func trimmedWhitespace<S: StringProtocol>(_ s: S) -> String {
    // The usual case: printable ASCII at both ends, nothing to trim.
    let string = String(s)
    if let first = string.utf8.first, let last = string.utf8.last,
       (0x21...0x7E).contains(first), (0x21...0x7E).contains(last) {
        return string
    }
    let scalars = s.unicodeScalars
    var start = scalars.startIndex
    var end = scalars.endIndex
    while start < end, scalars[start].properties.isWhitespace { start = scalars.index(after: start) }
    while end > start, scalars[scalars.index(before: end)].properties.isWhitespace { end = scalars.index(before: end) }
    return String(String.UnicodeScalarView(scalars[start..<end]))
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
        let (year, month, day) = civil
        let secondOfDay = secondsSince1970 - Self.floorDivide(secondsSince1970, 86_400) * 86_400
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        Self.appendDigits(year, width: 4, to: &bytes)
        Self.appendDigits(month, width: 2, to: &bytes)
        Self.appendDigits(day, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: "T"))
        Self.appendDigits(secondOfDay / 3_600, width: 2, to: &bytes)
        Self.appendDigits(secondOfDay % 3_600 / 60, width: 2, to: &bytes)
        Self.appendDigits(secondOfDay % 60, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: "Z"))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `YYYYMMDD`.
    var dayFormat: String {
        let (year, month, day) = civil
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8)
        Self.appendDigits(year, width: 4, to: &bytes)
        Self.appendDigits(month, width: 2, to: &bytes)
        Self.appendDigits(day, width: 2, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
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

    private static func appendDigits(_ value: Int64, width: Int, to bytes: inout [UInt8]) {
        let digits = Array(String(value).utf8)
        if digits.count < width { bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width - digits.count)) }
        bytes.append(contentsOf: digits)
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
