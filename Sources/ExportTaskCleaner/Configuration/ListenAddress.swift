import NIOCore

/// Where the metrics endpoint listens (`metrics.listen`): `HOST:PORT`, the host an IPv4
/// address, `[IPv6]` or `localhost` (docs/metrics.md, "Metrics"). Only what is written: a non-loopback
/// address exposes the metrics to the network, so it is never a default.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`; the error says what is wrong, for a message with file and line.
    public init(parsing text: String) throws(Endpoint.Problem) {
        func bad(_ why: String) -> Endpoint.Problem { Endpoint.Problem(reason: why) }
        guard let colon = text.lastIndex(of: ":") else { throw bad("expected HOST:PORT, such as 127.0.0.1:9464") }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard let port = Int(portText), portText.allSatisfy(\.isNumber), (1...65535).contains(port) else {
            throw bad("the port must be a number from 1 to 65535")
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard host == "localhost" || (try? SocketAddress(ipAddress: host, port: port)) != nil else {
            throw bad("the host must be an IP address (127.0.0.1, [::1], 0.0.0.0) or localhost")
        }
        self.host = host
        self.port = port
    }

    public var isLoopback: Bool { Endpoint.isLoopback(host) }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
