// Byte helpers shared by the signer, the verifier and the error-body reader: UTF-8 appends,
// splitting, and lower-case hex.

extension Array where Element == UInt8 {
    /// Appends the UTF-8 of `text`: one copy of its bytes when they are stored contiguously
    /// (always, for native strings), where `append(contentsOf: text.utf8)` may go byte by byte.
    @inline(__always)
    mutating func appendUTF8<S: StringProtocol>(_ text: S) {
        let copied: Void? = text.utf8.withContiguousStorageIfAvailable { append(contentsOf: $0) }
        if copied == nil { append(contentsOf: text.utf8) }
    }
}

extension ArraySlice where Element == UInt8 {
    /// The runs of bytes between occurrences of `separator`, empty runs included: what
    /// `split(separator: separator, omittingEmptySubsequences: false)` returns, without its
    /// cost (a closure call per byte, and a result array grown from nothing).
    package func components(separatedBy separator: UInt8) -> [ArraySlice<UInt8>] {
        var parts: [ArraySlice<UInt8>] = []
        parts.reserveCapacity(8)
        var start = startIndex
        while let end = self[start...].firstIndex(of: separator) {
            parts.append(self[start..<end])
            start = end + 1
        }
        parts.append(self[start...])
        return parts
    }
}

/// Appends `bytes` as lower-case hex digits.
package func appendLowerHex(_ bytes: UnsafeRawBufferPointer, to output: inout [UInt8]) {
    for byte in bytes {
        output.append(lowerHexDigit(byte >> 4))
        output.append(lowerHexDigit(byte & 0x0F))
    }
}

@inline(__always)
private func lowerHexDigit(_ nibble: UInt8) -> UInt8 {
    nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") - 10 + nibble
}
