import Testing

@testable import ExportTaskCleaner

/// ``BatchSizer`` by table: each batch's commit should hold the write lock 100 ms at most.
@Suite("Retention: batch size by lock hold")
struct BatchSizerTests {
    @Test("halved above 100 ms, doubled under a third of it, within 100 and the largest", arguments: [
        (5_000, [150, 150, 50, 20, 20], [2_500, 1_250, 1_250, 2_500, 5_000]),
        (5_000, [20, 1_000], [5_000, 2_500]),
        (5_000, [400, 400, 400, 400, 400, 400, 400], [2_500, 1_250, 625, 312, 156, 100, 100]),
        (3_000, [200, 10, 10], [1_500, 3_000, 3_000]),
        (50, [500, 1], [50, 50]),
        (1, [500], [1]),
    ])
    func sizes(largest: Int, holds: [Int], expected: [Int]) {
        var sizer = BatchSizer(largest: largest)
        #expect(sizer.rows == largest)
        var sizes: [Int] = []
        for hold in holds {
            sizer.committed(holding: .milliseconds(hold))
            sizes.append(sizer.rows)
        }
        #expect(sizes == expected)
    }
}
