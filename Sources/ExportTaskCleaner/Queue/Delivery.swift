/// Whether a request reached the server, as far as the client can tell: the audit log's
/// `delivery` column. The transport reports it; the queue records it.
public enum Delivery: String, Sendable, Hashable, CaseIterable {
    /// A response came.
    case answered
    /// The request was (at least partly) written, but no response came: the server may have acted on it.
    case unknown
    /// No connection was made or nothing was written: the server cannot have acted on it.
    case notSent = "not_sent"
}
