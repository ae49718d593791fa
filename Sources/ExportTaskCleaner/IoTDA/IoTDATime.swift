import FoundationEssentials

/// IoTDA's times, `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'` in UTC (`2026-11-29T15:48:43.123Z`), read
/// strictly: exactly that shape, a day and time that exist (docs/commands.md, "sweep").
public enum IoTDATime {
    public static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        guard bytes.count == 24, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
              bytes[10] == UInt8(ascii: "T"), bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
              bytes[19] == UInt8(ascii: "."), bytes[23] == UInt8(ascii: "Z")
        else { return nil }
        func number(_ range: Range<Int>) -> Int? { asciiDecimal(bytes, range) }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
              let milliseconds = number(20..<23), year >= 1600,
              let date = UTCCalendar.date(.init(year: year, month: month, day: day, hour: hour, minute: minute, second: second))
        else { return nil }
        return Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded() + Double(milliseconds) / 1000)
    }
}
