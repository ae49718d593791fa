import FoundationEssentials
import Synchronization

/// The metadata service's state: the session tokens and temporary keys handed out, the fault
/// switch, and the metadata counters. Times are microseconds since 1970 on the simulator's
/// clock (real plus offset), the precision of `expires_at`.
///
/// Both collections are bounded: a new session token drops the expired ones, a new key drops
/// the keys expired more than ``expiredKeyRetention`` ago, and beyond ``maxKeys`` (or
/// ``maxSessions``) the oldest go first.
final class MetadataStore: Sendable {
    /// A temporary key handed out by `GET /openstack/latest/securitykey`.
    struct IssuedKey: Sendable {
        var accessKey: String
        var secretKey: String
        var securityToken: String
        var expiresAtMicros: Int64
        /// Issue order, to drop the oldest first.
        var sequence: Int
    }

    /// Counts that end up in ``IoTDASimulator/Counters``.
    struct Counts: Sendable {
        var tokenRequests = 0
        var credentialRequests = 0
        var refusals = 0
        var expiredCredentialRequests = 0
        var acceptedWithTemporaryKey = 0
    }

    private struct State {
        var sessions: [String: Int64] = [:]
        var keys: [String: IssuedKey] = [:]
        var nextSequence = 0
        var failing = false
        var drip: Duration?
        var counts = Counts()
    }

    static let expiredKeyRetention: Int64 = 5 * 60 * 1_000_000
    static let maxKeys = 4096
    static let maxSessions = 1024

    private let state = Mutex(State())

    var counts: Counts { state.withLock { $0.counts } }

    var isFailing: Bool { state.withLock { $0.failing } }

    func setFailing(_ failing: Bool) { state.withLock { $0.failing = failing } }

    /// While set, answers are sent a body byte at a time, this far apart.
    var drip: Duration? { state.withLock { $0.drip } }

    func setDrip(_ interval: Duration?) { state.withLock { $0.drip = interval } }

    /// Every session token handed out so far becomes unknown.
    func revokeSessions() { state.withLock { $0.sessions.removeAll() } }

    /// The access key IDs of the keys still held, oldest first.
    var issuedAccessKeyIDs: [String] {
        state.withLock { $0.keys.values.sorted { $0.sequence < $1.sequence }.map(\.accessKey) }
    }

    /// A fresh session token valid for `ttlSeconds` from `now`.
    func issueSessionToken(ttlSeconds: Int, now: Int64) -> String {
        let token = Self.randomString(count: 48, alphabet: Self.alphanumerics)
        state.withLock { s in
            s.sessions = s.sessions.filter { $0.value > now }
            while s.sessions.count >= Self.maxSessions, let oldest = s.sessions.min(by: { $0.value < $1.value }) {
                s.sessions[oldest.key] = nil
            }
            s.sessions[token] = now + Int64(ttlSeconds) * 1_000_000
            s.counts.tokenRequests += 1
        }
        return token
    }

    /// A fresh temporary key issued at `now`, valid until `expiresAt` (microseconds), or nil
    /// (counted as a refusal) when `sessionToken` is missing, unknown or expired.
    func issueKey(sessionToken: String?, now: Int64, expiresAt: Int64) -> IssuedKey? {
        var key = IssuedKey(
            accessKey: Self.randomString(count: 20, alphabet: Self.upperAlphanumerics),
            secretKey: Self.randomString(count: 40, alphabet: Self.alphanumerics),
            securityToken: Self.randomSecurityToken(),
            expiresAtMicros: expiresAt,
            sequence: 0)
        return state.withLock { s -> IssuedKey? in
            guard let sessionToken, let expiry = s.sessions[sessionToken], expiry > now else {
                s.counts.refusals += 1
                return nil
            }
            s.keys = s.keys.filter { $0.value.expiresAtMicros > now - Self.expiredKeyRetention }
            while s.keys.count >= Self.maxKeys, let oldest = s.keys.values.min(by: { $0.sequence < $1.sequence }) {
                s.keys[oldest.accessKey] = nil
            }
            key.sequence = s.nextSequence
            s.nextSequence += 1
            s.keys[key.accessKey] = key
            s.counts.credentialRequests += 1
            return key
        }
    }

    /// The issued key `accessKey`, if still held.
    func key(_ accessKey: String) -> IssuedKey? { state.withLock { $0.keys[accessKey] } }

    /// Counts a delete signed with an issued key: `expired` when signed or arriving at or after
    /// its expiry, `accepted` when it passed authentication.
    func countUse(expired: Bool, accepted: Bool) {
        guard expired || accepted else { return }
        state.withLock { s in
            if expired { s.counts.expiredCredentialRequests += 1 }
            if accepted { s.counts.acceptedWithTemporaryKey += 1 }
        }
    }

    // MARK: Random text

    private static let upperAlphanumerics = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
    private static let alphanumerics = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)

    /// `count` characters drawn uniformly from `alphabet` by the system's secure generator.
    private static func randomString(count: Int, alphabet: [UInt8]) -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        for _ in 0..<count { bytes.append(alphabet[Int.random(in: 0..<alphabet.count, using: &generator)]) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// 184 characters of base64 (with `+`, `/` and `=` padding), as IAM's security tokens are.
    private static func randomSecurityToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<136).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Data(bytes).base64EncodedString()
    }
}
