#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import FoundationEssentials
import Logging
import Synchronization

/// Talks to systemd's notification socket (`sd_notify(3)`) without linking libsystemd.
///
/// Each message is one datagram on an `AF_UNIX`/`SOCK_DGRAM` socket sent to `$NOTIFY_SOCKET`,
/// which is either a filesystem path or, when it starts with `@`, a Linux abstract socket name.
/// When the variable is unset or empty every method is a silent no-op, so the service runs the
/// same way from a terminal. Errors never crash: a send that fails returns `false` and is logged
/// at debug level.
///
/// The socket is opened on the first send and kept (closed when the last copy of the notifier
/// goes away), so a notifier costs one descriptor while it is in use. Sends never block: when
/// the receiver's queue is full the message is dropped and the send returns `false`.
public struct SystemdNotifier: Sendable {
    private let connection: Connection?
    private let logger: Logger

    /// The watchdog ping interval: half of `WATCHDOG_USEC`, as `sd_watchdog_enabled(3)`
    /// recommends; `nil` when systemd did not ask for pings, or asked another process
    /// (`WATCHDOG_PID` names a different pid).
    public let watchdogInterval: Duration?

    /// - Parameters:
    ///   - environment: where `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` are read.
    ///   - logger: receives debug messages about failed sends; nothing is logged by default.
    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger = Logger(label: "export-task-cleaner.systemd", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.logger = logger
        self.watchdogInterval = Self.watchdogInterval(environment: environment)
        guard let name = environment["NOTIFY_SOCKET"], !name.isEmpty else {
            self.connection = nil
            return
        }
        guard let address = Self.socketAddress(name) else {
            logger.debug(
                "NOTIFY_SOCKET is not a usable AF_UNIX address; systemd notifications are off",
                metadata: ["systemd.notify_socket": "\(name)"]
            )
            self.connection = nil
            return
        }
        self.connection = Connection(address: address)
    }

    /// Whether `$NOTIFY_SOCKET` names a socket that messages are sent to.
    public var isEnabled: Bool { connection != nil }

    /// `READY=1`: start-up is complete.
    @discardableResult
    public func ready() -> Bool { send("READY=1") }

    /// `STATUS=...`: a one-line status shown by `systemctl status`. Line breaks become spaces.
    @discardableResult
    public func status(_ text: String) -> Bool {
        let line = String(text.map { $0.isNewline ? " " : $0 })
        return send("STATUS=\(line)")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=`: a reload began; `READY=1` ends it (`sd_notify(3)`;
    /// systemd 253's `Type=notify-reload` needs the timestamp, earlier versions ignore it).
    @discardableResult
    public func reloading() -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) &* 1_000_000 &+ UInt64(now.tv_nsec / 1000)
        return send("RELOADING=1\nMONOTONIC_USEC=\(microseconds)")
    }

    /// `STOPPING=1`: the service is shutting down.
    @discardableResult
    public func stopping() -> Bool { send("STOPPING=1") }

    /// `WATCHDOG=1`: keep-alive ping for `WatchdogSec=`.
    @discardableResult
    public func watchdog() -> Bool { send("WATCHDOG=1") }

    /// Sends `message` as one datagram. Returns `true` when it was sent whole, `false` when
    /// notifications are off or the send failed (logged at debug level).
    @discardableResult
    public func send(_ message: String) -> Bool {
        guard let connection else { return false }
        switch connection.send(Array(message.utf8)) {
        case .success:
            return true
        case .failure(let error):
            logger.debug(
                "Could not send a systemd notification",
                metadata: ["systemd.errno": "\(error.code)", "systemd.error": "\(String(cString: strerror(error.code)))"]
            )
            return false
        }
    }

    // MARK: - Environment parsing

    static func watchdogInterval(environment: [String: String]) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0,
            usec != UInt64.max, usec / 2 <= UInt64(Int64.max)
        else { return nil }
        if let pidText = environment["WATCHDOG_PID"] {
            guard let pid = Int32(pidText), pid == getpid() else { return nil }
        }
        return .microseconds(Int64(usec / 2))
    }

    /// The bytes of a `sockaddr_un` for `name`, cut to the length the kernel expects:
    /// `offsetof(sun_path)` plus the path and its NUL, or for an abstract name (`@...`) plus
    /// the leading NUL and the name, with no terminator (abstract names are length-delimited).
    static func socketAddress(_ name: String) -> [UInt8]? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        let pathCapacity = MemoryLayout.size(ofValue: address.sun_path)
        var path = Array(name.utf8)
        // Like sd_notify(3): an absolute path or an abstract name, nothing else.
        guard let first = path.first, first == UInt8(ascii: "/") || first == UInt8(ascii: "@"),
            !path.contains(0)
        else { return nil }
        let length: Int
        if first == UInt8(ascii: "@") {
            #if os(Linux)
            path[0] = 0
            guard path.count > 1, path.count <= pathCapacity else { return nil }
            length = pathOffset + path.count
            #else
            return nil
            #endif
        } else {
            guard path.count < pathCapacity else { return nil }
            length = pathOffset + path.count + 1
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: path)
        }
        #if canImport(Darwin)
        address.sun_len = UInt8(length)
        #endif
        return withUnsafeBytes(of: &address) { Array($0.prefix(length)) }
    }
}

extension SystemdNotifier {
    /// The datagram socket and the destination address; the descriptor is opened on first use
    /// (and again after a failed open) and closed on deinit.
    private final class Connection: Sendable {
        private let address: [UInt8]
        private let descriptor = Mutex<Int32>(-1)

        init(address: [UInt8]) {
            self.address = address
        }

        deinit {
            descriptor.withLock { fd in
                if fd >= 0 { _ = close(fd) }
            }
        }

        func send(_ bytes: [UInt8]) -> Result<Void, Errno> {
            descriptor.withLock { fd in
                if fd < 0 {
                    fd = Self.openSocket()
                    if fd < 0 { return .failure(Errno(errno)) }
                }
                let socket = fd
                var storage = sockaddr_un()
                withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: address) }
                let length = socklen_t(address.count)
                return withUnsafePointer(to: &storage) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { destination in
                        bytes.withUnsafeBytes { payload in
                            while true {
                                let sent = sendto(
                                    socket, payload.baseAddress, payload.count, Self.sendFlags, destination, length
                                )
                                if sent == payload.count { return .success(()) }
                                if sent < 0 && errno == EINTR { continue }
                                return .failure(Errno(sent < 0 ? errno : EMSGSIZE))
                            }
                        }
                    }
                }
            }
        }

        private static func openSocket() -> Int32 {
            #if canImport(Glibc)
            return socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            #elseif canImport(Musl)
            return socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)
            #else
            let fd = socket(AF_UNIX, SOCK_DGRAM, 0)
            if fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            return fd
            #endif
        }

        /// Never raise SIGPIPE, and never block the caller (a cooperative thread) when the
        /// receiver's queue is full: such a message is dropped and the send reports failure.
        #if os(Linux)
        private static let sendFlags = Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)
        #else
        private static let sendFlags = Int32(MSG_DONTWAIT)
        #endif
    }

    /// An `errno` value carried in a `Result`.
    struct Errno: Error, CustomStringConvertible {
        var code: Int32
        init(_ code: Int32) { self.code = code }
        var description: String { "\(code)" }
    }
}
