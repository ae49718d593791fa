extension IoTDASimulator {
    /// A snapshot of what the simulator has seen and answered.
    ///
    /// Taking one is cheap (the collections are shared copy-on-write); holding one while the
    /// simulator keeps serving costs one copy of them.
    public struct Counters: Sendable {
        /// Every complete request received, whatever the answer.
        public var requests: Int = 0
        /// Requests received but not yet answered (or dropped).
        public var inFlight: Int = 0
        /// The most requests in flight at once.
        public var maxInFlight: Int = 0
        /// 204s written.
        public var successfulDeletes: Int = 0
        /// Requests refused for a bad or missing signature (401).
        public var signatureFailures: Int = 0
        /// Every 401: signatures, a wrong or missing token or security token.
        public var authFailures: Int = 0
        /// 429s from the server-wide ``Configuration/rateLimit`` (not scripted ones).
        public var rateLimited: Int = 0
        /// Connections accepted (IoTDA and metadata requests alike).
        public var connections: Int = 0
        /// Connections closed without an answer by ``Behaviour/dropConnection(times:)``.
        public var droppedConnections: Int = 0
        /// Answers written, by status.
        public var responsesByStatus: [Int: Int] = [:]
        /// Requests per export task ID (every `DELETE` on the export-task route, even refused ones).
        public var attemptsByID: [String: Int] = [:]
        /// ListExportTasks requests (`GET /v5/iot/{project_id}/export-tasks`), refused ones too.
        public var listRequests: Int = 0
        /// Deletions performed per export task ID (a 204 decided). More than 1 would be a bug in IoTDA.
        public var deleteCountByID: [String: Int] = [:]

        // The metadata service's (none of the counts above include its requests).

        /// Session tokens handed out (`PUT /meta-data/latest/api/token` answered 200).
        public var metadataTokenRequests: Int = 0
        /// Temporary keys handed out (`GET /openstack/latest/securitykey` answered 200).
        public var metadataCredentialRequests: Int = 0
        /// 401s on the metadata routes (a missing, unknown, revoked or expired session token).
        public var metadataRefusals: Int = 0
        /// Deletes with a valid signature by an issued key that were signed (`X-Sdk-Date`) at or
        /// after its `expires_at`, or arrived at or after it by the simulator's clock (only these
        /// are refused: 401). Each counted once.
        public var expiredCredentialRequests: Int = 0
        /// Deletes that passed authentication with an issued key (whatever was answered next).
        public var acceptedWithTemporaryKey: Int = 0

        var arrivals = ArrivalRing(capacity: 0)

        public func attempts(for exportTaskID: String) -> Int { attemptsByID[exportTaskID] ?? 0 }
        public func deleteCount(for exportTaskID: String) -> Int { deleteCountByID[exportTaskID] ?? 0 }
        public func responses(status: Int) -> Int { responsesByStatus[status] ?? 0 }
        /// The IDs deleted at least once.
        public var deletedIDs: Set<String> { Set(deleteCountByID.keys) }
        /// Arrival times of the latest requests (at most ``Configuration/arrivalHistoryLimit``), oldest first.
        public var arrivalTimes: [ContinuousClock.Instant] { arrivals.ordered }
    }
}

/// A bounded record of arrival times: the latest `capacity`.
struct ArrivalRing: Sendable {
    private var storage: [ContinuousClock.Instant] = []
    private var next = 0
    let capacity: Int

    init(capacity: Int) {
        self.capacity = max(0, capacity)
        storage.reserveCapacity(min(self.capacity, 4096))
    }

    mutating func append(_ instant: ContinuousClock.Instant) {
        guard capacity > 0 else { return }
        if storage.count < capacity {
            storage.append(instant)
        } else {
            storage[next] = instant
            next = (next + 1) % capacity
        }
    }

    var ordered: [ContinuousClock.Instant] {
        storage.count < capacity ? storage : Array(storage[next...] + storage[..<next])
    }
}
