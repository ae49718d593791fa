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
        let authorization = try Authorization(parsing: try singleValue(of: RequestSigner.authorizationHeader, in: headers))

        guard authorization.signedHeaders.contains("x-sdk-date") else {
            throw Failure("X-Sdk-Date is not among the signed headers")
        }
        for name in authorization.signedHeaders where !headers.contains(where: { asciiLowercased($0.0) == name }) {
            throw Failure("signed header \(name) is missing from the request")
        }

        let dateText = trimmedWhitespace(try singleValue(of: RequestSigner.dateHeader, in: headers))
        guard let stamp = SigningDate(basicFormat: dateText) else {
            throw Failure("X-Sdk-Date is not of the form YYYYMMDDTHHMMSSZ")
        }
        let skew = abs(now.timeIntervalSince(stamp.date))
        guard skew <= seconds(maxSkew) else {
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

        guard let secret = secretKey(authorization.accessKey) else {
            throw Failure("unknown access key \(authorization.accessKey)")
        }

        let canonical = RequestSigner.canonicalRequest(
            method: method,
            canonicalURI: try canonicalURI(rawPath: rawPath),
            canonicalQuery: try canonicalQuery(rawQuery: rawQuery),
            headers: headers,
            signedHeaders: authorization.signedHeaders,
            bodyHash: hexSHA256(body)
        )
        let expected = RequestSigner.authorization(
            algorithm: authorization.algorithm, canonicalRequest: canonical, stamp: stamp,
            accessKey: authorization.accessKey, secretKey: secret,
            region: region, service: service, signedHeaders: authorization.signedHeaders
        ).signature
        guard constantTimeEqual(expected, authorization.signature) else {
            throw Failure("signature does not match (\(authorization.algorithm.rawValue), access key \(authorization.accessKey))")
        }
        return authorization.accessKey
    }

    // MARK: - The Authorization header

    private struct Authorization {
        var algorithm: SigningAlgorithm
        var accessKey: String
        var scope: (day: String, region: String, service: String)?
        var signedHeaders: [String]
        var signature: String

        /// `SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex` or
        /// `V11-HMAC-SHA256 Credential=AK/YYYYMMDD/region/service, SignedHeaders=a;b, Signature=hex`.
        init(parsing value: String) throws(Failure) {
            let trimmed = trimmedWhitespace(value)
            guard let space = trimmed.firstIndex(of: " ") else {
                throw Failure("malformed Authorization header")
            }
            let name = String(trimmed[..<space])
            guard let algorithm = SigningAlgorithm(rawValue: name) else {
                throw Failure("unsupported signing algorithm in Authorization header")
            }
            var parameters: [String: String] = [:]
            for part in trimmed[space...].split(separator: ",") {
                guard let equals = part.firstIndex(of: "=") else {
                    throw Failure("malformed Authorization header")
                }
                parameters[trimmedWhitespace(part[..<equals])] = trimmedWhitespace(part[part.index(after: equals)...])
            }
            guard let signedHeaders = parameters["SignedHeaders"], !signedHeaders.isEmpty,
                  let signature = parameters["Signature"], !signature.isEmpty
            else {
                throw Failure("Authorization header lacks SignedHeaders or Signature")
            }
            self.algorithm = algorithm
            self.signedHeaders = signedHeaders.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
            self.signature = signature

            switch algorithm {
            case .sdkHMACSHA256:
                guard let access = parameters["Access"], !access.isEmpty else {
                    throw Failure("Authorization header lacks Access")
                }
                accessKey = access
                scope = nil
            case .v11HMACSHA256:
                let parts = (parameters["Credential"] ?? "").split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 4, parts.allSatisfy({ !$0.isEmpty }) else {
                    throw Failure("Authorization header lacks Credential=AK/YYYYMMDD/region/service")
                }
                accessKey = String(parts[0])
                scope = (String(parts[1]), String(parts[2]), String(parts[3]))
            }
        }
    }

    // MARK: - Rebuilding the canonical parts from the wire

    /// Splits the raw path at `/`, decodes each segment and escapes it again.
    private static func canonicalURI(rawPath: String) throws(Failure) -> String {
        var segments = rawPath.split(separator: "/", omittingEmptySubsequences: false)
        if segments.first?.isEmpty == true { segments.removeFirst() }
        var decoded: [[UInt8]] = []
        decoded.reserveCapacity(segments.count)
        for segment in segments {
            guard let bytes = PercentEncoding.unescape(segment) else {
                throw Failure("malformed percent-encoding in the path")
            }
            decoded.append(bytes)
        }
        return PercentEncoding.canonicalURI(segments: decoded)
    }

    /// Splits the raw query at `&` (skipping empty parts) and `=`, decodes, and canonicalizes.
    private static func canonicalQuery(rawQuery: String?) throws(Failure) -> String {
        guard let rawQuery, !rawQuery.isEmpty else { return "" }
        var pairs: [([UInt8], [UInt8])] = []
        for part in rawQuery.split(separator: "&") {
            let key: Substring
            let value: Substring
            if let equals = part.firstIndex(of: "=") {
                key = part[..<equals]
                value = part[part.index(after: equals)...]
            } else {
                key = part
                value = ""
            }
            guard let decodedKey = PercentEncoding.unescape(key, plusIsSpace: true),
                  let decodedValue = PercentEncoding.unescape(value, plusIsSpace: true)
            else {
                throw Failure("malformed percent-encoding in the query")
            }
            pairs.append((decodedKey, decodedValue))
        }
        return PercentEncoding.canonicalQuery(pairs)
    }

    // MARK: - Helpers

    /// The one value of the header `name` (matched case-insensitively).
    private static func singleValue(of name: String, in headers: [(String, String)]) throws(Failure) -> String {
        let lowercased = asciiLowercased(name)
        let values = headers.filter { asciiLowercased($0.0) == lowercased }.map(\.1)
        guard let value = values.first else { throw Failure("missing \(name) header") }
        guard values.count == 1 else { throw Failure("more than one \(name) header") }
        return value
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// Compares without stopping at the first difference, so timing reveals nothing.
    private static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let lhs = Array(a.utf8)
        let rhs = Array(b.utf8)
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
        return difference == 0
    }
}
