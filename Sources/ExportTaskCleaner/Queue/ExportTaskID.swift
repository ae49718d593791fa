/// The rule IoTDA applies to an export task ID: 1 to 36 ASCII letters, digits, `_` or `-`.
public enum ExportTaskID {
    public static let maximumLength = 36

    public static func isValid(_ id: String) -> Bool {
        isValid(id.utf8)
    }

    public static func isValid<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Bool {
        var count = 0
        for byte in bytes {
            count += 1
            guard count <= maximumLength, isAllowed(byte) else { return false }
        }
        return count > 0
    }

    /// Why `id` is invalid, for the message shown to the user; nil when it is valid.
    public static func problem(with id: String) -> String? {
        if id.isEmpty { return "empty" }
        if id.utf8.count > maximumLength && id.utf8.allSatisfy(isAllowed) {
            return "longer than \(maximumLength) characters"
        }
        if !id.utf8.allSatisfy(isAllowed) {
            return "only letters, digits, '_' and '-' are allowed"
        }
        return nil
    }

    /// How much of an invalid ID is stored and shown: the first `recordedBytes` bytes (cut at a
    /// character boundary), then `... (N bytes in all)`.
    public static let recordedBytes = 64

    /// `id` as read from a column another tool wrote, fit for a log line or a report: bounded
    /// as ``recordable(_:)`` and with control characters escaped.
    static func shown(_ id: String) -> String {
        TextFormat.printable(recordable(id))
    }

    /// `id` as it is recorded when invalid: whole up to `recordedBytes` bytes, else cut and
    /// marked as cut.
    public static func recordable(_ id: String) -> String {
        let total = id.utf8.count
        guard total > recordedBytes else { return id }
        var prefix = ""
        for character in id {
            guard prefix.utf8.count + character.utf8.count <= recordedBytes else { break }
            prefix.append(character)
        }
        return prefix + "... (\(total) bytes in all)"
    }

    @inline(__always)
    static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }
}
