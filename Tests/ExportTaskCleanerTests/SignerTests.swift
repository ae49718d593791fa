import Foundation
import Testing

@testable import ExportTaskCleaner
import IoTDASimulator

/// Known answers from the official SDKs and IAM's signing guide, the SDKs' escaping and
/// ordering rules, the `auto` rule, and sign → verify round trips.
@Suite struct SignerTests {
    // MARK: - Known answers

    static let sdkTestKey = AccessKey(ak: "AccessKey", sk: "SecretKey")
    /// 2006-01-02T15:04:05Z, the SDKs' test time.
    static let sdkTestDate = Date(timeIntervalSince1970: 1_136_214_245)
    static let emptyBodyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    @Test func sdkHMACSHA256KnownAnswer() {
        let signer = RequestSigner(algorithm: .sdkHMACSHA256, accessKey: Self.sdkTestKey, region: "test-region-1")
        let headers = signer.sign(
            method: "GET", pathSegments: ["path"], query: [("limit", "1")], headers: [], body: [],
            date: Self.sdkTestDate
        )
        #expect(value(of: "X-Sdk-Date", in: headers) == "20060102T150405Z")
        #expect(value(of: "Authorization", in: headers) ==
            "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, "
            + "Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624")
    }

    @Test func v11HMACSHA256KnownAnswer() {
        let signer = RequestSigner(
            algorithm: .v11HMACSHA256, accessKey: Self.sdkTestKey, region: "test-region-1", service: "demo"
        )
        let headers = signer.sign(
            method: "GET", pathSegments: ["path"], query: [("limit", "1")], headers: [], body: [],
            date: Self.sdkTestDate
        )
        #expect(value(of: "Authorization", in: headers) ==
            "V11-HMAC-SHA256 Credential=AccessKey/20060102/test-region-1/demo, SignedHeaders=x-sdk-date, "
            + "Signature=8fd3610508884bb19718317797c7378716a94bc740d97502e569322e366341cc")
    }

    @Test func iamGuideKnownAnswer() throws {
        let signer = RequestSigner(
            algorithm: .sdkHMACSHA256,
            accessKey: AccessKey(ak: "QTWAOYTTINDUT2QVKYUC", sk: "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"),
            region: "region"
        )
        let date = try #require(SigningDate(basicFormat: "20191115T033655Z")).date
        let headers = signer.sign(
            method: "GET",
            pathSegments: ["v1", "77b6a44cba5143ab91d13ab9a8ff44fd", "vpcs"],
            query: [("marker", "13551d6b-755d-4757-b956-536f674975c0"), ("limit", "2")],
            headers: [("content-type", "application/json"), ("host", "service.region.example.com")],
            body: [],
            date: date
        )
        #expect(value(of: "Authorization", in: headers) ==
            "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, "
            + "Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe")
    }

    @Test func canonicalRequestLayout() {
        let canonical = RequestSigner.canonicalRequest(
            method: "GET", pathSegments: ["path"], query: [("limit", "1")],
            headers: [("X-Sdk-Date", " 20060102T150405Z\t"), ("Host", "example.com")],
            signedHeaders: ["host", "x-sdk-date"], body: []
        )
        #expect(canonical == """
            GET
            /path/
            limit=1
            host:example.com
            x-sdk-date:20060102T150405Z

            host;x-sdk-date
            \(Self.emptyBodyHash)
            """)
    }

    // MARK: - Escaping and ordering

    @Test func escapingKeepsOnlyUnreservedCharacters() {
        #expect(PercentEncoding.escape("AZaz09_-~.") == "AZaz09_-~.")
        #expect(PercentEncoding.escape("a b/c=d&e+f?g#h%i") == "a%20b%2Fc%3Dd%26e%2Bf%3Fg%23h%25i")
        #expect(PercentEncoding.escape("café") == "caf%C3%A9")
        #expect(PercentEncoding.escape("") == "")
    }

    @Test func queryMatchesTheSDKsOwnTest() {
        // core/auth/signer/signer_test.go, TestSigner_canonicalQueryString.
        let query = PercentEncoding.query([
            ("limit", "1"), ("enable", "true"), ("test", "一 (&=?!#%.*)"), ("path", "/tmp/123"),
            ("multi", "1"), ("multi", "2"), ("multi", "3"),
        ])
        #expect(query == "enable=true&limit=1&multi=1&multi=2&multi=3&path=%2Ftmp%2F123"
            + "&test=%E4%B8%80%20%28%26%3D%3F%21%23%25.%2A%29")
    }

    @Test func queryIsSortedByKeyThenValueInByteOrder() {
        let query = PercentEncoding.query([
            ("b", "2"), ("a", "z"), ("a", "y b"), ("a", ""), ("Z", "~x"), ("a&b", "c=d"),
        ])
        // Upper case sorts before lower case; a key sorts before its extensions.
        #expect(query == "Z=~x&a=&a=y%20b&a=z&a%26b=c%3Dd&b=2")
    }

    @Test func nonASCIIPathSegmentIsEscapedAsUTF8() {
        let canonical = RequestSigner.canonicalRequest(
            method: "DELETE", pathSegments: ["v5", "café", "a b", "x/y"], query: [], headers: [],
            signedHeaders: [], body: []
        )
        #expect(canonical.split(separator: "\n", omittingEmptySubsequences: false)[1] == "/v5/caf%C3%A9/a%20b/x%2Fy/")
        #expect(PercentEncoding.path(["v5", "café", "a b", "x/y"]) == "/v5/caf%C3%A9/a%20b/x%2Fy")
        #expect(PercentEncoding.path([]) == "/")
    }

    @Test func bodyIsHashed() {
        let canonical = RequestSigner.canonicalRequest(
            method: "POST", pathSegments: [], query: [], headers: [], signedHeaders: [], body: Array("abc".utf8)
        )
        #expect(canonical.hasSuffix("\n/\n\n\n\n\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
    }

    // MARK: - Headers

    @Test func securityTokenIsSentAndSigned() {
        let temporary = AccessKey(ak: "AccessKey", sk: "SecretKey", securityToken: "session-token")
        let signer = RequestSigner(algorithm: .sdkHMACSHA256, accessKey: temporary, region: "r")
        let headers = signer.sign(
            method: "DELETE", pathSegments: ["x"], query: [], headers: [("Host", "example.com")], body: [],
            date: Self.sdkTestDate
        )
        #expect(value(of: "X-Security-Token", in: headers) == "session-token")
        let authorization = value(of: "Authorization", in: headers) ?? ""
        #expect(authorization.contains("SignedHeaders=host;x-sdk-date;x-security-token,"))

        let permanent = RequestSigner(algorithm: .sdkHMACSHA256, accessKey: Self.sdkTestKey, region: "r")
        let unsigned = permanent.sign(
            method: "DELETE", pathSegments: ["x"], query: [], headers: [("Host", "example.com")], body: [],
            date: Self.sdkTestDate
        )
        #expect(value(of: "X-Security-Token", in: unsigned) == nil)
        #expect(value(of: "Authorization", in: unsigned) != authorization)
    }

    @Test func signerReplacesHeadersItOwns() {
        let signer = RequestSigner(algorithm: .sdkHMACSHA256, accessKey: Self.sdkTestKey, region: "r")
        let headers = signer.sign(
            method: "GET", pathSegments: ["path"], query: [("limit", "1")],
            headers: [("x-sdk-date", "19990101T000000Z"), ("AUTHORIZATION", "stale")], body: [],
            date: Self.sdkTestDate
        )
        #expect(headers.count == 2)
        #expect(value(of: "Authorization", in: headers)?.hasSuffix(
            "Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624") == true)
    }

    @Test func headerNamesAreLowerCasedAndSorted() {
        let signer = RequestSigner(algorithm: .sdkHMACSHA256, accessKey: Self.sdkTestKey, region: "r")
        let headers = signer.sign(
            method: "DELETE", pathSegments: ["x"], query: [],
            headers: [("X-Project-Id", "p"), ("Instance-Id", "i"), ("Host", "h")], body: [], date: Self.sdkTestDate
        )
        #expect(value(of: "Authorization", in: headers)?
            .contains("SignedHeaders=host;instance-id;x-project-id;x-sdk-date,") == true)
        // The caller's headers come first, in their order and case.
        #expect(headers.prefix(3).map(\.0) == ["X-Project-Id", "Instance-Id", "Host"])
    }

    // MARK: - auto

    @Test(arguments: [
        ("iotda.cn-north-4.myhuaweicloud.com", false),
        ("iotda.cn-north-4.myhuaweicloud.com:443", false),
        ("iotda.ap-southeast-1.myhuaweicloud.com", false),
        ("iam.myhuaweicloud.com", false),
        ("iam.cn-north-4.huaweicloud.com", false),
        ("ecs.myhwclouds.com", false),
        ("ecs.mymyhwclouds.cn", false),
        ("iotda.cn-north-4.myhuaweicloudXcom", false),  // the unescaped `.`
        ("abc123.st1.iotda-app.cn-north-4.myhuaweicloud.com", true),
        ("127.0.0.1", true),
        ("localhost", true),
        ("IOTDA.cn-north-4.myhuaweicloud.com", true),  // case-sensitive, as in the SDKs
        ("a.myhuaweicloud.com", true),  // the first label needs two characters
        ("iotda.cn-north-123.myhuaweicloud.com", true),
        ("iotda.example.com", true),
        ("", true),
    ])
    func autoRule(host: String, derived: Bool) {
        #expect(SigningAlgorithm.usesDerivedSigning(host: host) == derived)
        #expect(RequestSigner.usesDerivedSigning(host: host) == derived)
        #expect(SigningAlgorithm.automatic(forHost: host) == (derived ? .v11HMACSHA256 : .sdkHMACSHA256))
    }

    @Test func autoRuleAgreesWithARegexEngine() throws {
        let regex = try NSRegularExpression(
            pattern: #"^[a-z][a-z0-9-]+(\.[a-z]{2,}-[a-z]+-[0-9]{1,2})?\.(my)?(huaweicloud|myhwclouds).(com|cn)"#
        )
        let pieces = ["a", "io", "iotda", "-", "1", ".", "cn-north-4", "cn-north-45", "cn-north-456",
                      "ap-southeast-1", "my", "huaweicloud", "myhwclouds", "com", "cn", "x", "st1", ":443"]
        var generator = SystemRandomNumberGenerator()
        var matches = 0
        for _ in 0..<20_000 {
            let host = (0..<Int.random(in: 1...9, using: &generator))
                .map { _ in pieces.randomElement(using: &generator)! }
                .joined()
            let range = NSRange(host.startIndex..., in: host)
            let matched = regex.firstMatch(in: host, options: [.anchored], range: range) != nil
            if matched { matches += 1 }
            #expect(SigningAlgorithm.usesDerivedSigning(host: host) == !matched, "\(host)")
        }
        #expect(matches > 0, "the generated hosts should include regional ones")
    }

    // MARK: - X-Sdk-Date

    @Test(arguments: [
        (Int64(0), "19700101T000000Z"),
        (951_782_400, "20000229T000000Z"),
        (1_136_214_245, "20060102T150405Z"),
        (4_102_444_799, "20991231T235959Z"),
        (-1, "19691231T235959Z"),
    ])
    func dateFormatting(seconds: Int64, text: String) {
        let stamp = SigningDate(secondsSince1970: seconds)
        #expect(stamp.basicFormat == text)
        #expect(stamp.dayFormat == String(text.prefix(8)))
        #expect(SigningDate(basicFormat: text) == stamp)
    }

    @Test func fractionalSecondsAreDropped() {
        #expect(SigningDate(Date(timeIntervalSince1970: 1_136_214_245.999)).basicFormat == "20060102T150405Z")
    }

    @Test(arguments: ["20060230T000000Z", "2006-01-02T15:04Z", "20060102T150405", "20060102 150405Z",
                      "20061302T150405Z", "20060102T240000Z", ""])
    func malformedDatesAreRejected(text: String) {
        #expect(SigningDate(basicFormat: text) == nil)
    }

    @Test func dateFormattingAgreesWithFoundation() {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let date = Date(timeIntervalSince1970: TimeInterval(Int64.random(in: 0...7_258_118_400, using: &generator)))
            #expect(SigningDate(date).basicFormat == formatter.string(from: date))
        }
    }

    // MARK: - Helpers

    func value(of name: String, in headers: [(String, String)]) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    func failureReason(_ result: Result<String, SignatureVerifier.Failure>) -> String? {
        if case .failure(let failure) = result { return failure.reason }
        return nil
    }
}
