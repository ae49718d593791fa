import FoundationEssentials

/// A signing time in whole UTC seconds (fields from ``UTCCalendar``, digits written by hand: the
/// signer runs per request): `20060102T150405Z` for `X-Sdk-Date`, `20060102` for a derived key's
/// scope.
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
        func number(_ range: Range<Int>) -> Int64? { asciiDecimal(bytes, range).map(Int64.init) }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
              let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15),
              let date = UTCCalendar.date(.init(year: Int(year), month: Int(month), day: Int(day),
                                                hour: Int(hour), minute: Int(minute), second: Int(second)))
        else { return nil }
        secondsSince1970 = Int64(date.timeIntervalSince1970)
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
        let fields = UTCCalendar.fields(of: date)
        Self.appendDay(fields, to: &bytes)
        bytes.append(UInt8(ascii: "T"))
        Self.appendDigits(Int64(fields.hour), width: 2, to: &bytes)
        Self.appendDigits(Int64(fields.minute), width: 2, to: &bytes)
        Self.appendDigits(Int64(fields.second), width: 2, to: &bytes)
        bytes.append(UInt8(ascii: "Z"))
    }

    /// Appends ``dayFormat``'s UTF-8.
    func appendDayFormat(to bytes: inout [UInt8]) {
        Self.appendDay(UTCCalendar.fields(of: date), to: &bytes)
    }

    private static func appendDay(_ fields: UTCCalendar.Fields, to bytes: inout [UInt8]) {
        appendDigits(Int64(fields.year), width: 4, to: &bytes)
        appendDigits(Int64(fields.month), width: 2, to: &bytes)
        appendDigits(Int64(fields.day), width: 2, to: &bytes)
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
