import Testing

@testable import ExportTaskCleaner

@Suite("Retention: gzip through zlib")
struct GzipTests {
    @Test("what is compressed comes back; empty too")
    func roundTrip() throws {
        for text in ["", "{\"id\":1}\n", String(repeating: "audit row\n", count: 100_000)] {
            let packed = try Gzip.compress(Array(text.utf8))
            #expect(packed.starts(with: [0x1F, 0x8B]))
            #expect(try Gzip.decompress(packed, limit: 1 << 24) == Array(text.utf8))
        }
    }

    @Test("damaged, cut off or oversized data is refused, never trapped on")
    func hostile() throws {
        let packed = try Gzip.compress(Array(String(repeating: "x", count: 10_000).utf8))
        #expect(throws: Gzip.Failure.self) { try Gzip.decompress(Array(packed.prefix(packed.count / 2)), limit: 1 << 20) }
        var flipped = packed
        flipped[packed.count / 2] ^= 0xFF
        #expect(throws: Gzip.Failure.self) { try Gzip.decompress(flipped, limit: 1 << 20) }
        #expect(throws: Gzip.Failure.self) { try Gzip.decompress(packed, limit: 100) }
        #expect(throws: Gzip.Failure.self) { try Gzip.decompress([], limit: 100) }
        #expect(throws: Gzip.Failure.self) { try Gzip.decompress(Array("not gzip".utf8), limit: 100) }
    }

    @Test("members one after another are read as zcat reads them")
    func members() throws {
        let both = try Gzip.compress(Array("one\n".utf8)) + Gzip.compress(Array("two\n".utf8))
        #expect(try Gzip.decompress(both, limit: 100) == Array("one\ntwo\n".utf8))
    }
}
