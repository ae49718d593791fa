import Foundation
import Testing

@testable import ExportTaskCleaner
import IoTDASimulator

/// Sign → verify round trips through the simulator's verifier, and the byte-level fast paths
/// held to the general rules they stand for.
extension SignerTests {
    // MARK: - Round trips through the verifier

    static let now = Date(timeIntervalSince1970: 1_700_000_000)
    static let secrets = ["AKROUNDTRIP": "round-trip-secret"]

    struct SignedRequest {
        var method = "DELETE"
        var rawPath: String
        var rawQuery: String?
        var headers: [(String, String)]
        var body: [UInt8] = []
    }

    static func signedRequest(
        _ algorithm: SigningAlgorithm, securityToken: String? = nil, date: Date = now
    ) -> SignedRequest {
        let signer = RequestSigner(
            algorithm: algorithm,
            accessKey: AccessKey(ak: "AKROUNDTRIP", sk: "round-trip-secret", securityToken: securityToken),
            region: "cn-north-4"
        )
        let segments = ["v5", "iot", "project 1", "export-tasks", "task_é-1"]
        let query = [("b", "x y"), ("a", "1/2"), ("a", "0~")]
        let headers = signer.sign(
            method: "DELETE", pathSegments: segments, query: query,
            headers: [("Host", "iotda.example.com"), ("X-Project-Id", "project 1"), ("Instance-Id", "inst")],
            body: [], date: date
        )
        return SignedRequest(rawPath: PercentEncoding.path(segments), rawQuery: PercentEncoding.query(query), headers: headers)
    }

    static func verify(
        _ request: SignedRequest, region: String = "cn-north-4", service: String = "iotdm",
        maxSkew: Duration = .seconds(900)
    ) -> Result<String, SignatureVerifier.Failure> {
        SignatureVerifier.verify(
            method: request.method, rawPath: request.rawPath, rawQuery: request.rawQuery,
            headers: request.headers, body: request.body, secretKey: { secrets[$0] },
            region: region, service: service, now: now, maxSkew: maxSkew
        )
    }

    @Test(arguments: SigningAlgorithm.allCases)
    func signedRequestVerifies(algorithm: SigningAlgorithm) throws {
        #expect(try Self.verify(Self.signedRequest(algorithm)).get() == "AKROUNDTRIP")
        #expect(try Self.verify(Self.signedRequest(algorithm, securityToken: "tok")).get() == "AKROUNDTRIP")
    }

    @Test(arguments: SigningAlgorithm.allCases)
    func verifierAcceptsEquivalentWireForms(algorithm: SigningAlgorithm) throws {
        var request = Self.signedRequest(algorithm)
        // Lower-case hex, a `+` for a space, another order and header case all decode the same.
        request.rawPath = "/v5/iot/project%201/export-tasks/task_%c3%a9-1"
        request.rawQuery = "a=0~&b=x+y&&a=1%2f2"
        request.headers = request.headers.map { (asciiLowercased($0.0), $0.1) }.reversed()
        #expect(try Self.verify(request).get() == "AKROUNDTRIP")
    }

    @Test(arguments: SigningAlgorithm.allCases)
    func tamperedRequestsFail(algorithm: SigningAlgorithm) {
        let original = Self.signedRequest(algorithm, securityToken: "tok")
        func replacing(_ name: String, with value: String) -> SignedRequest {
            var request = original
            request.headers = request.headers.map { $0.0.lowercased() == name.lowercased() ? ($0.0, value) : $0 }
            return request
        }
        var tampered: [(String, SignedRequest)] = []
        tampered.append(("header", replacing("Host", with: "evil.example.com")))
        tampered.append(("token", replacing("X-Security-Token", with: "other")))
        tampered.append(("date", replacing("X-Sdk-Date", with: "20231114T221321Z")))
        var path = original
        path.rawPath = "/v5/iot/project%201/export-tasks/task_e-1"
        tampered.append(("path", path))
        var query = original
        query.rawQuery = "a=1%2F2&b=x%20y"
        tampered.append(("query", query))
        var method = original
        method.method = "GET"
        tampered.append(("method", method))
        var body = original
        body.body = Array("{}".utf8)
        tampered.append(("body", body))
        var dropped = original
        dropped.headers.removeAll { $0.0 == "Instance-Id" }
        tampered.append(("dropped header", dropped))

        for (what, request) in tampered {
            guard case .failure = Self.verify(request) else {
                Issue.record("a tampered \(what) verified")
                continue
            }
        }
    }

    @Test func verifierChecksKeyScopeAndClock() {
        let derived = Self.signedRequest(.v11HMACSHA256)
        #expect(failureReason(Self.verify(derived, region: "cn-south-1"))?.contains("region") == true)
        #expect(failureReason(Self.verify(derived, service: "demo"))?.contains("service") == true)

        let stale = Self.signedRequest(.sdkHMACSHA256, date: Self.now.addingTimeInterval(-901))
        #expect(failureReason(Self.verify(stale))?.contains("X-Sdk-Date") == true)
        let early = Self.signedRequest(.sdkHMACSHA256, date: Self.now.addingTimeInterval(60))
        #expect(failureReason(Self.verify(early, maxSkew: .seconds(30))) != nil)
        #expect(failureReason(Self.verify(early, maxSkew: .seconds(60))) == nil)

        let stranger = RequestSigner(algorithm: .sdkHMACSHA256, accessKey: AccessKey(ak: "NOBODY", sk: "x"), region: "r")
        let unknown = SignedRequest(
            rawPath: "/x",
            headers: stranger.sign(method: "DELETE", pathSegments: ["x"], query: [], headers: [], body: [], date: Self.now)
        )
        #expect(failureReason(Self.verify(unknown))?.contains("unknown access key NOBODY") == true)

        var unsigned = Self.signedRequest(.sdkHMACSHA256)
        unsigned.headers.removeAll { $0.0 == "Authorization" }
        #expect(failureReason(Self.verify(unsigned)) != nil)
    }

    @Test func failureReasonsNeverContainSecrets() {
        var request = Self.signedRequest(.v11HMACSHA256, securityToken: "very-secret-token")
        request.rawPath = "/tampered"
        let reason = failureReason(Self.verify(request)) ?? ""
        #expect(!reason.isEmpty)
        #expect(!reason.contains("round-trip-secret"))
        #expect(!reason.contains("very-secret-token"))
    }

    // MARK: - Fast paths agree with the general rules

    /// Go's `strings.TrimSpace`, scalar by scalar with the Unicode White_Space property: what
    /// the byte-level fast paths must agree with.
    private static func referenceTrim(_ s: Substring) -> String {
        var scalars = Array(s.unicodeScalars)
        while let first = scalars.first, first.properties.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() }
        var result = ""
        result.unicodeScalars.append(contentsOf: scalars)
        return result
    }

    @Test func trimmingAgreesWithUnicodeWhiteSpace() {
        let pieces = [" ", "\t", "\n", "\r\n", "\u{0B}", "\u{0C}", "\u{85}", "\u{A0}", "\u{1680}", "\u{2003}",
                      "\u{2028}", "\u{202F}", "\u{3000}", "\u{0}", "\u{1F}", "\u{7F}", "\u{200B}", "\u{FEFF}",
                      "a", "Z", "é", "\u{301}", "中", "😀", "x y"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let text = (0..<Int.random(in: 0...6, using: &generator))
                .map { _ in pieces.randomElement(using: &generator)! }
                .joined()
            let expected = Self.referenceTrim(text[...])
            #expect(trimmedWhitespace(text) == expected, "\(Array(text.unicodeScalars))")
            #expect(String(trimmingWhitespace(text[...])) == expected, "\(Array(text.unicodeScalars))")
            // Substrings, including ones that start inside a character (after a space that a
            // combining mark follows).
            for start in text.unicodeScalars.indices {
                let slice = text[start...]
                #expect(trimmedWhitespace(slice) == Self.referenceTrim(slice), "\(Array(slice.unicodeScalars))")
                #expect(String(trimmingWhitespace(slice)) == Self.referenceTrim(slice))
            }
        }
        #expect(trimmedWhitespace("\u{A0}\u{3000} value \u{2028}\u{85}") == "value")
        #expect(trimmedWhitespace(" \u{301}x ") == "\u{301}x")
        #expect(trimmedWhitespace("\u{1F}x\u{7F}") == "\u{1F}x\u{7F}")  // controls are not white space
        #expect(trimmedWhitespace("\u{200B}x") == "\u{200B}x")  // nor is a zero-width space
    }

    @Test func asciiLowercasingLeavesEverythingElse() {
        #expect(asciiLowercased("X-Project-Id") == "x-project-id")
        #expect(asciiLowercased("already-lower") == "already-lower")
        #expect(asciiLowercased("ÄBC-Éé-ĲK") == "Äbc-Éé-Ĳk")
        #expect(asciiLowercased("A-LONG-HEADER-NAME-OF-MORE-THAN-FIFTEEN-BYTES") == "a-long-header-name-of-more-than-fifteen-bytes")
        #expect(asciiLowercased("") == "")
    }

    @Test func repeatedHeadersAreSignedAsOneSortedName() {
        let canonical = RequestSigner.canonicalRequest(
            method: "GET", pathSegments: ["x"], query: [],
            headers: [("X-Multi", " b "), ("x-multi", "a"), ("Host", "h"), ("X-MULTI", "\u{A0}c")],
            signedHeaders: ["host", "x-multi"], body: []
        )
        // Sorted as received (a leading space sorts first, a non-ASCII byte last), then trimmed.
        #expect(canonical == "GET\n/x/\n\nhost:h\nx-multi:b\nx-multi:a\nx-multi:c\n\nhost;x-multi\n\(Self.emptyBodyHash)")

        let signer = RequestSigner(algorithm: .sdkHMACSHA256, accessKey: Self.sdkTestKey, region: "r")
        let headers = signer.sign(
            method: "GET", pathSegments: ["x"], query: [],
            headers: [("X-Multi", "b"), ("Host", "h"), ("x-multi", "a")], body: [], date: Self.sdkTestDate
        )
        #expect(value(of: "Authorization", in: headers)?.contains("SignedHeaders=host;x-multi;x-sdk-date,") == true)
    }

    @Test(arguments: [
        (Int64(-11_676_096_000), "16000101T000000Z"),  // 1600: Gregorian (Calendar is Julian before 1582)
        (253_402_300_800, "100000101T000000Z"),  // year 10000: all five digits
    ])
    func datesOutsideFourDigitYears(seconds: Int64, text: String) {
        #expect(SigningDate(secondsSince1970: seconds).basicFormat == text)
    }

    @Test(arguments: SigningAlgorithm.allCases)
    func verifierAcceptsSpacingInTheAuthorizationHeader(algorithm: SigningAlgorithm) throws {
        let original = Self.signedRequest(algorithm)
        let authorization = try #require(value(of: "Authorization", in: original.headers))
        let respaced = [
            "  " + authorization + " \t",
            authorization.replacingOccurrences(of: ", ", with: " ,\t "),
            authorization.replacingOccurrences(of: "=", with: " = "),
            authorization.replacingOccurrences(of: ", ", with: ",\u{A0}"),  // Unicode white space
            authorization + ",, Extra=ignored,",
            authorization.replacingOccurrences(of: "Signature=", with: "Signature=0, Signature="),  // the last counts
        ]
        for text in respaced {
            var request = original
            request.headers = request.headers.map { $0.0 == "Authorization" ? ($0.0, text) : $0 }
            #expect(try Self.verify(request).get() == "AKROUNDTRIP", "\(text)")
        }
        let malformed = [
            authorization.replacingOccurrences(of: " ", with: ""),
            authorization.replacingOccurrences(of: "Signature=", with: "Signature"),
            authorization.replacingOccurrences(of: "SignedHeaders=", with: "SignedHeaders=host;"),
            authorization.replacingOccurrences(of: "Signature=", with: "Signature=a"),
        ]
        for text in malformed {
            var request = original
            request.headers = request.headers.map { $0.0 == "Authorization" ? ($0.0, text) : $0 }
            #expect(failureReason(Self.verify(request)) != nil, "\(text)")
        }
    }

    @Test func headerValuesWithUnicodeWhiteSpaceVerify() throws {
        let signer = RequestSigner(
            algorithm: .v11HMACSHA256, accessKey: AccessKey(ak: "AKROUNDTRIP", sk: "round-trip-secret"), region: "cn-north-4"
        )
        let headers = signer.sign(
            method: "DELETE", pathSegments: ["x"], query: [],
            headers: [("Host", "\u{A0}iotda.example.com\u{3000}"), ("X-Project-Id", " p\t")], body: [], date: Self.now
        )
        let plain = signer.sign(
            method: "DELETE", pathSegments: ["x"], query: [],
            headers: [("Host", "iotda.example.com"), ("X-Project-Id", "p")], body: [], date: Self.now
        )
        // Values are trimmed before they are signed.
        #expect(value(of: "Authorization", in: headers) == value(of: "Authorization", in: plain))
        #expect(try Self.verify(SignedRequest(rawPath: "/x", headers: headers)).get() == "AKROUNDTRIP")
    }

    @Test func keysAreNotReusedAcrossDaysOrAccessKeys() throws {
        // One signer (whose derived key is cached) across days agrees with fresh signers.
        let key = AccessKey(ak: "AKROUNDTRIP", sk: "round-trip-secret")
        let shared = RequestSigner(algorithm: .v11HMACSHA256, accessKey: key, region: "cn-north-4")
        for offset in [0, 86_400, 0, -86_400, 1] {
            let date = Self.now.addingTimeInterval(TimeInterval(offset))
            let fresh = RequestSigner(algorithm: .v11HMACSHA256, accessKey: key, region: "cn-north-4")
            let request = { (signer: RequestSigner) in
                signer.sign(method: "DELETE", pathSegments: ["x"], query: [], headers: [("Host", "h")], body: [], date: date)
            }
            #expect(value(of: "Authorization", in: request(shared)) == value(of: "Authorization", in: request(fresh)))
        }

        // The verifier's remembered keys follow the access key and the algorithm.
        let secrets = ["AK1": "secret-one", "AK2": "secret-two"]
        for round in 0..<6 {
            let ak = round % 3 == 0 ? "AK1" : "AK2"
            let algorithm: SigningAlgorithm = round % 2 == 0 ? .v11HMACSHA256 : .sdkHMACSHA256
            let signer = RequestSigner(algorithm: algorithm, accessKey: AccessKey(ak: ak, sk: secrets[ak]!), region: "cn-north-4")
            let headers = signer.sign(method: "DELETE", pathSegments: ["x"], query: [], headers: [], body: [], date: Self.now)
            let result = SignatureVerifier.verify(
                method: "DELETE", rawPath: "/x", rawQuery: nil, headers: headers, body: [],
                secretKey: { secrets[$0] }, region: "cn-north-4", service: "iotdm", now: Self.now, maxSkew: .seconds(900)
            )
            #expect(try result.get() == ak)
            let wrongSecret = SignatureVerifier.verify(
                method: "DELETE", rawPath: "/x", rawQuery: nil, headers: headers, body: [],
                secretKey: { _ in "not-the-secret" }, region: "cn-north-4", service: "iotdm", now: Self.now,
                maxSkew: .seconds(900)
            )
            #expect(failureReason(wrongSecret)?.contains("signature does not match") == true)
        }
    }
}
