import FoundationEssentials
import Synchronization

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

    /// The fields of `date`, down to the whole seconds of its `timeIntervalSince1970` (rounded
    /// towards the past, as every caller rounds them).
    ///
    /// The calendar names the day; the time of day is the seconds since the day began (a UTC
    /// day has 86,400 of them: `Date` counts no leap seconds). Timestamps come a few a
    /// request, nearly all on the same day, so the day's fields are kept: asking the calendar
    /// costs about as much as signing a request.
    package static func fields(of date: Date) -> Fields {
        let interval = date.timeIntervalSince1970
        // Outside the years 1600 to 9999 (or not a number) the calendar alone decides: it has
        // its own limits far out, and no conversion here can trap.
        guard interval >= -11_676_096_000, interval < 253_402_300_800 else { return calendarFields(of: date) }
        let seconds = Int64(interval.rounded(.down))
        let day = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = Int(seconds - day * 86_400)
        var fields = lastDay.withLock { last in
            if let last, last.day == day { return last.fields }
            let fields = calendarFields(of: Date(timeIntervalSince1970: Double(day * 86_400)))
            last = (day, fields)
            return fields
        }
        fields.hour = secondOfDay / 3_600
        fields.minute = secondOfDay % 3_600 / 60
        fields.second = secondOfDay % 60
        return fields
    }

    /// The day `fields(of:)` was last asked about: days since 1970, and its date.
    private static let lastDay = Mutex<(day: Int64, fields: Fields)?>(nil)

    /// The calendar's own answer (``fields(of:)`` asks it once a day).
    package static func calendarFields(of date: Date) -> Fields {
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
