/// Reads the list format of `enqueue`'s standard input.
public enum IDList {
    /// Lines with their 1-based numbers; blank and `#` lines skipped, whitespace trimmed.
    public static func parse(_ bytes: [UInt8]) -> [(id: String, line: Int)] {
        bytes.withUnsafeBytes { buffer in
            var result: [(id: String, line: Int)] = []
            result.reserveCapacity(bytes.count / 24)
            for entry in Lines(buffer) {
                result.append(entry)
            }
            return result
        }
    }

    /// The entries of a list in memory, read as they are iterated: each ID (trimmed) with its
    /// 1-based line number; blank lines and `#` lines skipped. Valid while `bytes` is.
    public struct Lines: Sequence {
        public let bytes: UnsafeRawBufferPointer

        public init(_ bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
        }

        /// How many lines the list has (a last line without a newline counts).
        public var lineCount: Int {
            var count = 0
            for byte in bytes where byte == UInt8(ascii: "\n") { count += 1 }
            if let last = bytes.last, last != UInt8(ascii: "\n") { count += 1 }
            return count
        }

        public func makeIterator() -> Iterator {
            Iterator(bytes: bytes)
        }

        public struct Iterator: IteratorProtocol {
            let bytes: UnsafeRawBufferPointer
            var start = 0
            var line = 0

            public mutating func next() -> (id: String, line: Int)? {
                while start < bytes.count {
                    var end = start
                    while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
                    line += 1
                    var low = start, high = end
                    start = end + 1
                    while low < high, isSpace(bytes[low]) { low += 1 }
                    while high > low, isSpace(bytes[high - 1]) { high -= 1 }
                    guard low < high, bytes[low] != UInt8(ascii: "#") else { continue }
                    return (String(decoding: UnsafeRawBufferPointer(rebasing: bytes[low..<high]), as: UTF8.self), line)
                }
                return nil
            }
        }
    }

    /// An ID given as an argument, trimmed as a line of the list is.
    public static func trimmed(_ id: String) -> String {
        let bytes = Array(id.utf8)
        var low = 0, high = bytes.count
        while low < high, isSpace(bytes[low]) { low += 1 }
        while high > low, isSpace(bytes[high - 1]) { high -= 1 }
        return low == 0 && high == bytes.count ? id : String(decoding: bytes[low..<high], as: UTF8.self)
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
            || byte == 0x0B || byte == 0x0C
    }

    /// The ID in quotes, with control and non-ASCII characters escaped so the terminal shows them.
    public static func quoted(_ id: String) -> String {
        var text = "\""
        for scalar in id.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F || !scalar.isASCII:
                text += "\\u{\(String(scalar.value, radix: 16))}"
            default: text.unicodeScalars.append(scalar)
            }
        }
        return text + "\""
    }
}
