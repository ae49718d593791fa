import Crypto
import Synchronization
import FoundationEssentials

/// A header whose name has been lower-cased (ASCII letters only), so that it is matched against
/// signed header names without lower-casing it again for every lookup.
package struct LowercasedHeader: Sendable {
    package var name: String
    package var value: String

    /// `headers` with their names lower-cased once, in the same order.
    package static func lowercasing(_ headers: [(String, String)]) -> [LowercasedHeader] {
        headers.map { LowercasedHeader(name: asciiLowercased($0.0), value: $0.1) }
    }
}

/// Writes a canonical request into one byte buffer:
/// `METHOD \n URI \n QUERY \n HEADER-LINES \n \n SIGNED-HEADERS \n hex(SHA-256(body))`.
///
/// ``start(method:)`` writes `METHOD \n`; the caller appends `URI \n QUERY` (with
/// ``PercentEncoding``); ``finish(_:signedHeaders:headers:body:)`` writes the rest.
package enum CanonicalRequest {
    package static let newline = UInt8(ascii: "\n")

    /// Room for a typical request, so that the buffer is allocated once.
    private static let typicalCapacity = 512

    /// hex(SHA-256("")), the body hash of every request without a body.
    private static let emptyBodyHash: [UInt8] = {
        var hex: [UInt8] = []
        SHA256.hash(data: [UInt8]()).withUnsafeBytes { appendLowerHex($0, to: &hex) }
        return hex
    }()

    package static func start(method: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(typicalCapacity)
        bytes.appendUTF8(method)
        bytes.append(newline)
        return bytes
    }

    /// Appends `\n HEADER-LINES \n \n SIGNED-HEADERS \n hex(SHA-256(body))`: a `name:value` line
    /// for each value of each name in `signedHeaders` (in the order given; values of one name
    /// sorted by their UTF-8 bytes, then trimmed), the names joined by `;`, and the body hash.
    package static func finish(
        _ bytes: inout [UInt8], signedHeaders: [String], headers: [LowercasedHeader], body: [UInt8]
    ) {
        bytes.append(newline)
        appendHeaderLines(signedHeaders, from: headers, to: &bytes)
        bytes.append(newline)
        bytes.append(newline)
        appendJoined(signedHeaders, to: &bytes)
        bytes.append(newline)
        if body.isEmpty {
            bytes.append(contentsOf: emptyBodyHash)
        } else {
            SHA256.hash(data: body).withUnsafeBytes { appendLowerHex($0, to: &bytes) }
        }
    }

    /// The header lines, separated (not terminated) by `\n`. A name no header has contributes
    /// no line; one several headers have contributes a line per value, values sorted.
    private static func appendHeaderLines(
        _ names: [String], from headers: [LowercasedHeader], to bytes: inout [UInt8]
    ) {
        var isFirstLine = true
        func appendLine(_ name: String, _ value: String) {
            if !isFirstLine { bytes.append(newline) }
            isFirstLine = false
            bytes.appendUTF8(name)
            bytes.append(UInt8(ascii: ":"))
            bytes.appendUTF8(trimmingWhitespace(value[...]))
        }
        for name in names {
            // Nearly always exactly one header has the name: write it without collecting.
            var matches = 0
            var firstMatch = 0
            for index in headers.indices where headers[index].name == name {
                if matches == 0 { firstMatch = index }
                matches += 1
            }
            if matches == 1 {
                appendLine(name, headers[firstMatch].value)
            } else if matches > 1 {
                let values = headers[firstMatch...].filter { $0.name == name }.map(\.value)
                for value in values.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                    appendLine(name, value)
                }
            }
        }
    }

    /// `names` joined by `;`.
    static func appendJoined(_ names: [String], to bytes: inout [UInt8]) {
        for (index, name) in names.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ";")) }
            bytes.appendUTF8(name)
        }
    }
}
