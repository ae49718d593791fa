/// `Behaviour` and `Mix` are usable unqualified or as `IoTDASimulator.Behaviour` /
/// `IoTDASimulator.Mix` (the module and the class share a name, so only the nested spelling
/// works qualified).
public typealias Behaviour = IoTDASimulator.Behaviour
public typealias Mix = IoTDASimulator.Mix

extension IoTDASimulator {
    /// How the simulator answers deletes of one export task ID.
    ///
    /// Counts (`times`) are per ID and start when the behaviour is set: with
    /// `.tooManyRequests(retryAfterSeconds: 1, times: 2)` the first two deletes of the ID get a
    /// 429 and the third deletes it. Requests refused before the behaviour is consulted (bad
    /// signature, wrong project or instance, the server-wide rate limit) do not count.
    public indirect enum Behaviour: Sendable, Hashable {
        /// 204 the first time, 404 ever after: what IoTDA does. The default for IDs without a script.
        case deleteOnce
        /// Always 404 (`IOTDA.014016`).
        case notFound
        /// Always 403 (`IOTDA.000003`).
        case forbidden
        /// Always 400 (`IOTDA.000006`).
        case badRequest
        /// 429 with `Retry-After: retryAfterSeconds` for the first `times` requests, then ``deleteOnce``.
        case tooManyRequests(retryAfterSeconds: Int, times: Int)
        /// `status` (5xx, or anything else) for the first `times` requests, then ``deleteOnce``.
        case serverError(status: Int, times: Int)
        /// Waits before answering as `then` would (the server acts when the request arrives; only
        /// the answer is late). The event loop is not blocked.
        case delay(Duration, then: Behaviour)
        /// Closes the connection without answering for the first `times` requests, then ``deleteOnce``.
        case dropConnection(times: Int)
        /// Answers as `then` would, but sends the body a byte every `every` after the head: a
        /// server (or a proxy) that answers and does not finish.
        case drip(every: Duration, then: Behaviour)
    }

    /// A deterministic mix of behaviours for IDs without a script: an ID's share is chosen by a
    /// stable hash (FNV-1a) of the ID, so a run can be repeated exactly.
    public struct Mix: Sendable, Hashable {
        public struct Share: Sendable, Hashable {
            /// Relative weight (percentages when the weights add up to 100).
            public var weight: Int
            public var behaviour: Behaviour

            public init(_ weight: Int, _ behaviour: Behaviour) {
                self.weight = weight
                self.behaviour = behaviour
            }
        }

        public var shares: [Share]

        public init(_ shares: [Share]) {
            self.shares = shares.filter { $0.weight > 0 }
        }

        /// 91.8% deleted, 4% not found, 2% forbidden, 2% one 503 then deleted, 0.2% one 429
        /// (Retry-After 1 s) then deleted: what the `demo` command shows.
        public static let realistic = Mix([
            Share(918, .deleteOnce),
            Share(40, .notFound),
            Share(20, .forbidden),
            // Rare: a 429 slows the whole service down, as an overloaded server should.
            Share(2, .tooManyRequests(retryAfterSeconds: 1, times: 1)),
            Share(20, .serverError(status: 503, times: 1)),
        ])

        /// The behaviour for `exportTaskID`.
        public func behaviour(for exportTaskID: String) -> Behaviour {
            let total = shares.reduce(0) { $0 + $1.weight }
            guard total > 0 else { return .deleteOnce }
            var point = Int(Self.fnv1a(exportTaskID) % UInt64(total))
            for share in shares {
                if point < share.weight { return share.behaviour }
                point -= share.weight
            }
            return .deleteOnce
        }

        /// 64-bit FNV-1a of the UTF-8 bytes: stable across processes, unlike `Hasher`.
        static func fnv1a(_ s: String) -> UInt64 {
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in s.utf8 {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01B3
            }
            return hash
        }
    }
}
