import FoundationEssentials

/// How far the local clock is from a server's, read from a response's `Date` header (whole
/// seconds). IAM refuses a signature whose `X-Sdk-Date` is more than 15 minutes off its clock, so
/// on a 401 a large offset names the likely cause (docs/credentials.md, "Authentication and credentials").
public struct ClockOffset: Sendable, Hashable {
    /// Positive when the local clock is ahead of the server's.
    public var seconds: Int

    /// Beyond this the offset is named in the log and the status line.
    public static let diagnosisThreshold = 5 * 60
    /// How far off IAM lets a signature's time be.
    public static let signatureTolerance = 15 * 60

    public init(seconds: Int) {
        self.seconds = seconds
    }

    /// From the time a response arrived and its `Date`; held within a century either way, so
    /// no server's date can make the arithmetic trap.
    public init(local: Date, server: Date) {
        let difference = (local.timeIntervalSince1970 - server.timeIntervalSince1970).rounded()
        let century = 100.0 * 366 * 86_400
        seconds = difference.isNaN ? 0 : Int(min(century, max(-century, difference)))
    }

    /// Whether the offset is large enough to name: more than 5 minutes.
    public var isSignificant: Bool { seconds.magnitude > UInt(Self.diagnosisThreshold) }

    /// "the local clock is 1200 s ahead of the server's (IAM refuses signatures more than 15
    /// minutes off)".
    public var explanation: String {
        let direction = seconds > 0 ? "ahead of" : "behind"
        return "the local clock is \(seconds.magnitude) s \(direction) the server's (signatures are refused beyond 15 minutes)"
    }
}
