import Testing

@testable import ExportTaskCleaner

/// ``PruneCut`` and ``PruneCarry`` by table (docs/database.md, "Retention").
@Suite("Retention: where a batch ends, and what it carries")
struct PruneCutTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var target: Int
        var rows: [PruneCut.Row]
        /// Rows fed before the cut stopped (nil: all of them).
        var fed: Int?
        var cut: Int?
        var heldAt: Int?
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "the batch ends at its target", target: 3,
             rows: [.leaving, .leaving, .orphan, .leaving], fed: 3, cut: 3),
        Case(name: "a held row ends the batch before it", target: 10,
             rows: [.leaving, .earlierCycle, .held, .leaving], fed: 3, cut: 2, heldAt: 3),
        Case(name: "held at the first row: nothing moves", target: 10, rows: [.held, .leaving], fed: 1, cut: nil, heldAt: 1),
        Case(name: "rows of earlier cycles and orphans move", target: 5,
             rows: [.earlierCycle, .orphan, .earlierCycle], fed: nil, cut: 3),
        Case(name: "the rows run out before the target: all of them", target: 100,
             rows: [.leaving, .leaving], fed: nil, cut: 2),
        Case(name: "a target of one", target: 1, rows: [.leaving, .leaving], fed: 1, cut: 1),
    ]

    @Test("the cut", arguments: cases)
    func cut(_ example: Case) {
        var cut = PruneCut(targetRows: example.target)
        var fed = 0
        for (index, row) in example.rows.enumerated() {
            fed += 1
            if cut.feed(id: index + 1, row) == .stop { break }
        }
        #expect(fed == (example.fed ?? example.rows.count))
        #expect(cut.cut == example.cut)
        #expect(cut.heldAt == example.heldAt)
    }

    static func row(_ outcome: String, attempt: Int? = nil, delivery: String? = nil, leaseLost: Bool = false) -> AuditEntry {
        AuditEntry(id: 1, taskID: 1, exportTaskID: "t", attempt: attempt, at: "", outcome: outcome, delivery: delivery,
                   runner: "r", leaseLost: leaseLost)
    }

    @Test("a carry counts as the consistency check does")
    func carry() {
        var carry = PruneCarry(taskID: 1, exportTaskID: "t")
        for entry in [Self.row("retry", attempt: 1), Self.row("lease_expired", attempt: 2, delivery: "unknown"),
                      Self.row("released", attempt: 3, delivery: "not_sent"), Self.row("auth_refused", attempt: 3),
                      Self.row("deleted", attempt: 2, leaseLost: true)] {
            carry.add(entry)
        }
        #expect(carry.attempts == [1, 2] && carry.finals == 0 && !carry.restarted)
        var later = PruneCarry(taskID: 1, exportTaskID: "t")
        later.add(Self.row("deleted", attempt: 4))
        let merged = later.after(carry)
        #expect(merged.attempts == [1, 2, 4] && merged.finals == 1 && merged.finalOutcome == "deleted")
        var restarted = PruneCarry(taskID: 1, exportTaskID: "t")
        restarted.add(Self.row("retry", attempt: 1))
        restarted.add(Self.row("requeued"))
        restarted.add(Self.row("retry", attempt: 1))
        #expect(restarted.after(carry) == restarted)
        #expect(restarted.attempts == [1] && restarted.restarted)
        #expect(PruneCarry.attempts("1,2,x,3") == [1, 2, 3])
        #expect(PruneCarry.attempts(nil) == [])
    }
}
