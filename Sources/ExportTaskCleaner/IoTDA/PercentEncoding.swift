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
        var path: [UInt8] = []
        path.reserveCapacity(segments.reduce(0) { $0 + 1 + $1.utf8.count } + 16)
        for segment in segments {
            path.append(UInt8(ascii: "/"))
            appendEscaped(segment.utf8, to: &path)
        }
        return String(decoding: path, as: UTF8.self)
    }

    /// The query string to send for `pairs`, in the canonical order the signature covers:
    /// sorted by key, then value (byte order of their UTF-8), each escaped, `k=v` joined by `&`.
    public static func query(_ pairs: [(String, String)]) -> String {
        guard !pairs.isEmpty else { return "" }
        var query: [UInt8] = []
        appendCanonicalQuery(pairs.map { ($0.0.utf8, $0.1.utf8) }, to: &query)
        return String(decoding: query, as: UTF8.self)
    }

    // MARK: - Internals shared by the signer and the simulator's verifier

    /// Whether the SDKs leave `byte` as it is.
    @inline(__always)
    package static func isUnreserved(_ byte: UInt8) -> Bool {
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
    package static func escape<Bytes: Sequence<UInt8>>(bytes: Bytes) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.underestimatedCount * 3)
        appendEscaped(bytes, to: &output)
        return String(decoding: output, as: UTF8.self)
    }

    @inline(__always)
    package static func appendEscaped<Bytes: Sequence<UInt8>>(_ bytes: Bytes, to output: inout [UInt8]) {
        for byte in bytes {
            appendEscaped(byte, to: &output)
        }
    }

    @inline(__always)
    package static func appendEscaped(_ byte: UInt8, to output: inout [UInt8]) {
        if isUnreserved(byte) {
            output.append(byte)
        } else {
            output.append(UInt8(ascii: "%"))
            output.append(upperHexDigit(byte >> 4))
            output.append(upperHexDigit(byte & 0x0F))
        }
    }

    /// Appends the SDKs' canonical URI: the segments escaped and joined by `/` after a leading
    /// `/`, with a `/` added at the end unless there already is one.
    package static func appendCanonicalURI<Segments: Sequence>(segments: Segments, to output: inout [UInt8])
    where Segments.Element: Sequence<UInt8> {
        output.append(UInt8(ascii: "/"))
        var isFirst = true
        for segment in segments {
            if !isFirst { output.append(UInt8(ascii: "/")) }
            isFirst = false
            appendEscaped(segment, to: &output)
        }
        if output.last != UInt8(ascii: "/") { output.append(UInt8(ascii: "/")) }
    }

    /// Appends the SDKs' canonical query string from raw (unescaped) pairs: sorted by key, then
    /// by value, comparing bytes as Go's `sort.Strings` does; then escaped and joined.
    package static func appendCanonicalQuery<Bytes: Collection<UInt8>>(_ pairs: [(Bytes, Bytes)], to output: inout [UInt8]) {
        let sorted = pairs.sorted { lhs, rhs in
            if !lhs.0.elementsEqual(rhs.0) { return lhs.0.lexicographicallyPrecedes(rhs.0) }
            return lhs.1.lexicographicallyPrecedes(rhs.1)
        }
        for (index, pair) in sorted.enumerated() {
            if index > 0 { output.append(UInt8(ascii: "&")) }
            appendEscaped(pair.0, to: &output)
            output.append(UInt8(ascii: "="))
            appendEscaped(pair.1, to: &output)
        }
    }

    @inline(__always)
    private static func upperHexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "A") - 10 + nibble
    }
}
