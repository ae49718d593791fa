import ExportTaskCleaner

/// Percent-decoding, which only the simulator's verifier needs: it rebuilds the canonical
/// request from what went over the wire (decode each segment, then escape it again).
extension PercentEncoding {
    /// Decodes `%XX` sequences; with `plusIsSpace` (query strings, as Go's and most servers'
    /// form decoding do) a `+` stands for a space. Nil when a `%` is not followed by two hex
    /// digits.
    public static func unescape<S: StringProtocol>(_ s: S, plusIsSpace: Bool = false) -> [UInt8]? {
        unescape(bytes: s.utf8, plusIsSpace: plusIsSpace)
    }

    /// ``unescape(_:plusIsSpace:)`` on raw bytes.
    static func unescape<Bytes: Collection<UInt8>>(bytes: Bytes, plusIsSpace: Bool = false) -> [UInt8]? {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        let complete = forEachDecodedByte(of: bytes, plusIsSpace: plusIsSpace) { output.append($0) }
        return complete ? output : nil
    }

    /// Calls `body` with each byte `bytes` decode to (see ``unescape(_:plusIsSpace:)``); false
    /// when a `%` is not followed by two hex digits (`body` has then seen the bytes before it).
    @inline(__always)
    private static func forEachDecodedByte<Bytes: Sequence<UInt8>>(
        of bytes: Bytes, plusIsSpace: Bool, _ body: (UInt8) -> Void
    ) -> Bool {
        var iterator = bytes.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue),
                      let low = iterator.next().flatMap(hexValue)
                else { return false }
                body(high << 4 | low)
            case UInt8(ascii: "+") where plusIsSpace:
                body(UInt8(ascii: " "))
            default:
                body(byte)
            }
        }
        return true
    }

    /// Appends the canonical URI of a received, percent-encoded path: split at `/` (a leading
    /// `/` starts the path rather than an empty segment), each segment decoded and escaped
    /// again. False when a segment's percent-encoding is malformed.
    static func appendCanonicalURI(rawPath: [UInt8], to output: inout [UInt8]) -> Bool {
        var segments = rawPath[...].components(separatedBy: UInt8(ascii: "/"))[...]
        if segments.first?.isEmpty == true { segments.removeFirst() }
        output.append(UInt8(ascii: "/"))
        for (index, segment) in segments.enumerated() {
            if index > 0 { output.append(UInt8(ascii: "/")) }
            let decoded = forEachDecodedByte(of: segment, plusIsSpace: false) { appendEscaped($0, to: &output) }
            guard decoded else { return false }
        }
        if output.last != UInt8(ascii: "/") { output.append(UInt8(ascii: "/")) }
        return true
    }

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
