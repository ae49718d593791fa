import ExportTaskCleaner
import FoundationEssentials

/// The server's side of ``RequestSigner``: checks a received request's signature as IAM does.
/// The IoTDA simulator uses it, so the cleaner is tested against an independent rebuild of the
/// canonical request from what actually went over the wire.
public enum SignatureVerifier {
    /// Why a request's signature was refused. The reason names headers, the access key ID or
    /// the algorithm, never a secret or the canonical request (which may hold a security token).
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var reason: String

        public init(_ reason: String) {
            self.reason = reason
        }

        public var description: String { reason }
    }

    /// Checks a received request as IAM would: parses Authorization (either algorithm),
    /// rebuilds the canonical request from the received method, the raw percent-encoded path
    /// (decode each segment, then escape again), the raw query string (decode, then
    /// canonicalize), the named SignedHeaders' received values, and the body; looks up the
    /// secret for the AK; checks X-Sdk-Date is within `maxSkew` of `now`. Returns the AK on
    /// success.
    ///
    /// `X-Sdk-Date` must be one of the signed headers. For `V11-HMAC-SHA256` the credential
    /// scope must name the day of `X-Sdk-Date`, `region` and `service`. In the query a `+`
    /// decodes to a space, as in form decoding (the signer itself always sends `%20`).
    public static func verify(
        method: String,
        rawPath: String,
        rawQuery: String?,
        headers: [(String, String)],
        body: [UInt8],
        secretKey: (String) -> String?,
        region: String,
        service: String,
        now: Date,
        maxSkew: Duration
    ) -> Result<String, Failure> {
        do {
            return .success(try check(
                method: method, rawPath: rawPath, rawQuery: rawQuery, headers: headers, body: body,
                secretKey: secretKey, region: region, service: service, now: now, maxSkew: maxSkew
            ))
        } catch {
            return .failure(error)
        }
    }

    private static func check(
        method: String,
        rawPath: String,
        rawQuery: String?,
        headers: [(String, String)],
        body: [UInt8],
        secretKey: (String) -> String?,
        region: String,
        service: String,
        now: Date,
        maxSkew: Duration
    ) throws(Failure) -> String {
        // Lower-cased once here, so that every lookup below compares names as they are.
        let headers = LowercasedHeader.lowercasing(headers)
        let authorization = try Authorization(parsing: try singleValue(
            of: RequestSigner.authorizationHeader, lowercased: RequestSigner.lowercasedAuthorizationHeader, in: headers
        ))

        guard authorization.signedHeaders.contains(where: { $0 == RequestSigner.lowercasedDateHeader }) else {
            throw Failure("X-Sdk-Date is not among the signed headers")
        }
        for name in authorization.signedHeaders where !headers.contains(where: { $0.name == name }) {
            throw Failure("signed header \(name) is missing from the request")
        }

        let dateText = trimmedWhitespace(try singleValue(
            of: RequestSigner.dateHeader, lowercased: RequestSigner.lowercasedDateHeader, in: headers
        ))
        guard let stamp = SigningDate(basicFormat: dateText) else {
            throw Failure("X-Sdk-Date is not of the form YYYYMMDDTHHMMSSZ")
        }
        let skew = abs(now.timeIntervalSince(stamp.date))
        guard skew <= maxSkew.timeInterval else {
            throw Failure("X-Sdk-Date \(dateText) is \(Int(skew)) s away from the server's clock")
        }

        if let scope = authorization.scope {
            guard scope.day == stamp.dayFormat else {
                throw Failure("credential scope day \(scope.day) does not match X-Sdk-Date \(dateText)")
            }
            guard scope.region == region else {
                throw Failure("credential scope names region \(scope.region), expected \(region)")
            }
            guard scope.service == service else {
                throw Failure("credential scope names service \(scope.service), expected \(service)")
            }
        }

        let accessKey = authorization.accessKey
        guard let secret = secretKey(accessKey) else {
            throw Failure("unknown access key \(accessKey)")
        }

        var canonical = CanonicalRequest.start(method: method)
        guard PercentEncoding.appendCanonicalURI(rawPath: Array(rawPath.utf8), to: &canonical) else {
            throw Failure("malformed percent-encoding in the path")
        }
        canonical.append(CanonicalRequest.newline)
        try appendCanonicalQuery(rawQuery: rawQuery, to: &canonical)
        CanonicalRequest.finish(&canonical, signedHeaders: authorization.signedHeaders, headers: headers, body: body)

        let key = signingKey(
            algorithm: authorization.algorithm, accessKey: accessKey, secretKey: secret,
            stamp: stamp, region: region, service: service
        )
        let expected = RequestSigner.signature(
            algorithm: authorization.algorithm, canonicalRequest: canonical, stamp: stamp,
            region: region, service: service, key: key
        )
        guard constantTimeEqual(expected, authorization.signature) else {
            throw Failure("signature does not match (\(authorization.algorithm.rawValue), access key \(accessKey))")
        }
        return accessKey
    }

    // MARK: - Signing keys

    /// What a derived key is made from.
    private struct DerivedKeySource: Equatable, Sendable {
        var accessKey: String
        var secretKey: String
        var day: Int64
        var region: String
        var service: String
    }

    /// The last key of each algorithm and what it was made from, so that a client signing
    /// request after request with one access key costs one key set-up (and, for derived keys,
    /// one HKDF) a day rather than one per request. A different access key, secret, day, region
    /// or service makes a new key. Like the caller's `secretKey` lookup, these hold the last
    /// secret key in memory; they never appear in a failure's reason.
    private static let secretKeys = SigningKeyCache<String>()
    private static let derivedKeys = SigningKeyCache<DerivedKeySource>()

    private static func signingKey(
        algorithm: SigningAlgorithm, accessKey: String, secretKey: String,
        stamp: SigningDate, region: String, service: String
    ) -> HMACKey {
        switch algorithm {
        case .sdkHMACSHA256:
            secretKeys.key(for: secretKey) { HMACKey(Array($0.utf8)) }
        case .v11HMACSHA256:
            derivedKeys.key(for: DerivedKeySource(
                accessKey: accessKey, secretKey: secretKey, day: stamp.dayNumber, region: region, service: service
            )) { source in
                HMACKey(RequestSigner.derivedSigningKey(
                    accessKey: source.accessKey, secretKey: source.secretKey,
                    info: RequestSigner.credentialScope(stamp: stamp, region: source.region, service: source.service)
                ))
            }
        }
    }

    // MARK: - The Authorization header

    /// A parsed `Authorization` value.
    private struct Authorization {
        var algorithm: SigningAlgorithm
        var accessKey: String
        var scope: (day: String, region: String, service: String)?
        var signedHeaders: [String]
        var signature: ArraySlice<UInt8>

        /// `SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex` or
        /// `V11-HMAC-SHA256 Credential=AK/YYYYMMDD/region/service, SignedHeaders=a;b, Signature=hex`.
        ///
        /// After the algorithm come `name=value` parameters separated by `,` (empty ones
        /// skipped), names and values trimmed; a repeated parameter's last value counts, and
        /// unknown parameters are ignored. Parsed on the value's UTF-8 bytes, as IAM does: every
        /// delimiter (space, `,`, `=`, `;`, `/`) is ASCII, so each part is valid UTF-8 again.
        init(parsing value: String) throws(Failure) {
            let bytes = Array(value.utf8)
            let header = trimmingUTF8Whitespace(bytes[...])
            guard let space = header.firstIndex(of: UInt8(ascii: " ")) else {
                throw Failure("malformed Authorization header")
            }
            guard let algorithm = SigningAlgorithm(rawValue: text(header[..<space])) else {
                throw Failure("unsupported signing algorithm in Authorization header")
            }
            var access: ArraySlice<UInt8>?
            var credential: ArraySlice<UInt8>?
            var signedHeaders: ArraySlice<UInt8>?
            var signature: ArraySlice<UInt8>?
            for part in header[space...].components(separatedBy: UInt8(ascii: ",")) where !part.isEmpty {
                guard let equals = part.firstIndex(of: UInt8(ascii: "=")) else {
                    throw Failure("malformed Authorization header")
                }
                let parameter = trimmingUTF8Whitespace(part[(equals + 1)...])
                switch text(trimmingUTF8Whitespace(part[..<equals])) {
                case "Access": access = parameter
                case "Credential": credential = parameter
                case "SignedHeaders": signedHeaders = parameter
                case "Signature": signature = parameter
                default: break
                }
            }
            guard let signedHeaders, !signedHeaders.isEmpty, let signature, !signature.isEmpty else {
                throw Failure("Authorization header lacks SignedHeaders or Signature")
            }
            self.algorithm = algorithm
            self.signedHeaders = signedHeaders.components(separatedBy: UInt8(ascii: ";")).map(text)
            self.signature = signature

            switch algorithm {
            case .sdkHMACSHA256:
                guard let access, !access.isEmpty else {
                    throw Failure("Authorization header lacks Access")
                }
                accessKey = text(access)
                scope = nil
            case .v11HMACSHA256:
                let parts = (credential ?? []).components(separatedBy: UInt8(ascii: "/"))
                guard parts.count == 4, parts.allSatisfy({ !$0.isEmpty }) else {
                    throw Failure("Authorization header lacks Credential=AK/YYYYMMDD/region/service")
                }
                accessKey = text(parts[0])
                scope = (text(parts[1]), text(parts[2]), text(parts[3]))
            }
        }
    }

    // MARK: - Rebuilding the canonical query from the wire

    /// Splits the raw query at `&` (skipping empty parts) and `=`, decodes, and appends the
    /// canonical query.
    private static func appendCanonicalQuery(rawQuery: String?, to canonical: inout [UInt8]) throws(Failure) {
        guard let rawQuery, !rawQuery.isEmpty else { return }
        var pairs: [([UInt8], [UInt8])] = []
        for part in Array(rawQuery.utf8)[...].components(separatedBy: UInt8(ascii: "&")) where !part.isEmpty {
            let equals = part.firstIndex(of: UInt8(ascii: "=")) ?? part.endIndex
            let value = equals < part.endIndex ? part[(equals + 1)...] : part[equals...]
            guard let decodedKey = PercentEncoding.unescape(bytes: part[..<equals], plusIsSpace: true),
                  let decodedValue = PercentEncoding.unescape(bytes: value, plusIsSpace: true)
            else {
                throw Failure("malformed percent-encoding in the query")
            }
            pairs.append((decodedKey, decodedValue))
        }
        PercentEncoding.appendCanonicalQuery(pairs, to: &canonical)
    }

    // MARK: - Helpers

    /// The one value of the header `name` (`lowercased` in `headers`).
    private static func singleValue(
        of name: String, lowercased: String, in headers: [LowercasedHeader]
    ) throws(Failure) -> String {
        var found: String?
        for header in headers where header.name == lowercased {
            guard found == nil else { throw Failure("more than one \(name) header") }
            found = header.value
        }
        guard let found else { throw Failure("missing \(name) header") }
        return found
    }

    /// UTF-8 bytes cut from a `String` at ASCII delimiters, as text again.
    private static func text(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes, as: UTF8.self)
    }

    /// `bytes` (UTF-8 cut from a `String` at ASCII delimiters) without Unicode white space at
    /// either end, as ``trimmedWhitespace(_:)`` trims text: ASCII white space byte by byte,
    /// and, only when a non-ASCII byte is left at an end, the scalars of the text.
    private static func trimmingUTF8Whitespace(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var start = bytes.startIndex
        var end = bytes.endIndex
        while start < end, isASCIIWhitespace(bytes[start]) { start += 1 }
        while start < end, isASCIIWhitespace(bytes[end - 1]) { end -= 1 }
        guard start < end, bytes[start] >= 0x80 || bytes[end - 1] >= 0x80 else {
            return bytes[start..<end]
        }
        // The bytes are valid UTF-8, so the text trimmed is a run of the same bytes.
        let text = text(bytes[start..<end])
        let trimmed = trimmingWhitespace(text[...])
        let offset = text.utf8.distance(from: text.startIndex, to: trimmed.startIndex)
        return bytes[(start + offset)..<(start + offset + trimmed.utf8.count)]
    }


    /// Compares without stopping at the first difference, so timing reveals nothing.
    private static func constantTimeEqual(_ expected: [UInt8], _ received: ArraySlice<UInt8>) -> Bool {
        guard expected.count == received.count else { return false }
        var difference: UInt8 = 0
        for (lhs, rhs) in zip(expected, received) { difference |= lhs ^ rhs }
        return difference == 0
    }
}
