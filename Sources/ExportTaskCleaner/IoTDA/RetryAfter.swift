import FoundationEssentials

/// Parses `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date.
///
/// Hand-written rather than through `DateFormatter`: it runs on the response path, and the
/// three date formats HTTP allows are fixed-width enough to read directly.
public enum RetryAfter {
    /// The wait a `Retry-After` value asks for, relative to `now` (for an HTTP-date); `nil` when
    /// the value is neither form. A date in the past means no wait (`.zero`).
    public static func parse(_ value: String, now: Date) -> Duration? {
        var utf8 = Array(value.utf8)
        trim(&utf8)
        guard !utf8.isEmpty else { return nil }
        if utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
            // Cap absurd values instead of overflowing: 10 digits are more than 300 years.
            guard utf8.count <= 10 else { return .seconds(9_999_999_999) }
            var seconds: Int64 = 0
            for digit in utf8 { seconds = seconds * 10 + Int64(digit - UInt8(ascii: "0")) }
            return .seconds(seconds)
        }
        guard let date = parseHTTPDate(utf8) else { return nil }
        let delta = date.timeIntervalSince(now)
        guard delta > 0 else { return .zero }
        return .milliseconds(Int64((delta * 1000).rounded(.up)))
    }

    /// An HTTP-date in any of the three forms RFC 9110 requires recipients to accept:
    /// IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`,
    /// asctime `Sun Nov  6 08:49:37 1994`.
    public static func parseHTTPDate(_ value: String) -> Date? {
        var utf8 = Array(value.utf8)
        trim(&utf8)
        return parseHTTPDate(utf8)
    }

    private static func trim(_ bytes: inout [UInt8]) {
        while let last = bytes.last, last == 0x20 || last == 0x09 { bytes.removeLast() }
        var start = 0
        while start < bytes.count, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        if start > 0 { bytes.removeFirst(start) }
    }

    private static func parseHTTPDate(_ s: [UInt8]) -> Date? {
        var scanner = Scanner(bytes: s)
        // Day name, then either ',' (IMF-fixdate, RFC 850) or ' ' (asctime).
        guard scanner.skipLetters() >= 3 else { return nil }
        if scanner.consume(UInt8(ascii: ",")) {
            scanner.skipSpaces()
            guard let day = scanner.number(maxDigits: 2) else { return nil }
            let dashed = scanner.consume(UInt8(ascii: "-"))
            if !dashed { scanner.skipSpaces() }
            guard let month = scanner.month() else { return nil }
            if dashed { guard scanner.consume(UInt8(ascii: "-")) else { return nil } } else { scanner.skipSpaces() }
            guard var year = scanner.number(maxDigits: 4) else { return nil }
            if dashed, year < 100 {
                // RFC 850 two-digit year: RFC 9110 says a year more than 50 years ahead is in the past.
                year += year < 70 ? 2000 : 1900
            }
            scanner.skipSpaces()
            guard let time = scanner.time() else { return nil }
            scanner.skipSpaces()
            guard scanner.consumeWord("GMT") || scanner.consumeWord("UTC") else { return nil }
            return makeDate(year: year, month: month, day: day, time: time)
        } else {
            scanner.skipSpaces()
            guard let month = scanner.month() else { return nil }
            scanner.skipSpaces()
            guard let day = scanner.number(maxDigits: 2) else { return nil }
            scanner.skipSpaces()
            guard let time = scanner.time() else { return nil }
            scanner.skipSpaces()
            guard let year = scanner.number(maxDigits: 4) else { return nil }
            return makeDate(year: year, month: month, day: day, time: time)
        }
    }

    private static func makeDate(year: Int, month: Int, day: Int, time: (Int, Int, Int)) -> Date? {
        UTCCalendar.date(.init(year: year, month: month, day: day, hour: time.0, minute: time.1, second: time.2))
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func skipLetters() -> Int {
            let start = index
            while index < bytes.count, isLetter(bytes[index]) { index += 1 }
            return index - start
        }

        mutating func skipSpaces() {
            while index < bytes.count, bytes[index] == 0x20 { index += 1 }
        }

        mutating func consume(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        mutating func consumeWord(_ word: String) -> Bool {
            let w = Array(word.utf8)
            guard bytes.count - index >= w.count, Array(bytes[index..<index + w.count]) == w else { return false }
            index += w.count
            return true
        }

        mutating func number(maxDigits: Int) -> Int? {
            var value = 0
            var digits = 0
            while index < bytes.count, digits < maxDigits, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                value = value * 10 + Int(bytes[index] - 0x30)
                index += 1
                digits += 1
            }
            return digits == 0 ? nil : value
        }

        mutating func time() -> (Int, Int, Int)? {
            guard let h = number(maxDigits: 2), consume(UInt8(ascii: ":")),
                let m = number(maxDigits: 2), consume(UInt8(ascii: ":")),
                let s = number(maxDigits: 2)
            else { return nil }
            return (h, m, s)
        }

        mutating func month() -> Int? {
            guard bytes.count - index >= 3 else { return nil }
            let name = (bytes[index] | 0x20, bytes[index + 1] | 0x20, bytes[index + 2] | 0x20)
            let months: [(UInt8, UInt8, UInt8)] = [
                (0x6A, 0x61, 0x6E), (0x66, 0x65, 0x62), (0x6D, 0x61, 0x72), (0x61, 0x70, 0x72),
                (0x6D, 0x61, 0x79), (0x6A, 0x75, 0x6E), (0x6A, 0x75, 0x6C), (0x61, 0x75, 0x67),
                (0x73, 0x65, 0x70), (0x6F, 0x63, 0x74), (0x6E, 0x6F, 0x76), (0x64, 0x65, 0x63),
            ]
            guard let i = months.firstIndex(where: { $0 == name }) else { return nil }
            index += 3
            return i + 1
        }

        private func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A }
    }
}
