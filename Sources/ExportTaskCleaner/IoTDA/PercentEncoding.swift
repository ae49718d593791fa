/// The percent-encoding of Huawei Cloud's API signing (`escape` in the official SDKs'
/// `core/auth/signer`), and the canonical forms of a path and a query built with it.
///
/// Every UTF-8 byte is written as `%XX` with upper-case hex digits, except the unreserved
/// characters `A-Z a-z 0-9 _ - ~ .`. Unlike form encoding, a space becomes `%20` (never `+`),
/// and `/`, `=`, `&` are escaped too, so one function serves path segments, query keys and
/// query values alike. Requests are sent with exactly this encoding, so the path and query on
/// the wire are the ones that were signed.
public enum PercentEncoding {
    /// Escapes `s` as the SDKs do: `"a b/é"` → `"a%20b%2F%C3%A9"`.
    public static func escape(_ s: String) -> String {
        escape(bytes: s.utf8)
    }

    /// The path to send for `segments`, each one escaped: `["v5", "iot", "a b"]` →
    /// `"/v5/iot/a%20b"`. No segment list gives `"/"`.
    public static func path(_ segments: [String]) -> String {
        guard !segments.isEmpty else { return "/" }
        var path = ""
        for segment in segments {
            path.append("/")
            path.append(escape(segment))
        }
        return path
    }

    /// The query string to send for `pairs`, in the canonical order the signature covers:
    /// sorted by key, then value (byte order of their UTF-8), each escaped, `k=v` joined by `&`.
    public static func query(_ pairs: [(String, String)]) -> String {
        canonicalQuery(pairs.map { (Array($0.0.utf8), Array($0.1.utf8)) })
    }

    /// Decodes `%XX` sequences; with `plusIsSpace` (query strings, as Go's and most servers'
    /// form decoding do) a `+` stands for a space. Nil when a `%` is not followed by two hex
    /// digits.
    public static func unescape<S: StringProtocol>(_ s: S, plusIsSpace: Bool = false) -> [UInt8]? {
        var output: [UInt8] = []
        output.reserveCapacity(s.utf8.count)
        var iterator = s.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue),
                      let low = iterator.next().flatMap(hexValue)
                else { return nil }
                output.append(high << 4 | low)
            case UInt8(ascii: "+") where plusIsSpace:
                output.append(UInt8(ascii: " "))
            default:
                output.append(byte)
            }
        }
        return output
    }

    // MARK: - Internals shared by the signer and the verifier

    /// Whether the SDKs leave `byte` as it is.
    @inline(__always)
    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "~"), UInt8(ascii: "."):
            true
        default:
            false
        }
    }

    /// Escapes raw bytes (which need not be valid UTF-8: the verifier re-escapes what it decoded).
    static func escape<Bytes: Sequence<UInt8>>(bytes: Bytes) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.underestimatedCount * 3)
        appendEscaped(bytes, to: &output)
        return String(decoding: output, as: UTF8.self)
    }

    @inline(__always)
    static func appendEscaped<Bytes: Sequence<UInt8>>(_ bytes: Bytes, to output: inout [UInt8]) {
        for byte in bytes {
            if isUnreserved(byte) {
                output.append(byte)
            } else {
                output.append(UInt8(ascii: "%"))
                output.append(upperHexDigits[Int(byte >> 4)])
                output.append(upperHexDigits[Int(byte & 0x0F)])
            }
        }
    }

    /// The SDKs' canonical URI: the segments escaped and joined by `/` after a leading `/`,
    /// with a `/` added at the end unless there already is one.
    static func canonicalURI<Segment: Sequence<UInt8>>(segments: [Segment]) -> String {
        var output: [UInt8] = [UInt8(ascii: "/")]
        for (index, segment) in segments.enumerated() {
            if index > 0 { output.append(UInt8(ascii: "/")) }
            appendEscaped(segment, to: &output)
        }
        if output.last != UInt8(ascii: "/") { output.append(UInt8(ascii: "/")) }
        return String(decoding: output, as: UTF8.self)
    }

    /// The SDKs' canonical query string from raw (unescaped) pairs: sorted by key, then by
    /// value, comparing bytes as Go's `sort.Strings` does; then escaped and joined.
    static func canonicalQuery(_ pairs: [([UInt8], [UInt8])]) -> String {
        guard !pairs.isEmpty else { return "" }
        let sorted = pairs.sorted { lhs, rhs in
            if lhs.0 != rhs.0 { return lhs.0.lexicographicallyPrecedes(rhs.0) }
            return lhs.1.lexicographicallyPrecedes(rhs.1)
        }
        var output: [UInt8] = []
        for (index, pair) in sorted.enumerated() {
            if index > 0 { output.append(UInt8(ascii: "&")) }
            appendEscaped(pair.0, to: &output)
            output.append(UInt8(ascii: "="))
            appendEscaped(pair.1, to: &output)
        }
        return String(decoding: output, as: UTF8.self)
    }

    private static let upperHexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    @inline(__always)
    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}
