import FoundationEssentials

/// A signing time in whole UTC seconds, formatted without `DateFormatter` (the signer runs per
/// request): `20060102T150405Z` for `X-Sdk-Date`, `20060102` for a derived key's scope.
package struct SigningDate: Sendable, Equatable {
    /// Seconds since 1970-01-01T00:00:00Z.
    package var secondsSince1970: Int64

    package init(_ date: Date) {
        secondsSince1970 = Int64(date.timeIntervalSince1970.rounded(.down))
    }

    package init(secondsSince1970: Int64) {
        self.secondsSince1970 = secondsSince1970
    }

    /// Parses exactly `YYYYMMDDTHHMMSSZ`; nil for anything else, including impossible dates.
    package init?(basicFormat text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count == 16, bytes[8] == UInt8(ascii: "T"), bytes[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var value: Int64 = 0
            for byte in bytes[range] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int64(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
              let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15),
              (1...12).contains(month), (1...Self.daysIn(month: month, year: year)).contains(day),
              hour < 24, minute < 60, second < 60
        else { return nil }
        let days = Self.daysFromCivil(year: year, month: month, day: day)
        secondsSince1970 = days * 86_400 + hour * 3_600 + minute * 60 + second
    }

    package var date: Date { Date(timeIntervalSince1970: TimeInterval(secondsSince1970)) }

    /// `YYYYMMDDTHHMMSSZ`.
    package var basicFormat: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        appendBasicFormat(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `YYYYMMDD`.
    package var dayFormat: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8)
        appendDayFormat(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whole days since 1970-01-01: what a derived key's scope changes with.
    package var dayNumber: Int64 { Self.floorDivide(secondsSince1970, 86_400) }

    /// Appends ``basicFormat``'s UTF-8.
    func appendBasicFormat(to bytes: inout [UInt8]) {
        appendDayFormat(to: &bytes)
        let secondOfDay = secondsSince1970 - dayNumber * 86_400
        bytes.append(UInt8(ascii: "T"))
        Self.appendDigits(secondOfDay / 3_600, width: 2, to: &bytes)
        Self.appendDigits(secondOfDay % 3_600 / 60, width: 2, to: &bytes)
        Self.appendDigits(secondOfDay % 60, width: 2, to: &bytes)
        bytes.append(UInt8(ascii: "Z"))
    }

    /// Appends ``dayFormat``'s UTF-8.
    func appendDayFormat(to bytes: inout [UInt8]) {
        let (year, month, day) = civil
        Self.appendDigits(year, width: 4, to: &bytes)
        Self.appendDigits(month, width: 2, to: &bytes)
        Self.appendDigits(day, width: 2, to: &bytes)
    }

    /// The UTC calendar date (Howard Hinnant's `civil_from_days`).
    private var civil: (year: Int64, month: Int64, day: Int64) {
        let z = Self.floorDivide(secondsSince1970, 86_400) + 719_468
        let era = Self.floorDivide(z, 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    private static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDivide(y, 400)
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    private static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
        a >= 0 ? a / b : (a - b + 1) / b
    }

    /// Appends `value` in decimal, padded with zeros on the left to `width` digits.
    private static func appendDigits(_ value: Int64, width: Int, to bytes: inout [UInt8]) {
        // Every field of a date in the years 0 to 9999 fills its width exactly.
        switch width {
        case 2 where (0..<100).contains(value):
            bytes.append(UInt8(ascii: "0") + UInt8(value / 10))
            bytes.append(UInt8(ascii: "0") + UInt8(value % 10))
        case 4 where (0..<10_000).contains(value):
            bytes.append(UInt8(ascii: "0") + UInt8(value / 1_000))
            bytes.append(UInt8(ascii: "0") + UInt8(value / 100 % 10))
            bytes.append(UInt8(ascii: "0") + UInt8(value / 10 % 10))
            bytes.append(UInt8(ascii: "0") + UInt8(value % 10))
        default:
            let digits = Array(String(value).utf8)
            if digits.count < width { bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width - digits.count)) }
            bytes.append(contentsOf: digits)
        }
    }
}
