import FoundationEssentials

extension AuditFilter {
    /// An age may go back this far at most: a hundred years of 365.25 days (36,525 days), so no
    /// arithmetic on it overflows (docs/commands.md, "Commands": `audit --since`).
    public static let longestAge: Double = 36_525 * 86_400

    /// `audit --since`: ISO 8601 (`2026-11-29`, `2026-11-29T15:00:00Z`; a day that does not
    /// exist is refused) or an age (`90s`, `15m`, `2h`, `7d`; at most 100 years). Nil when
    /// `text` is neither, or an age beyond 100 years (``sinceProblem(_:)`` says which).
    public static func since(_ text: String, now: Date) -> Date? {
        if let date = Timestamp.parse(text) { return date }
        guard let seconds = age(text), seconds <= longestAge else { return nil }
        return now.addingTimeInterval(-seconds)
    }

    /// Why `since` refused `text`, for the error message.
    public static func sinceProblem(_ text: String) -> String {
        if let seconds = age(text), !(seconds <= longestAge) {
            return "an age of at most 100 years (36525d), got \(IDList.quoted(text))"
        }
        return "expected an ISO 8601 time (2026-11-29T15:00:00Z) or an age such as 15m, 2h or 7d (at most 100 years), got \(IDList.quoted(text))"
    }

    /// An age's seconds, however large (digits and a point, then `s`, `m`, `h` or `d`), or nil.
    static func age(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        let digits = text.dropLast()
        guard let unit = text.last.flatMap({ units[$0] }), !digits.isEmpty,
              digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let amount = Double(digits)
        else { return nil }
        return amount * unit
    }
}
