/// The interesting fields of an error response body.
///
/// IoTDA answers `{"error_code":"IOTDA.014016","error_msg":"..."}`, API Gateway the same plus
/// `request_id`, some services `{"code":..,"message":..}`, and IAM
/// `{"error":{"code":..,"message":..}}`. Anything else (HTML from a proxy, truncated JSON, an
/// empty body) yields empty fields rather than an error. A small scanner, not `JSONSerialization`:
/// it runs for every non-2xx response.
public struct ErrorBody: Sendable, Hashable {
    public var code: String?
    public var message: String?
    /// The body's `request_id` (API Gateway), used when there is no `X-Request-Id` header.
    public var requestID: String?

    public init(code: String? = nil, message: String? = nil, requestID: String? = nil) {
        self.code = code
        self.message = message
        self.requestID = requestID
    }

    /// Longest field kept; longer values are cut (they only go to the audit log).
    public static let maxFieldLength = 1024

    public static func parse(_ bytes: [UInt8]) -> ErrorBody {
        var parser = Parser(bytes: bytes)
        parser.skipWhitespace()
        guard parser.peek == UInt8(ascii: "{") else { return ErrorBody() }
        var fields = Fields()
        _ = parser.object(depth: 0, into: &fields)
        var body = ErrorBody(
            code: fields.errorCode ?? fields.code ?? fields.nested?.errorCode ?? fields.nested?.code,
            message: fields.errorMsg ?? fields.message ?? fields.nested?.errorMsg ?? fields.nested?.message,
            requestID: fields.requestID
        )
        body.code = body.code.map(clip)
        body.message = body.message.map(clip)
        body.requestID = body.requestID.map(clip)
        return body
    }

    private static func clip(_ s: String) -> String {
        s.utf8.count <= maxFieldLength ? s : String(decoding: s.utf8.prefix(maxFieldLength), as: UTF8.self)
    }

    private struct Nested {
        var errorCode: String?
        var code: String?
        var errorMsg: String?
        var message: String?
    }

    private struct Fields {
        var errorCode: String?
        var code: String?
        var errorMsg: String?
        var message: String?
        var requestID: String?
        var nested: Nested?
    }

    private enum Scalar {
        case string(String)
        case number(String)
        case other
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0
        static let maxDepth = 32

        init(bytes: [UInt8]) { self.bytes = bytes }

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while let b = peek, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { index += 1 }
        }

        /// Parses an object at `index`; records known keys when `depth` is 0 (top level) or 1
        /// under `error`. Returns false on malformed input (fields read so far are kept).
        mutating func object(depth: Int, into fields: inout Fields) -> Bool {
            guard peek == UInt8(ascii: "{"), depth < Self.maxDepth else { return false }
            index += 1
            skipWhitespace()
            if peek == UInt8(ascii: "}") { index += 1; return true }
            while true {
                skipWhitespace()
                guard let key = string() else { return false }
                skipWhitespace()
                guard peek == UInt8(ascii: ":") else { return false }
                index += 1
                skipWhitespace()
                if depth == 0, key == "error", peek == UInt8(ascii: "{") {
                    var inner = Fields()
                    guard object(depth: depth + 1, into: &inner) else {
                        fields.nested = Nested(errorCode: inner.errorCode, code: inner.code, errorMsg: inner.errorMsg, message: inner.message)
                        return false
                    }
                    fields.nested = Nested(errorCode: inner.errorCode, code: inner.code, errorMsg: inner.errorMsg, message: inner.message)
                } else if depth <= 1, ["error_code", "code", "error_msg", "message", "error_message", "request_id"].contains(key) {
                    guard let value = scalarOrSkip(depth: depth + 1) else { return false }
                    let text: String?
                    switch value {
                    case .string(let s), .number(let s): text = s
                    case .other: text = nil
                    }
                    switch key {
                    case "error_code": fields.errorCode = fields.errorCode ?? text
                    case "code": fields.code = fields.code ?? text
                    case "error_msg", "error_message": fields.errorMsg = fields.errorMsg ?? text
                    case "message": fields.message = fields.message ?? text
                    default: if depth == 0 { fields.requestID = fields.requestID ?? text }
                    }
                } else {
                    guard skipValue(depth: depth + 1) else { return false }
                }
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"): index += 1; return true
                default: return false
                }
            }
        }

        mutating func scalarOrSkip(depth: Int) -> Scalar? {
            guard let first = peek else { return nil }
            switch first {
            case UInt8(ascii: "\""):
                return string().map(Scalar.string)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                let start = index
                while let b = peek, b == UInt8(ascii: "-") || b == UInt8(ascii: "+") || b == UInt8(ascii: ".")
                    || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") || (b >= 0x30 && b <= 0x39)
                {
                    index += 1
                }
                return .number(String(decoding: bytes[start..<index], as: UTF8.self))
            default:
                return skipValue(depth: depth) ? .other : nil
            }
        }

        mutating func skipValue(depth: Int) -> Bool {
            guard depth < Self.maxDepth, let b = peek else { return false }
            switch b {
            case UInt8(ascii: "\""):
                return string() != nil
            case UInt8(ascii: "{"):
                var ignored = Fields()
                return object(depth: depth + 1, into: &ignored)
            case UInt8(ascii: "["):
                index += 1
                skipWhitespace()
                if peek == UInt8(ascii: "]") { index += 1; return true }
                while true {
                    skipWhitespace()
                    guard skipValue(depth: depth + 1) else { return false }
                    skipWhitespace()
                    switch peek {
                    case UInt8(ascii: ","): index += 1
                    case UInt8(ascii: "]"): index += 1; return true
                    default: return false
                    }
                }
            default:
                // number, true, false, null
                let start = index
                while let c = peek, c != UInt8(ascii: ","), c != UInt8(ascii: "}"), c != UInt8(ascii: "]"),
                    c != 0x20, c != 0x09, c != 0x0A, c != 0x0D
                {
                    index += 1
                }
                return index > start
            }
        }

        /// A JSON string at `index`, unescaped.
        mutating func string() -> String? {
            guard peek == UInt8(ascii: "\"") else { return nil }
            index += 1
            let start = index
            // Fast path: no escapes.
            while let b = peek, b != UInt8(ascii: "\""), b != UInt8(ascii: "\\") { index += 1 }
            guard let stop = peek else { return nil }
            if stop == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: bytes[start..<index - 1], as: UTF8.self)
            }
            var out = Array(bytes[start..<index])
            while let b = peek {
                index += 1
                switch b {
                case UInt8(ascii: "\""):
                    return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let e = peek else { return nil }
                    index += 1
                    switch e {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "u"):
                        guard var scalar = hex4() else { return nil }
                        if (0xD800..<0xDC00).contains(scalar), peek == UInt8(ascii: "\\"),
                            index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u")
                        {
                            let save = index
                            index += 2
                            if let low = hex4(), (0xDC00..<0xE000).contains(low) {
                                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                index = save
                            }
                        }
                        let unicode = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                        out.append(contentsOf: Array(String(Character(unicode)).utf8))
                    default: out.append(e)  // \" \\ \/ and anything unknown, leniently
                    }
                default:
                    out.append(b)
                }
            }
            return nil
        }

        mutating func hex4() -> UInt32? {
            guard bytes.count - index >= 4 else { return nil }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[index]
                let digit: UInt8
                switch c {
                case 0x30...0x39: digit = c - 0x30
                case 0x41...0x46: digit = c - 0x41 + 10
                case 0x61...0x66: digit = c - 0x61 + 10
                default: return nil
                }
                value = value << 4 | UInt32(digit)
                index += 1
            }
            return value
        }
    }
}
