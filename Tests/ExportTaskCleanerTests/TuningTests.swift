@testable import ExportTaskCleaner
import Testing

/// How far ahead the work loop claims: half the concurrency, or half a second's worth at the
/// rate if that is more; never less than one, never more than 32, whatever it is given.
@Suite("Tuning")
struct TuningTests {
    @Test("prefetch by concurrency and rate", arguments: [
        // (concurrency, rate, prefetch)
        (16, 20.0, 10), (16, 50.0, 25), (16, 200.0, 32), (16, 400.0, 32),
        (64, 20.0, 32), (256, 1.0, 32), (8, 1.0, 4), (1, 0.001, 1), (1, 20.0, 10),
        (2, 3.0, 1), (4, 100_000.0, 32), (0, 0.0, 1), (-5, -1.0, 1),
        (16, .nan, 8), (16, .infinity, 32), (16, -.infinity, 8), (Int.max, .greatestFiniteMagnitude, 32),
    ] as [(Int, Double, Int)])
    func prefetch(concurrency: Int, rate: Double, expected: Int) {
        #expect(Tuning.prefetch(concurrency: concurrency, rate: rate) == expected)
    }

    @Test("runners ask for more when fewer than half the prefetch are left", arguments: [
        (1, 0), (2, 0), (4, 1), (8, 3), (25, 11), (32, 15),
    ])
    func lowWater(prefetch: Int, expected: Int) {
        #expect(Tuning.lowWater(prefetch: prefetch) == expected)
    }
}
