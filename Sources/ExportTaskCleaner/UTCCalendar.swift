import FoundationEssentials

/// The project's one calendar: FoundationEssentials' proleptic Gregorian `Calendar` in UTC, for
/// the database's timestamps, `X-Sdk-Date` and HTTP dates alike (no calendar arithmetic of
/// our own).
package enum UTCCalendar {
    package static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        return calendar
    }()

    /// A UTC date and time, in whole seconds.
    package struct Fields: Equatable, Sendable {
        package var year: Int
        package var month: Int
        package var day: Int
        package var hour = 0
        package var minute = 0
        package var second = 0

        package init(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0) {
            (self.year, self.month, self.day, self.hour, self.minute, self.second) = (year, month, day, hour, minute, second)
        }
    }

    /// The fields of `date`, down to whole seconds (rounded towards the past).
    package static func fields(of date: Date) -> Fields {
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return Fields(year: parts.year ?? 1970, month: parts.month ?? 1, day: parts.day ?? 1,
                      hour: parts.hour ?? 0, minute: parts.minute ?? 0, second: parts.second ?? 0)
    }

    /// The time `fields` name, or nil when they name none: February 30th, hour 24, second 60.
    package static func date(_ fields: Fields) -> Date? {
        guard (1...9999).contains(fields.year), (1...12).contains(fields.month), (1...31).contains(fields.day),
              (0..<24).contains(fields.hour), (0..<60).contains(fields.minute), (0..<60).contains(fields.second)
        else { return nil }
        let parts = DateComponents(year: fields.year, month: fields.month, day: fields.day,
                                   hour: fields.hour, minute: fields.minute, second: fields.second)
        // Calendar carries a day past the month's end into the next month: such a day does
        // not exist, so it is refused.
        guard let date = calendar.date(from: parts), self.fields(of: date) == fields else { return nil }
        return date
    }
}
