import FoundationEssentials

extension AuditFilter {
    /// An age may go back this far at most (a hundred years), so no arithmetic on it overflows.
    public static let longestAge: Double = 100 * 366 * 86_400

    /// `audit --since`: ISO 8601 (`2026-11-29`, `2026-11-29T15:00:00Z`; a day that does not
    /// exist is refused) or an age (`90s`, `15m`, `2h`, `7d`; at most 100 years). Nil when
    /// `text` is neither.
    public static func since(_ text: String, now: Date) -> Date? {
        if let date = Timestamp.parse(text) { return date }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        let digits = text.dropLast()
        guard let unit = text.last.flatMap({ units[$0] }), !digits.isEmpty,
              digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let amount = Double(digits), amount * unit <= longestAge
        else { return nil }
        return now.addingTimeInterval(-amount * unit)
    }
}
