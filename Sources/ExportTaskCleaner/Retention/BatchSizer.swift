/// How many audit rows the next batch of a prune takes (docs/database.md, "Retention"): each
/// batch's commit should hold the write lock about ``target`` at most, whatever the machine's
/// load. A commit that took longer halves the next batch; one well under it doubles the next
/// batch, up to the largest size. Table-tested (`BatchSizerTests`).
package struct BatchSizer: Sendable, Equatable {
    /// The lock hold a batch aims to stay under.
    package static let target: Duration = .milliseconds(100)
    /// The smallest batch: below it, a batch's fixed costs (a file, two fsyncs) dominate.
    package static let smallest = 100

    package let largest: Int
    package private(set) var rows: Int

    package init(largest: Int) {
        self.largest = max(1, largest)
        rows = self.largest
    }

    /// The next batch's size after a commit that held the lock `hold`.
    package mutating func committed(holding hold: Duration) {
        if hold > Self.target {
            rows = max(min(Self.smallest, largest), rows / 2)
        } else if hold * 3 < Self.target {
            rows = rows > largest / 2 ? largest : rows * 2
        }
    }
}
