/// A store's failure, in the terms the service and the commands act on, whichever store it
/// came from (docs/operations.md, "Behaviour under failures"). The store's own error, with its
/// code and message, is kept in `description` for the log; no password is ever in it.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The data is damaged or not a queue: trying again cannot help, and the service stops.
        case corrupt
        /// For now: busy, locked, a full disk, the server restarting or out of reach. Trying
        /// again later may succeed; the service holds its outcomes and retries.
        case unavailable
        /// The store refused the statement: a permission, a constraint, a schema it does not
        /// know. Trying the same again fails the same way.
        case refused
    }

    public var kind: Kind
    public var description: String

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }

    public var isCorruption: Bool { kind == .corrupt }
}
