import FoundationEssentials
import NIOCore

/// A parsed `endpoint`: scheme, host and port, nothing else. The one rule for it, used by the
/// configuration (whose messages add file, line and key) and by the client.
public struct Endpoint: Sendable, Hashable {
    /// `https` or `http`.
    public var scheme: String
    /// The host, lower-cased; an IPv6 literal without brackets.
    public var host: String
    /// The port given, if any.
    public var port: Int?
    /// `scheme://authority`, without a trailing slash: requests go to `baseURL + path`.
    public var baseURL: String
    /// The `Host` header sent (and signed): host[:port] as written in the endpoint.
    public var hostHeader: String

    /// Why a text is not an endpoint, said for someone who wrote it.
    public struct Problem: Error, Sendable, Equatable {
        public var reason: String
    }

    /// Parses `https://host[:port]` (a trailing `/` is allowed). `http://` is accepted only
    /// for loopback hosts.
    public init(parsing text: String) throws(Problem) {
        try self.init(parsing: text, plainHTTPHosts: [])
    }

    /// Parses as ``init(parsing:)``, also allowing `http://` for the hosts named.
    public init(parsing text: String, plainHTTPHosts: Set<String>) throws(Problem) {
        func bad(_ why: String) -> Problem { Problem(reason: why) }
        let lower = text.lowercased()
        let rest: Substring
        if lower.hasPrefix("https://") {
            scheme = "https"
            rest = text.dropFirst(8)
        } else if lower.hasPrefix("http://") {
            scheme = "http"
            rest = text.dropFirst(7)
        } else {
            throw bad("must start with https:// (or http:// for a loopback address)")
        }
        var authority = rest
        if let slash = rest.firstIndex(of: "/") {
            guard rest[slash...] == "/" else { throw bad("must not have a path; give only https://host[:port]") }
            authority = rest[..<slash]
        }
        guard !authority.contains(where: { $0 == "?" || $0 == "#" }) else {
            throw bad("must not have a query or fragment")
        }
        guard !authority.contains("@") else { throw bad("must not contain user information") }
        guard !authority.isEmpty else { throw bad("has no host") }
        guard authority.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw bad("the host must be plain ASCII without spaces (use the punycode form)")
        }
        var hostPart: Substring
        var portPart: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw bad("unterminated IPv6 address") }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw bad("unexpected text after the IPv6 address") }
                portPart = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        } else {
            hostPart = authority
        }
        guard !hostPart.isEmpty else { throw bad("has no host") }
        if authority.hasPrefix("[") {
            guard (try? SocketAddress(ipAddress: String(hostPart), port: 0)) != nil else {
                throw bad("invalid IPv6 address")
            }
        } else {
            guard hostPart.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_" }) else {
                throw bad("invalid host name")
            }
        }
        if let portPart {
            guard let port = Int(portPart), (1...65535).contains(port), portPart.allSatisfy(\.isNumber) else {
                throw bad("the port must be a number from 1 to 65535")
            }
            self.port = port
        } else {
            self.port = nil
        }
        host = hostPart.lowercased()
        let hostForHeader = authority.hasPrefix("[") ? "[\(host)]" : host
        hostHeader = port.map { "\(hostForHeader):\($0)" } ?? hostForHeader
        baseURL = "\(scheme)://\(hostHeader)"
        if scheme == "http", !Self.isLoopback(host), !plainHTTPHosts.contains(host) {
            let others = plainHTTPHosts.sorted().joined(separator: ", ")
            throw bad("http:// is allowed only for loopback addresses (127.0.0.0/8, ::1, localhost)\(others.isEmpty ? "" : " and \(others)"); use https://")
        }
        guard URL(string: baseURL + "/v5/iot/p/export-tasks/x")?.host != nil else {
            throw bad("not a valid URL")
        }
    }

    /// Whether `host` (lower-case, IPv6 without brackets) is a loopback address or `localhost`.
    public static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "localhost." { return true }
        guard let address = try? SocketAddress(ipAddress: host, port: 0), let ip = address.ipAddress else {
            return false
        }
        switch address.protocol {
        case .inet: return ip.hasPrefix("127.")
        case .inet6: return ip == "::1" || ip.hasPrefix("::ffff:127.")
        default: return false
        }
    }
}
