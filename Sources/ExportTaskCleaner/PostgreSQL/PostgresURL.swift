#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A PostgreSQL database named by the configuration's `database` value (issue 22):
/// `postgresql://USER@HOST[:PORT]/DBNAME[?sslmode=MODE]`, or `postgres://…`.
///
/// A subset of libpq's URI on purpose: one host (a name, an IPv4 address or a bracketed IPv6
/// one), no Unix socket, no password, and of libpq's parameters only `sslmode`. Everything else
/// is refused by name rather than ignored, so that a URL means here what it would mean to
/// `psql`, or nothing. A user is required: libpq would take the operating system's user name,
/// which is not the same when the service runs under systemd as when an operator tries the
/// URL by hand.
///
/// No error repeats any part of the URL that could be a password: none quotes the input at
/// all, except a parameter's name when it looks like one (`connect_timeout`).
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    /// How the connection is protected; libpq's meanings.
    public enum SSLMode: String, Sendable, CaseIterable {
        /// Plain TCP: a loopback or otherwise private network only.
        case disable
        /// TLS, but the server's certificate is not checked: encrypted, not authenticated.
        case require
        /// TLS with the server's certificate checked against the system's CA store and the
        /// host name. The default: libpq's own default, `prefer`, falls back to plain TCP
        /// without a word when the server offers no TLS, so a password could cross the network
        /// in the clear (SCRAM keeps the password itself, not the session); it is not offered.
        case verifyFull = "verify-full"
    }

    /// The role to log in as (percent-decoded).
    public let user: String
    /// A host name, an IPv4 address, or an IPv6 address without its brackets.
    public let host: String
    public let port: Int
    /// The database's name (percent-decoded).
    public let database: String
    public let sslMode: SSLMode

    public static let defaultPort = 5432
    /// Longer values are refused before anything else is read.
    public static let maximumLength = 2048
    /// PostgreSQL's identifiers (roles, databases) are at most NAMEDATALEN - 1 bytes; a longer
    /// one would be cut by the server and name something else.
    public static let maximumNameBytes = 63

    private static let schemes = ["postgresql://", "postgres://"]

    /// Whether a configured `database` value names a PostgreSQL database; anything else is a
    /// SQLite file's path. The scheme is matched case-insensitively, as URL schemes are.
    public static func isPostgres(_ value: String) -> Bool {
        schemeLength(Array(value.utf8.prefix(16))) != nil
    }

    private static func schemeLength(_ bytes: [UInt8]) -> Int? {
        for scheme in schemes where bytes.count >= scheme.utf8.count {
            let matches = zip(bytes, scheme.utf8).allSatisfy { byte, expected in
                byte == expected || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") && byte | 0x20 == expected)
            }
            if matches { return scheme.utf8.count }
        }
        return nil
    }

    /// Reads a URL, refusing anything outside the subset above with a message naming the part
    /// at fault (never its text).
    public init(_ value: String) throws(CleanerError) {
        let bytes = Array(value.utf8)
        guard bytes.count <= Self.maximumLength else {
            throw Self.refused("is longer than \(Self.maximumLength) bytes")
        }
        // URL text is printable ASCII; a space, a control character or a non-ASCII letter is
        // percent-encoded (%20, %C3%A9, …).
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw Self.refused("holds a space, a control character or a non-ASCII character; percent-encode it")
        }
        guard let schemeEnd = Self.schemeLength(bytes) else {
            throw Self.refused("does not start with postgresql:// or postgres://")
        }
        let rest = bytes[schemeEnd...]

        // The password first, before anything could stop the reading: `user:secret@` with a
        // `/`, `?` or `#` in the secret would end the host early and hide the `@`.
        if let at = rest.firstIndex(of: UInt8(ascii: "@")), rest[..<at].contains(UInt8(ascii: ":")) {
            throw Self.passwordRefused
        }
        guard !rest.contains(UInt8(ascii: "#")) else {
            throw Self.refused("has a fragment (#…); percent-encode a # in a name as %23")
        }

        let authorityEnd = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") } ?? rest.endIndex
        // The first @, as libpq reads it: an @ in a user name is written %40.
        guard let at = rest[..<authorityEnd].firstIndex(of: UInt8(ascii: "@")) else {
            throw Self.refused("names no user (postgresql://USER@HOST/DBNAME)")
        }
        user = try Self.name(rest[..<at], "user")
        (host, port) = try Self.hostAndPort(rest[(at + 1)..<authorityEnd])

        guard authorityEnd < rest.endIndex, rest[authorityEnd] == UInt8(ascii: "/") else {
            throw Self.refused("names no database (postgresql://USER@HOST/DBNAME)")
        }
        let pathEnd = rest[authorityEnd...].firstIndex(of: UInt8(ascii: "?")) ?? rest.endIndex
        let path = rest[(authorityEnd + 1)..<pathEnd]
        guard !path.isEmpty else { throw Self.refused("names no database (postgresql://USER@HOST/DBNAME)") }
        guard !path.contains(UInt8(ascii: "/")) else {
            throw Self.refused("has a / in the database name; percent-encode it as %2F")
        }
        database = try Self.name(path, "database name")
        sslMode = pathEnd < rest.endIndex ? try Self.sslMode(query: rest[(pathEnd + 1)...]) : .verifyFull
    }

    /// The URL without anything secret (there is nothing secret in it: a password is refused),
    /// every part spelled out: for logs, `status` and `check`. It reads back as the same URL.
    public var redacted: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "postgresql://\(Self.encoded(user))@\(shownHost):\(port)/\(Self.encoded(database))?sslmode=\(sslMode.rawValue)"
    }

    public var description: String { redacted }

    // MARK: - Parts

    static let passwordRefused = CleanerError.configuration(
        "database: the PostgreSQL URL holds a password, which is never read from it (it would show in logs, `status` and `ps`); put it in PGPASSWORD, the credentials file's `database_password`, or systemd's LoadCredential=database_password:…")

    private static func refused(_ what: String) -> CleanerError {
        .configuration("database: the PostgreSQL URL \(what)")
    }

    /// A user or database name: percent-decoded UTF-8, 1 to 63 bytes, no control character
    /// (the name is shown in logs, where a line break would fake a line).
    private static func name(_ raw: ArraySlice<UInt8>, _ what: String) throws(CleanerError) -> String {
        guard let decoded = percentDecoded(raw) else {
            throw refused("has a % not followed by two hex digits in the \(what)")
        }
        guard !decoded.isEmpty else { throw refused("has an empty \(what)") }
        guard decoded.count <= maximumNameBytes else {
            throw refused("has a \(what) longer than \(maximumNameBytes) bytes, PostgreSQL's limit")
        }
        guard !decoded.contains(where: { $0 < 0x20 || $0 == 0x7F }), let text = String(validating: decoded, as: UTF8.self) else {
            throw refused("has a \(what) that is not UTF-8 text without control characters")
        }
        return text
    }

    private static func hostAndPort(_ raw: ArraySlice<UInt8>) throws(CleanerError) -> (String, Int) {
        guard !raw.isEmpty else { throw refused("names no host (postgresql://USER@HOST/DBNAME)") }
        guard !raw.contains(UInt8(ascii: ",")) else {
            throw refused("names more than one host; one host is offered")
        }
        let host: String
        let portText: ArraySlice<UInt8>?
        if raw.first == UInt8(ascii: "[") {
            guard let close = raw.firstIndex(of: UInt8(ascii: "]")) else {
                throw refused("has a [ without its ] around the IPv6 address")
            }
            host = String(decoding: raw[(raw.startIndex + 1)..<close], as: UTF8.self)
            guard isIPv6(host) else { throw refused("has a bracketed host that is not an IPv6 address (zones are not offered)") }
            let after = raw[(close + 1)...]
            guard after.isEmpty || after.first == UInt8(ascii: ":") else {
                throw refused("has text after the IPv6 address's ]")
            }
            portText = after.isEmpty ? nil : after.dropFirst()
        } else {
            let colon = raw.firstIndex(of: UInt8(ascii: ":"))
            let name = raw[..<(colon ?? raw.endIndex)]
            if let colon, raw[(colon + 1)...].contains(UInt8(ascii: ":")) {
                throw refused("has an IPv6 address without brackets: write [ADDRESS]")
            }
            guard isHostName(name) else {
                throw refused("has a host that is neither a name nor an IP address (a Unix socket is not offered)")
            }
            host = String(decoding: name, as: UTF8.self)
            portText = colon.map { raw[($0 + 1)...] }
        }
        guard let portText else { return (host, defaultPort) }
        guard (1...5).contains(portText.count), portText.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let port = Int(String(decoding: portText, as: UTF8.self)), (1...65535).contains(port) else {
            throw refused("has a port that is not a number from 1 to 65535")
        }
        return (host, port)
    }

    /// Letters, digits, `-` and `_` in dot-separated labels of 1 to 63 bytes, 253 in all: a
    /// DNS name or a dotted IPv4 address.
    private static func isHostName(_ name: ArraySlice<UInt8>) -> Bool {
        guard !name.isEmpty, name.count <= 253 else { return false }
        let labels = name.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            (1...63).contains(label.count) && label.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                     UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"): true
                default: false
                }
            }
        }
    }

    private static func isIPv6(_ text: String) -> Bool {
        guard text.utf8.count <= 45, text.contains(":") else { return false }
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }

    /// The query: `sslmode` once at most; `password` and every other parameter refused.
    private static func sslMode(query: ArraySlice<UInt8>) throws(CleanerError) -> SSLMode {
        var mode: SSLMode?
        guard !query.isEmpty else { return .verifyFull }
        for pair in query.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: false) {
            let equals = pair.firstIndex(of: UInt8(ascii: "="))
            let name = percentDecoded(pair[..<(equals ?? pair.endIndex)]) ?? []
            let nameText = String(decoding: name, as: UTF8.self)
            if nameText == "password" { throw passwordRefused }
            guard let equals, !name.isEmpty, let value = percentDecoded(pair[(equals + 1)...]) else {
                throw refused("has a parameter that is not NAME=VALUE")
            }
            guard nameText == "sslmode" else {
                // Quoted only when it looks like a parameter's name, never like a secret.
                let shown = isParameterName(name) ? "\"\(nameText)\"" : "(not shown)"
                throw refused("has an unknown parameter \(shown); only sslmode is accepted")
            }
            guard mode == nil else { throw refused("gives sslmode twice") }
            let valueText = String(decoding: value, as: UTF8.self)
            if let known = SSLMode(rawValue: valueText) {
                mode = known
            } else if ["allow", "prefer", "verify-ca"].contains(valueText) {
                throw refused("has sslmode=\(valueText), which is not offered: use disable, require or verify-full")
            } else {
                throw refused("has an sslmode other than disable, require or verify-full")
            }
        }
        return mode ?? .verifyFull
    }

    private static func isParameterName(_ name: [UInt8]) -> Bool {
        (1...40).contains(name.count) && name.allSatisfy { ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || $0 == UInt8(ascii: "_") }
    }

    /// `%XX` decoded to its byte; nil for a `%` without two hex digits after it.
    private static func percentDecoded(_ raw: ArraySlice<UInt8>) -> [UInt8]? {
        var decoded: [UInt8] = []
        decoded.reserveCapacity(raw.count)
        var index = raw.startIndex
        while index < raw.endIndex {
            let byte = raw[index]
            guard byte == UInt8(ascii: "%") else {
                decoded.append(byte)
                index += 1
                continue
            }
            guard index + 2 < raw.endIndex, let high = hexValue(raw[index + 1]), let low = hexValue(raw[index + 2]) else { return nil }
            decoded.append(high << 4 | low)
            index += 3
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Every byte but RFC 3986's unreserved ones percent-encoded, so the redacted URL reads back.
    private static func encoded(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                result += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]], as: UTF8.self)
            }
        }
        return result
    }
}

extension PostgresURL {
    /// A value meant as a URL but mistyped (`postgres:/…`, `postgresql//…`): taken for a
    /// path, it would be shown in messages, a password in it too.
    public static func looksMistyped(_ value: String) -> Bool {
        !isPostgres(value) && value.lowercased().hasPrefix("postgres") && value.contains(":")
    }

    /// The error for ``looksMistyped(_:)``: it does not show the value.
    public static var mistyped: CleanerError {
        .configuration("database: neither a path nor a postgresql:// URL (the value is not shown: it may hold a password)")
    }
}
