import FoundationEssentials

/// The database's time format: ISO 8601 UTC with milliseconds, `2026-11-29T15:48:43.123Z`.
///
/// This is what SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')` writes, so the defaults of rows
/// that other tools insert compare correctly, as text, with the times the service writes.
public enum Timestamp {
    /// The times the format shows: the years 1600 to 9999 (``UTCCalendar`` is Gregorian from
    /// 1582 on). `format` holds a date outside them (from arithmetic on input: an age, a
    /// server's `Retry-After`) to the nearest end, never traps; `parse` refuses one.
    public static let earliest = Date(timeIntervalSince1970: -11_676_096_000)        // 1600-01-01T00:00:00Z
    public static let latest = Date(timeIntervalSince1970: 253_402_300_799.999)      // 9999-12-31T23:59:59.999Z

    public static func format(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        let bounded = interval.isNaN ? 0 : min(max(interval, earliest.timeIntervalSince1970), latest.timeIntervalSince1970)
        let milliseconds = Int64((bounded * 1000).rounded(.down))
        let wholeSeconds = milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
        let fields = UTCCalendar.fields(of: Date(timeIntervalSince1970: Double(wholeSeconds)))
        var bytes = [UInt8](repeating: 0, count: 24)
        func put(_ value: Int, at offset: Int, digits: Int) {
            var value = value
            for index in stride(from: offset + digits - 1, through: offset, by: -1) {
                bytes[index] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            }
        }
        put(fields.year, at: 0, digits: 4)
        bytes[4] = UInt8(ascii: "-")
        put(fields.month, at: 5, digits: 2)
        bytes[7] = UInt8(ascii: "-")
        put(fields.day, at: 8, digits: 2)
        bytes[10] = UInt8(ascii: "T")
        put(fields.hour, at: 11, digits: 2)
        bytes[13] = UInt8(ascii: ":")
        put(fields.minute, at: 14, digits: 2)
        bytes[16] = UInt8(ascii: ":")
        put(fields.second, at: 17, digits: 2)
        bytes[19] = UInt8(ascii: ".")
        put(Int(milliseconds - wholeSeconds * 1000), at: 20, digits: 3)
        return String(decoding: bytes[0..<23], as: UTF8.self) + "Z"
    }

    /// Parses the database format, and the looser forms a person types:
    /// `2026-11-29`, `2026-11-29T15:48`, `2026-11-29 15:48:43`, with optional fraction and `Z`.
    public static func parse(_ text: String) -> Date? {
        let digits = Array(trimmedWhitespace(text).utf8)
        func number(_ range: Range<Int>) -> Int? { asciiDecimal(digits, range) }
        guard digits.count >= 10, digits[4] == UInt8(ascii: "-"), digits[7] == UInt8(ascii: "-"),
              let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              year >= 1600, (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var hour = 0, minute = 0, second = 0, fraction = 0.0
        var index = 10
        if index < digits.count {
            guard digits[index] == UInt8(ascii: "T") || digits[index] == UInt8(ascii: " "),
                  let h = number(11..<13), digits.count > 13, digits[13] == UInt8(ascii: ":"),
                  let m = number(14..<16), h < 24, m < 60
            else { return nil }
            hour = h; minute = m; index = 16
            if index < digits.count, digits[index] == UInt8(ascii: ":") {
                guard let s = number(17..<19), s < 60 else { return nil }
                second = s; index = 19
                if index < digits.count, digits[index] == UInt8(ascii: ".") {
                    var scale = 0.1
                    index += 1
                    while index < digits.count, let d = number(index..<(index + 1)) {
                        fraction += Double(d) * scale; scale /= 10; index += 1
                    }
                }
            }
            if index < digits.count, digits[index] == UInt8(ascii: "Z") { index += 1 }
            guard index == digits.count else { return nil }
        }
        guard let date = UTCCalendar.date(.init(year: year, month: month, day: day, hour: hour, minute: minute, second: second))
        else { return nil }
        // Whole seconds since 1970 plus the fraction, so that it parses back to exactly what
        // `format` was given.
        return Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded() + fraction)
    }
}
