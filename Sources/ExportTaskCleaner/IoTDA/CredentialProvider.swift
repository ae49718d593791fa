import FoundationEssentials
import Synchronization

/// The credentials requests are signed with now. A long-running service replaces them while it
/// runs: a reload (`SIGHUP`) with a rotated key, a key re-read before a paused circuit's probe,
/// temporary credentials refreshed from the ECS metadata service (docs/credentials.md, "Authentication and credentials").
///
/// Each request takes a snapshot (``authorization(at:)``), so a request in flight keeps the
/// credentials it was signed with. Temporary credentials with an expiry are never handed out at
/// or after it. Redacted like ``Credentials`` wherever it is shown.
public final class CredentialProvider: Sendable {
    /// What signs a request: a signer holding the access key, or an IAM token.
    package enum Authorization: Sendable {
        case signed(RequestSigner)
        case token(String)
    }

    /// The credentials in hand.
    public struct Current: Sendable {
        public var credentials: Credentials
        /// Where they came from, for log lines (`$CREDENTIALS_DIRECTORY`, `ECS metadata service`, ...).
        public var source: String
        /// When temporary credentials stop working; nil for credentials without an expiry.
        public var expiresAt: Date?
        /// Counts replacements: 0 for the credentials the provider was made with.
        public var generation: Int
    }

    /// What changed, for the service's listener.
    public enum Change: Sendable, Equatable {
        /// New credentials, of `generation`. `newKey`: another key than before, not yet shown to
        /// work (a key rotated on disk). `renewal`: temporary credentials renewed on schedule,
        /// rather than read again on purpose (a reload, before a probe).
        case replaced(newKey: Bool, renewal: Bool, generation: Int)
        /// The credentials of `generation` expired and none replaced them.
        case expired(generation: Int)
    }

    private struct State {
        var current: Current
        var authorization: Authorization
        var listener: (@Sendable (Change) -> Void)?
    }

    /// Temporary credentials are not used in their last second, so that a request signed just
    /// before the expiry does not arrive after it.
    public static let expiryMargin: TimeInterval = 1

    /// Why temporary credentials that expire at `expiresAt` cannot be taken at `now`, by the
    /// local clock: expired, or in their last second (docs/credentials.md, "Authentication and
    /// credentials"); nil when they can. Read after "the credentials …".
    public static func expiryProblem(expiresAt: Date, now: Date) -> String? {
        if expiresAt <= now {
            return "expire at \(Timestamp.format(expiresAt)), which by the local clock (\(Timestamp.format(now))) has passed; is the local clock right?"
        }
        guard expiresAt <= now.addingTimeInterval(expiryMargin) else { return nil }
        return "expire at \(Timestamp.format(expiresAt)), within a second by the local clock (\(Timestamp.format(now))), and temporary keys are not used in their last second; is the local clock right?"
    }

    public let signing: SigningAlgorithm
    public let region: String
    private let state: Mutex<State>

    public init(_ credentials: Credentials, source: String, expiresAt: Date? = nil, signing: SigningAlgorithm, region: String) {
        self.signing = signing
        self.region = region
        let current = Current(credentials: credentials, source: source, expiresAt: expiresAt, generation: 0)
        state = Mutex(State(current: current, authorization: Self.authorization(for: credentials, signing: signing, region: region)))
    }

    public var current: Current { state.withLock { $0.current } }

    /// The authorization for a request signed at `date`; nil when the credentials in hand have
    /// expired by then, or are in their last second (nothing may be signed with them).
    package func authorization(at date: Date) -> (authorization: Authorization, generation: Int)? {
        state.withLock { state in
            state.current.isExpired(at: date) ? nil : (state.authorization, state.current.generation)
        }
    }

    /// Whether requests may be signed at `date`.
    public func isUsable(at date: Date) -> Bool {
        state.withLock { !$0.current.isExpired(at: date) }
    }

    /// The generation of the credentials in hand when they have expired by `date`; nil while
    /// they may be used.
    public func expiredGeneration(at date: Date) -> Int? {
        state.withLock { $0.current.isExpired(at: date) ? $0.current.generation : nil }
    }

    /// Replaces the credentials; requests signed before keep theirs. Tells the listener.
    /// `renewal`: temporary credentials of the same identity, renewed (never a new key to verify).
    public func replace(_ credentials: Credentials, source: String, expiresAt: Date? = nil, renewal: Bool = false) {
        let (listener, newKey, generation) = state.withLock { state in
            let newKey = !renewal && credentials.keyIdentity != state.current.credentials.keyIdentity
            state.current = Current(credentials: credentials, source: source, expiresAt: expiresAt,
                                    generation: state.current.generation + 1)
            state.authorization = Self.authorization(for: credentials, signing: signing, region: region)
            return (state.listener, newKey, state.current.generation)
        }
        listener?(.replaced(newKey: newKey, renewal: renewal, generation: generation))
    }

    /// The credentials in hand have expired and could not be replaced: tells the listener, so
    /// the service pauses and says why. Does nothing when they have not expired by `date`.
    public func expire(at date: Date) {
        let expired: (listener: (@Sendable (Change) -> Void)?, generation: Int)? = state.withLock { state in
            state.current.isExpired(at: date) ? (state.listener, state.current.generation) : nil
        }
        if let expired { expired.listener?(.expired(generation: expired.generation)) }
    }

    /// Sets the one listener (the service, while it runs); nil removes it. Called outside the
    /// provider's lock, on the thread that made the change.
    public func setListener(_ listener: (@Sendable (Change) -> Void)?) {
        state.withLock { $0.listener = listener }
    }

    private static func authorization(for credentials: Credentials, signing: SigningAlgorithm, region: String) -> Authorization {
        switch credentials {
        case .accessKey(let key): .signed(RequestSigner(algorithm: signing, accessKey: key, region: region))
        case .token(let token): .token(token)
        }
    }
}

extension CredentialProvider: CustomStringConvertible {
    /// Where the credentials in hand came from and how requests are signed, never a secret:
    /// `access key QTWA… from auth.credentials_file, signed SDK-HMAC-SHA256`.
    public var description: String {
        let current = self.current
        switch current.credentials {
        case .accessKey(let key):
            return "\(key.isTemporary ? "temporary access key" : "access key") \(key.abbreviatedAK) from \(current.source), signed \(signing.rawValue)"
        case .token: return "X-Auth-Token from \(current.source)"
        }
    }
}

extension CredentialProvider.Current {
    /// Expired, or in its last second (``CredentialProvider/expiryMargin``), at `date`.
    fileprivate func isExpired(at date: Date) -> Bool {
        expiresAt.map { date >= $0 - CredentialProvider.expiryMargin } ?? false
    }
}

extension Credentials {
    /// What tells one key from another without the secret: the AK, or the token itself (only
    /// compared, never shown).
    fileprivate var keyIdentity: String {
        switch self {
        case .accessKey(let key): "ak:" + key.ak
        case .token(let token): "token:" + token
        }
    }
}
