/// An error the user can act on: what went wrong, and which exit status it maps to (docs/commands.md,
/// "Commands").
///
/// Modelled on swift-service-lifecycle's `ServiceGroupError`: an opaque code of static
/// constants plus a message, rather than an enum callers switch over, so that a new code breaks
/// no caller. Messages name the key, line or file at fault and never contain a secret.
public struct CleanerError: Error, CustomStringConvertible, Sendable, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: Hashable, Sendable {
            case configuration, runtime, credentialsRefused
        }

        private let kind: Kind

        /// Bad usage or bad configuration: exit status 2.
        public static let configuration = Code(kind: .configuration)
        /// Failed at run time: exit status 1.
        public static let runtime = Code(kind: .runtime)
        /// The service refused our credentials (`run --drain`): exit status 3.
        public static let credentialsRefused = Code(kind: .credentialsRefused)

        /// The process's exit status for an error of this code.
        public var exitStatus: Int32 {
            switch kind {
            case .configuration: 2
            case .runtime: 1
            case .credentialsRefused: 3
            }
        }

        public var description: String {
            switch kind {
            case .configuration: "configuration"
            case .runtime: "runtime"
            case .credentialsRefused: "credentialsRefused"
            }
        }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func configuration(_ message: String) -> CleanerError { .init(.configuration, message) }
    public static func runtime(_ message: String) -> CleanerError { .init(.runtime, message) }

    public var exitStatus: Int32 { code.exitStatus }

    public var description: String { message }
}
