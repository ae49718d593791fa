/// Number and column formatting for the commands' output, without Foundation's locale-aware
/// formatters (the binary links FoundationEssentials only, which keeps it small).
public enum TextFormat {
    /// `value` with exactly `places` decimals, rounded half away from zero: `fixed(2.345, places: 1)` → `"2.3"`.
    public static func fixed(_ value: Double, places: Int) -> String {
        guard value.isFinite else { return "\(value)" }
        var scale = 1.0
        for _ in 0..<max(0, places) { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e15 else { return "\(value)" }
        let units = Int64(scaled)
        let sign = value < 0 && units != 0 ? "-" : ""
        let whole = units / Int64(scale)
        guard places > 0 else { return sign + String(whole) }
        let fraction = String(units % Int64(scale))
        return sign + String(whole) + "." + String(repeating: "0", count: places - fraction.count) + fraction
    }

    /// `text` without white space (Unicode's, newlines included) at either end.
    public static func trimmed<S: StringProtocol>(_ text: S) -> String {
        trimmedWhitespace(text)
    }

    /// `text` padded with spaces on the right to `width` characters (never cut).
    public static func padRight(_ text: String, to width: Int) -> String {
        text + String(repeating: " ", count: max(0, width - text.count))
    }

    /// `text` padded with spaces on the left to `width` characters (never cut).
    public static func padLeft(_ text: String, to width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }

    /// `text` as a terminal may show it: control characters (C0, DEL, C1 — escape sequences,
    /// CR, LF, tabs), line and paragraph separators and bidirectional overrides are written as
    /// `\u{1b}`, so server text or a row another tool wrote can neither move the cursor, clear
    /// the screen, nor fake a line of its own. The database keeps the raw text.
    public static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if needsEscape(scalar) {
                result.append(contentsOf: "\\u{\(String(scalar.value, radix: 16))}".unicodeScalars)
            } else {
                result.append(scalar)
            }
        }
        return String(result)
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00..<0x20, 0x7F..<0xA0, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}
