/// Reads the list format of `enqueue`'s standard input.
public enum IDList {
    /// Lines with their 1-based numbers; blank and `#` lines skipped, whitespace trimmed.
    public static func parse(_ bytes: [UInt8]) -> [(id: String, line: Int)] {
        var result: [(id: String, line: Int)] = []
        result.reserveCapacity(bytes.count / 24)
        var line = 0
        var start = 0
        bytes.withUnsafeBufferPointer { buffer in
            func take(_ end: Int) {
                line += 1
                var low = start, high = end
                while low < high, isSpace(buffer[low]) { low += 1 }
                while high > low, isSpace(buffer[high - 1]) { high -= 1 }
                guard low < high, buffer[low] != UInt8(ascii: "#") else { return }
                result.append((String(decoding: UnsafeBufferPointer(rebasing: buffer[low..<high]), as: UTF8.self), line))
            }
            for index in 0..<buffer.count where buffer[index] == UInt8(ascii: "\n") {
                take(index)
                start = index + 1
            }
            if start < buffer.count { take(buffer.count) }
        }
        return result
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
