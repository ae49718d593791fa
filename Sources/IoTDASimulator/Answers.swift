import NIOCore
import NIOHTTP1

/// What the simulator writes back: a status, an optional body (precomputed for the fixed
/// answers; IoTDA's JSON unless ``contentType`` says otherwise), an optional `Retry-After`.
///
/// Error bodies are shaped as IoTDA sends them, `{"error_code":"IOTDA.xxxxxx","error_msg":"..."}`.
/// `IOTDA.000006` (400), `IOTDA.021101` (429) and the shape come from IoTDA's published error
/// code list; the others are plausible stand-ins: `IOTDA.014016` for a missing export task,
/// `IOTDA.000002` for refused authentication (401, as IAM answers a bad signature),
/// `IOTDA.000003` for a forbidden operation, project or instance, `IOTDA.000001` for 5xx.
/// Unknown routes get API Gateway's `APIGW.0101`.
struct Answer: Sendable {
    /// The `Content-Type` of a body.
    enum ContentType: Sendable {
        /// IoTDA's `application/json;charset=UTF-8`.
        case iotdaJSON
        /// The metadata service's `application/json`.
        case json
        /// The metadata service's session tokens.
        case plainText

        var value: String {
            switch self {
            case .iotdaJSON: "application/json;charset=UTF-8"
            case .json: "application/json"
            case .plainText: "text/plain"
            }
        }
    }

    var status: HTTPResponseStatus
    var body: ByteBuffer?
    var retryAfterSeconds: Int?
    var contentType = ContentType.iotdaJSON

    static let deleted = Answer(status: .noContent, body: nil)

    static let notFound = error(404, "IOTDA.014016", "The export task does not exist.")
    static let forbidden = error(
        403, "IOTDA.000003", "Forbidden. The user is not authorized to perform iotda:exporttasks:delete.")
    static let badRequest = error(400, "IOTDA.000006", "Invalid input data.")
    static let routeNotFound = error(
        404, "APIGW.0101", "The API does not exist or has not been published in the environment")
    static let projectMismatch = error(
        403, "IOTDA.000003", "Forbidden. The project ID in the request does not match the credentials.")
    static let instanceMismatch = error(
        403, "IOTDA.000003", "Forbidden. The Instance-Id is missing or does not belong to this account.")
    static let rateLimited: Answer = {
        var answer = error(429, "IOTDA.021101", "Request reached the maximum rate limit.")
        answer.retryAfterSeconds = 1
        return answer
    }()

    static func tooManyRequests(retryAfterSeconds: Int) -> Answer {
        var answer = rateLimited
        answer.retryAfterSeconds = retryAfterSeconds
        return answer
    }

    static func serverError(status: Int) -> Answer {
        switch status {
        case 500: internalError
        case 503: unavailable
        default: error(status, "IOTDA.000001", "Internal server error.")
        }
    }

    private static let internalError = error(500, "IOTDA.000001", "Internal server error.")
    private static let unavailable = error(503, "IOTDA.000001", "Service temporarily unavailable.")

    static func authenticationFailed(_ reason: String) -> Answer {
        error(401, "IOTDA.000002", "Authentication failed: \(reason)")
    }

    static func error(_ status: Int, _ code: String, _ message: String) -> Answer {
        let json = "{\"error_code\":\"\(jsonEscaped(code))\",\"error_msg\":\"\(jsonEscaped(message))\"}"
        return Answer(status: HTTPResponseStatus(statusCode: status), body: ByteBuffer(string: json))
    }

    static func jsonEscaped(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

/// What to do with one request: answer (possibly later) or close the connection.
struct Decision: Sendable {
    enum Action: Sendable {
        case answer(Answer)
        /// The answer's head at once, then its body a byte every `every`.
        case drip(Answer, every: Duration)
        case drop
    }

    var action: Action
    var delay: Duration
    /// Whether the request counts in the IoTDA counters (metadata requests do not).
    var counted = true
}
