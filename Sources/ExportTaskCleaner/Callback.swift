/// A closure kept in a class, so that it can sit in a `Mutex` and be read out of it for the
/// life of the process.
///
/// Swift 6.3.1 (at `-O` and `-Onone` alike) rewraps a closure stored in a `Mutex` directly
/// (as its value, an optional of it, or a tuple holding it) in two more reabstraction thunks
/// each time `withLock { $0 }` reads it out: every call walks a longer chain, and some 200,000
/// reads overflow the stack (docs/development.md, "Endurance"). A class
/// reference is stored as it is, so reading it costs the same on the millionth read as on
/// the first. Keep every closure that a lock guards in one of these (or in a field of a
/// struct, which the compiler does not rewrap).
package final class Callback<Result>: Sendable {
    package let call: @Sendable () -> Result

    package init(_ call: @escaping @Sendable () -> Result) {
        self.call = call
    }
}
