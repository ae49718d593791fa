import NIOCore
import NIOPosix
import PostgresNIO
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a connection to PostgreSQL could not be made, in words an operator acts on (`check`,
/// docs/commands.md, "Details"): refused, a name that does not resolve, a timeout, TLS, or
/// the server's refusal (authentication, the database, the role's access). Each text names
/// the failure and what to look at; none holds the password, which no error here carries
/// (postgres-nio sends it, and no message of the server's repeats it).
enum PostgresConnectFailure {
    /// The TLS context could not be made (the system's CA store unreadable, say).
    struct TLSSetup: Error {
        var error: any Error
    }

    static func explain(_ error: any Error, url: PostgresURL, password: PostgresPassword, timeout: Duration) -> String {
        let place = "\(url.host.contains(":") ? "[\(url.host)]" : url.host):\(url.port)"
        if let setup = error as? TLSSetup {
            return "TLS: cannot set up TLS (sslmode=\(url.sslMode.rawValue)): \(TextFormat.printable("\(setup.error)"))"
        }
        guard let error = error as? PSQLError else {
            return network(error, place: place, timeout: timeout) ?? "cannot connect: \(TextFormat.printable("\(error)"))"
        }
        switch error.code {
        case .server:
            return refusedByServer(error, url: url, password: password)
        case .authMechanismRequiresPassword:
            return "authentication failed: the server asks for a password and none was found (\(PostgresPassword.credentialName) in $\(CredentialsLoader.directoryVariable), auth.credentials_file or \(PostgresPassword.environmentVariable))"
        case .unsupportedAuthMechanism:
            return "authentication failed: the server asks for an authentication method this client does not offer (it offers SCRAM-SHA-256, MD5 and password); see the server's pg_hba.conf"
        case .saslError:
            return "authentication failed: the SCRAM-SHA-256 exchange with the server failed"
        case .sslUnsupported:
            return "TLS: the server does not offer TLS, which sslmode=\(url.sslMode.rawValue) requires; turn on ssl in the server's configuration, or use sslmode=disable on a loopback or otherwise trusted network only"
        case .failedToAddSSLHandler, .receivedUnencryptedDataAfterSSLRequest:
            return "TLS: the TLS handshake could not start (sslmode=\(url.sslMode.rawValue))"
        case .connectionError:
            if let underlying = error.underlying {
                return network(underlying, place: place, timeout: timeout)
                    ?? "cannot connect to \(place): \(TextFormat.printable("\(underlying)"))"
            }
            return "cannot connect to \(place)"
        case .serverClosedConnection, .uncleanShutdown:
            let why = error.underlying.flatMap { network($0, place: place, timeout: timeout) }.map { ": \($0)" } ?? ""
            return "the server at \(place) closed the connection before it was ready\(why)"
        default:
            return "cannot connect to \(place): \(error.code)"
        }
    }

    /// The server's refusal, by SQLSTATE (PostgreSQL's appendix A), with its own message: it
    /// names the role or the database, never the password.
    private static func refusedByServer(_ error: PSQLError, url: PostgresURL, password: PostgresPassword) -> String {
        let message = TextFormat.printable(error.serverInfo?[.message] ?? "refused")
        let state = error.serverInfo?[.sqlState] ?? ""
        switch state {
        case "28P01":
            // invalid_password: also what a role that does not exist gets, so as not to tell.
            return "authentication failed: \(message) (the password from \(password.source); or no such role)"
        case "28000":
            // invalid_authorization_specification: pg_hba.conf has no line for this, or the
            // role may not log in.
            return "refused: \(message) (the server's pg_hba.conf, or the role's LOGIN)"
        case "3D000":
            return "refused: \(message): create it, or name another in the URL"
        case "42501":
            return "refused: \(message): GRANT CONNECT ON DATABASE to the role"
        case "53300":
            return "refused: \(message): the server has no connection left (max_connections)"
        case "57P03":
            return "refused: \(message): the server is starting up or shutting down; try again"
        default:
            return "refused by the server: \(message)\(state.isEmpty ? "" : " (SQLSTATE \(state))")"
        }
    }

    /// The network's failures: refused, unreachable, a name that does not resolve, a timeout,
    /// a TLS handshake that failed. Nil for anything else.
    private static func network(_ error: any Error, place: String, timeout: Duration) -> String? {
        if let channel = error as? ChannelError, case .connectTimeout = channel {
            return "timeout: no connection to \(place), or no answer to it, within \(timeout.components.seconds) s (a firewall that drops packets, a wrong host or port, or a server that does not answer)"
        }
        if let io = error as? IOError {
            switch io.errnoCode {
            case ECONNREFUSED:
                return "refused: nothing listens on \(place) (is the server running, and listening there? listen_addresses and port in postgresql.conf)"
            case EHOSTUNREACH, ENETUNREACH:
                return "unreachable: no route to \(place)"
            case ETIMEDOUT:
                return "timeout: no connection to \(place) (a firewall that drops packets, or a wrong host)"
            case ECONNRESET:
                return "the connection to \(place) was reset"
            default:
                return nil
            }
        }
        if let connection = error as? NIOConnectionError {
            if let first = connection.connectionErrors.first {
                return network(first.error, place: place, timeout: timeout) ?? "cannot connect to \(place): \(TextFormat.printable("\(first.error)"))"
            }
            if connection.dnsAError != nil || connection.dnsAAAAError != nil {
                return "the host name does not resolve (DNS): \(place)"
            }
            return "cannot connect to \(place)"
        }
        if error is NIOSSLError || error is BoringSSLError {
            return "TLS: the handshake with \(place) failed (a certificate that the system's CA store does not trust, or that does not name the host, with sslmode=verify-full): \(TextFormat.printable("\(error)"))"
        }
        return nil
    }
}
