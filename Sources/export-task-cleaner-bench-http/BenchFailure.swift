/// A measurement that went wrong: its message is printed, and the exit status is 1.
struct BenchFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
