import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The client's configuration, its logs and its parsing of answers.
@Suite("IoTDAClient: configuration, logs, parsing")
struct IoTDAClientInputTests {
    // MARK: Configuration

    @Test("http:// is refused at init for hosts that are not loopback")
    func httpOnlyForLoopback() async throws {
        for endpoint in [
            "http://iotda.cn-north-4.myhuaweicloud.com", "http://10.0.0.1:8080", "http://128.0.0.1",
            "http://localhost.example.com", "http://[::2]:80",
        ] {
            let error = #expect(throws: CleanerError.self) { try makeClient(endpoint: endpoint) }
            #expect(error?.code == .configuration)
            #expect(error?.message.contains("endpoint") == true)
        }
        for endpoint in ["http://127.0.0.1:1", "http://127.9.8.7", "http://localhost:8080", "http://[::1]:8080", "HTTP://LOCALHOST/"] {
            let client = try makeClient(endpoint: endpoint)
            try await client.shutdown()
            try await client.shutdown()  // idempotent
        }
    }

    @Test("malformed endpoints are refused naming endpoint")
    func malformedEndpoints() throws {
        for endpoint in [
            "iotda.example.com", "ftp://iotda.example.com", "https://", "https://host/v5", "https://user@host",
            "https://host:0", "https://host:99999", "https://host:abc", "https://host?x=1", "https://ho st",
        ] {
            let error = #expect(throws: CleanerError.self, "\(endpoint)") { try makeClient(endpoint: endpoint) }
            #expect(error?.message.contains("endpoint") == true)
        }
        let endpoint = try Endpoint(parsing: "https://IoTDA.cn-north-4.myhuaweicloud.com:8443/")
        #expect(endpoint.host == "iotda.cn-north-4.myhuaweicloud.com")
        #expect(endpoint.port == 8443)
        #expect(endpoint.hostHeader == "iotda.cn-north-4.myhuaweicloud.com:8443")
        #expect(endpoint.baseURL == "https://iotda.cn-north-4.myhuaweicloud.com:8443")
        let v6 = try Endpoint(parsing: "http://[::1]:9000")
        #expect(v6.host == "::1")
        #expect(v6.hostHeader == "[::1]:9000")
    }

    // MARK: Logs

    @Test("logs never contain the secret key, the security token or the IAM token")
    func logsHoldNoSecrets() async throws {
        let capture = CapturedLogs()
        let secretKey = "SECRET-sk-7f3a9c1e5b"
        let securityToken = "SECRET-securitytoken-42"
        let iamToken = "SECRET-iamtoken-99"
        let key = AccessKey(ak: "AKVISIBLE01", sk: secretKey, securityToken: securityToken)
        try await withClientSimulator(auth: .accessKey(key), logger: capture.logger()) { simulator in
            let client = try makeClient(
                endpoint: simulator.endpoint, credentials: .accessKey(key), requestTimeout: .milliseconds(200),
                logger: capture.logger())
            simulator.script("slow", .delay(.seconds(5), then: .deleteOnce))
            _ = await client.delete(clientRequest("ok"))
            _ = await client.delete(clientRequest("ok"))
            _ = await client.delete(clientRequest("slow"))
            try await client.shutdown()

            let wrong = AccessKey(ak: "AKVISIBLE01", sk: secretKey + "x", securityToken: securityToken)
            let bad = try makeClient(endpoint: simulator.endpoint, credentials: .accessKey(wrong), logger: capture.logger())
            #expect(await bad.delete(clientRequest("ok2")).classification == .authRefused)
            try await bad.shutdown()

            let tokenClient = try makeClient(endpoint: simulator.endpoint, credentials: .token(iamToken), logger: capture.logger())
            #expect(await tokenClient.delete(clientRequest("ok3")).classification == .authRefused)
            try await tokenClient.shutdown()
        }
        let text = capture.allText
        #expect(!text.isEmpty)
        #expect(text.contains("IoTDA client ready"))
        for secret in [secretKey, securityToken, iamToken] {
            #expect(!text.contains(secret))
        }
    }

    // MARK: Parsing

    @Test("error bodies: IoTDA, code/message, IAM's nested error, junk")
    func errorBodies() {
        func parse(_ s: String) -> ErrorBody { ErrorBody.parse(Array(s.utf8)) }
        #expect(parse(#"{"error_code":"IOTDA.014016","error_msg":"not found"}"#) == ErrorBody(code: "IOTDA.014016", message: "not found"))
        #expect(parse(#" { "code" : 123 , "message" : "x\"y\u00e9\n" } "#) == ErrorBody(code: "123", message: "x\"yé\n"))
        #expect(parse(#"{"error":{"code":"401","message":"The request you have made requires authentication.","title":"Unauthorized"}}"#)
            == ErrorBody(code: "401", message: "The request you have made requires authentication."))
        #expect(parse(#"{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information","request_id":"abc"}"#)
            == ErrorBody(code: "APIGW.0301", message: "Incorrect IAM authentication information", requestID: "abc"))
        #expect(parse(#"{"details":[{"code":"inner"}],"nested":{"error_code":"no"},"error_code":"top"}"#).code == "top")
        #expect(parse(#"{"error_msg":"\ud83d\ude00"}"#).message == "😀")
        #expect(parse("<html><body>502 Bad Gateway</body></html>") == ErrorBody())
        #expect(parse("") == ErrorBody())
        #expect(parse(#"{"error_code":"IOTDA.1","error_msg":"trunc"#).code == "IOTDA.1")
        #expect(parse(String(repeating: "[", count: 10_000)) == ErrorBody())
        #expect(parse("{" + String(repeating: #""a":{"#, count: 100)) == ErrorBody())
    }

    @Test("Retry-After: delta-seconds and the three HTTP-date forms")
    func retryAfter() {
        let now = Date(timeIntervalSince1970: 784_111_777)  // Sun, 06 Nov 1994 08:49:37 GMT
        #expect(RetryAfter.parse("120", now: now) == .seconds(120))
        #expect(RetryAfter.parse(" 0 ", now: now) == .zero)
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:49:47 GMT", now: now) == .seconds(10))
        #expect(RetryAfter.parse("Sunday, 06-Nov-94 08:50:37 GMT", now: now) == .seconds(60))
        #expect(RetryAfter.parse("Sun Nov  6 08:49:38 1994", now: now) == .seconds(1))
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:00:00 GMT", now: now) == .zero)
        #expect(RetryAfter.parseHTTPDate("Thu, 01 Jan 1970 00:00:00 GMT") == Date(timeIntervalSince1970: 0))
        #expect(RetryAfter.parseHTTPDate("Tue, 29 Feb 2028 23:59:59 GMT") == Date(timeIntervalSince1970: 1_835_481_599))
        #expect(RetryAfter.parse("-5", now: now) == nil)
        #expect(RetryAfter.parse("1.5", now: now) == nil)
        #expect(RetryAfter.parse("soon", now: now) == nil)
        #expect(RetryAfter.parse("", now: now) == nil)
        #expect(RetryAfter.parse("99999999999999999999", now: now) != nil)
    }

    @Test("classification of statuses")
    func classification() {
        let expected: [Int: DeleteClassification] = [
            200: .deleted, 202: .deleted, 204: .deleted, 404: .notFound, 403: .forbidden, 401: .authRefused,
            400: .rejected, 405: .rejected, 409: .rejected, 422: .rejected, 408: .retryable, 429: .retryable,
            500: .retryable, 503: .retryable, 599: .retryable, 100: .rejected, 301: .rejected, 304: .rejected,
        ]
        for (status, classification) in expected {
            #expect(DeleteClassification(httpStatus: status) == classification, "\(status)")
        }
        #expect(Delivery.notSent.rawValue == "not_sent")
    }
}
