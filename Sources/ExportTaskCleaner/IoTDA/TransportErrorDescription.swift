import AsyncHTTPClient
import FoundationEssentials
import NIOCore
import NIOHTTP1
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Short descriptions of connection-level errors. NIO's connection errors (`NIOConnectionError`)
/// live in NIOPosix, which this target does not import, so they are read by reflection.
enum TransportErrorDescription {
    static func describe(_ error: any Error) -> String {
        if let io = error as? IOError { return describe(errno: io.errnoCode) ?? "\(io)" }
        if let channel = error as? ChannelError {
            switch channel {
            case .connectTimeout: return "connect timed out"
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed, .inputClosed:
                return "connection closed before a response"
            default: return "connection error: \(channel)"
            }
        }
        let typeName = String(describing: type(of: error))
        if typeName == "NIOConnectionError" {
            var dnsFailed = false
            var inner: [any Error] = []
            for child in Mirror(reflecting: error).children {
                switch child.label {
                case "dnsAError", "dnsAAAAError":
                    let optional = Mirror(reflecting: child.value)
                    if optional.displayStyle == .optional, !optional.children.isEmpty { dnsFailed = true }
                case "connectionErrors":
                    for failure in Mirror(reflecting: child.value).children {
                        for field in Mirror(reflecting: failure.value).children where field.label == "error" {
                            if let e = field.value as? any Error { inner.append(e) }
                        }
                    }
                default: break
                }
            }
            if let first = inner.first { return describe(first) }
            if dnsFailed { return "DNS lookup failed" }
            return "could not connect"
        }
        if typeName.contains("NIOSSLError") || typeName.contains("BoringSSL") {
            return "TLS error: \(error)"
        }
        return "\(error)"
    }

    private static func describe(errno: Int32) -> String? {
        switch errno {
        case ECONNREFUSED: return "connection refused"
        case ECONNRESET: return "connection reset by peer"
        case ETIMEDOUT: return "connection timed out"
        case EHOSTUNREACH: return "host unreachable"
        case ENETUNREACH: return "network unreachable"
        case EPIPE: return "connection closed before a response"
        default: return nil
        }
    }
}
