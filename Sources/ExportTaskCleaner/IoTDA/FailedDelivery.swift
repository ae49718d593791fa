import AsyncHTTPClient
import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Whether a request that failed without a response may have reached the server
/// (docs/database.md, "The database", `delivery`).
///
/// `not_sent` only where the failure proves the request never left: no connection was made
/// (refused, timed out, DNS, the TLS handshake), the client gave up waiting for a connection,
/// or the client refused it before writing. Any doubt is `unknown`. In particular a
/// cancellation is always `unknown` once the request was handed to the client: the head may be
/// on its way when it arrives, and async-http-client reports the head written
/// (`didSendRequestHead`) only later, on the request's event loop.
enum FailedDelivery {
    static func classify(_ error: any Error, headWritten: Bool) -> Delivery {
        guard !headWritten else { return .unknown }
        return provesNotSent(error) ? .notSent : .unknown
    }

    /// Failures that happen only before a request is written.
    static func provesNotSent(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError {
            // Waiting for a connection that never came, or a client that was shut down before
            // the request was queued; the refusals of a request as built are
            // `IoTDAClient.refusals` (classified before this).
            return [HTTPClientError.connectTimeout, .getConnectionFromPoolTimeout, .tlsHandshakeTimeout,
                    .alreadyShutdown].contains(error)
        }
        if let channel = error as? ChannelError, case .connectTimeout = channel { return true }
        // A refused connection: a reset on an established one is ECONNRESET instead.
        if let io = error as? IOError { return io.errnoCode == ECONNREFUSED }
        // NIOPosix's and NIOSSL's types, which this target does not import: read by name.
        switch String(describing: type(of: error)) {
        case "NIOConnectionError":
            // Only connecting raises it (every address tried failed, or DNS did).
            return true
        case "NIOSSLError":
            // A failed handshake: no request goes out before the handshake completes.
            return String(describing: error).hasPrefix("handshakeFailed")
        case "NIOSSLExtraError":
            // The server's name did not verify, or could not be sent, during the handshake (not
            // `noForwardProgress`, which a write may raise after data went out).
            let description = String(describing: error)
            return ["failedToValidateHostname", "invalidSNIHostname", "cannotUseIPAddressInSNI"]
                .contains { description.contains($0) }
        default:
            return false
        }
    }
}
