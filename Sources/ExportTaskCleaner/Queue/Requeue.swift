public enum RequeueSelection: Sendable, Equatable {
    case state(TaskState)
    case exportTaskIDs([String])
}

public struct RequeueSummary: Sendable, Equatable {
    public var requeued = 0
    /// Named IDs that are not in the queue.
    public var unknown: [String] = []
    /// Named IDs that are pending or in progress, so there is nothing to requeue.
    public var notFinished: [String] = []

    public init() {}
}
