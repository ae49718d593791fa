// Text helpers for header names and values: ASCII lower-casing and white-space trimming as the
// signer (and the formats it reads) need them.

/// Lower-cases ASCII letters only, as header names need (and cheaper than `lowercased()`).
/// Returns `s` itself when it has no upper-case letter.
package func asciiLowercased(_ s: String) -> String {
    guard s.utf8.contains(where: isASCIIUppercase) else { return s }
    return String(unsafeUninitializedCapacity: s.utf8.count) { buffer in
        let (_, count) = buffer.initialize(from: s.utf8)
        for index in 0..<count where isASCIIUppercase(buffer[index]) {
            buffer[index] |= 0x20
        }
        return count
    }
}

@inline(__always)
private func isASCIIUppercase(_ byte: UInt8) -> Bool {
    byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")
}

/// Trims Unicode white space at both ends, as Go's `strings.TrimSpace` does.
package func trimmedWhitespace<S: StringProtocol>(_ s: S) -> String {
    let range = rangeTrimmingWhitespace(s)
    return range == s.startIndex..<s.endIndex ? String(s) : String(s[range])
}

/// `s` without the Unicode white space at either end, as a slice of `s`: nothing is copied.
package func trimmingWhitespace(_ s: Substring) -> Substring {
    // The usual header value: printable ASCII at both ends, nothing to trim.
    if let first = s.utf8.first, let last = s.utf8.last, isPrintableASCII(first), isPrintableASCII(last) {
        return s
    }
    return s[rangeTrimmingWhitespace(s)]
}

/// Whether `byte` is printable ASCII other than space (`!` through `~`).
@inline(__always)
private func isPrintableASCII(_ byte: UInt8) -> Bool {
    byte >= 0x21 && byte <= 0x7E
}

/// The range of `s` left when the Unicode white space at both ends (Go's `strings.TrimSpace`)
/// is removed. Only the scalars at the ends are looked at.
private func rangeTrimmingWhitespace<S: StringProtocol>(_ s: S) -> Range<String.Index> {
    let scalars = s.unicodeScalars
    var start = scalars.startIndex
    var end = scalars.endIndex
    while start < end, isWhitespace(scalars[start]) {
        scalars.formIndex(after: &start)
    }
    while start < end {
        let last = scalars.index(before: end)
        guard isWhitespace(scalars[last]) else { break }
        end = last
    }
    return start..<end
}

/// Whether `scalar` has the Unicode White_Space property, as Go's `unicode.IsSpace` asks.
/// ASCII, nearly everything a header or a configuration file has, is answered without the
/// Unicode property tables.
@inline(__always)
private func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
    scalar.isASCII ? isASCIIWhitespace(UInt8(truncatingIfNeeded: scalar.value)) : scalar.properties.isWhitespace
}

/// Whether `byte` is an ASCII white-space character: `\t`, `\n`, `\v`, `\f`, `\r` or space,
/// the only ASCII characters with the Unicode White_Space property.
@inline(__always)
package func isASCIIWhitespace(_ byte: UInt8) -> Bool {
    byte == UInt8(ascii: " ") || (byte >= 0x09 && byte <= 0x0D)
}

/// The decimal number that `bytes[range]` spells with ASCII digits alone, or nil when the range
/// runs past the bytes or holds anything else. For the fixed-width fields of dates and times:
/// at most 18 digits, so it cannot overflow.
package func asciiDecimal(_ bytes: [UInt8], _ range: Range<Int>) -> Int? {
    guard range.lowerBound >= 0, range.upperBound <= bytes.count, range.count <= 18 else { return nil }
    var value = 0
    for byte in bytes[range] {
        guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
        value = value * 10 + Int(byte - UInt8(ascii: "0"))
    }
    return value
}
