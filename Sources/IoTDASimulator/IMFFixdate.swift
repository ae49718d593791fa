import ExportTaskCleaner
import FoundationEssentials

/// Writes HTTP's preferred date form, IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`,
/// for the simulator's `Date` header. ``RetryAfter/parseHTTPDate(_:)`` reads it back.
package enum IMFFixdate {
    private static let dayNames: [StaticString] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let monthNames: [StaticString] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]

    /// The IMF-fixdate of the whole second `secondsSince1970` (years 1 to 9999).
    package static func format(secondsSince1970: Int64) -> String {
        let date = Date(timeIntervalSince1970: TimeInterval(secondsSince1970))
        let fields = UTCCalendar.fields(of: date)
        // 1970-01-01 was a Thursday (4, counting from Sunday = 0).
        let days = secondsSince1970 >= 0 ? secondsSince1970 / 86_400 : (secondsSince1970 - 86_399) / 86_400
        let weekday = Int(((days + 4) % 7 + 7) % 7)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(29)
        append(dayNames[weekday], to: &bytes)
        bytes.append(contentsOf: ", ".utf8)
        appendDigits(fields.day, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: " "))
        append(monthNames[fields.month - 1], to: &bytes)
        bytes.append(UInt8(ascii: " "))
        appendDigits(fields.year, width: 4, to: &bytes)
        bytes.append(UInt8(ascii: " "))
        appendDigits(fields.hour, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(fields.minute, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(fields.second, width: 2, to: &bytes)
        bytes.append(contentsOf: " GMT".utf8)
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func append(_ name: StaticString, to bytes: inout [UInt8]) {
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// `value` (0 or more) in decimal, zero-padded on the left to `width` digits.
    static func appendDigits(_ value: Int, width: Int, to bytes: inout [UInt8]) {
        let digits = Array(String(value).utf8)
        if digits.count < width { bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width - digits.count)) }
        bytes.append(contentsOf: digits)
    }
}

/// One connection's `Date` value, formatted again only when the second changes.
struct DateHeaderCache {
    private var second = Int64.min
    private var value = ""

    /// The `Date` value for `now`.
    mutating func value(for now: Date) -> String {
        let second = Int64(now.timeIntervalSince1970.rounded(.down))
        if second != self.second {
            self.second = second
            value = IMFFixdate.format(secondsSince1970: second)
        }
        return value
    }
}
