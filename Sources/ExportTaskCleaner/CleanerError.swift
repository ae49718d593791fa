/// An error the user can act on: what went wrong, and which exit status it maps to.
///
/// Modelled on swift-service-lifecycle's error structs: a small code plus a message, rather
/// than one enum case per failure. Messages name the key, line or file at fault and never
/// contain a secret.
public struct CleanerError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: Sendable, Equatable {
        /// Bad usage or bad configuration: exit status 2.
        case configuration
        /// Failed at run time: exit status 1.
        case runtime
        /// The service refused our credentials (`run --drain`): exit status 3.
        case credentialsRefused
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func configuration(_ message: String) -> CleanerError { .init(.configuration, message) }
    public static func runtime(_ message: String) -> CleanerError { .init(.runtime, message) }

    public var exitStatus: Int32 {
        switch code {
        case .configuration: 2
        case .runtime: 1
        case .credentialsRefused: 3
        }
    }

    public var description: String { message }
}
