import FoundationEssentials

/// Reads an archive file back (docs/database.md, "Retention"): checked against the SHA-256 its
/// checkpoint recorded, decompressed within a bound, one JSON line at a time. Every file is
/// input: damage is a message naming the file and line, never a trap.
package struct ArchiveReader {
    /// Decompressed bytes of one file at most.
    static let largestContent = 1 << 30

    package enum Item {
        case audit(AuditEntry)
        case task(ArchivedTask)
    }

    package struct Failure: Error, CustomStringConvertible {
        package var description: String
    }

    /// The file of `checkpoint` in `folder`, checked and decoded; `body` gets each line's item
    /// and its line number, and returns false to stop.
    package static func read(_ checkpoint: ArchiveCheckpoint, folder: String,
                             _ body: (Item, Int) throws -> Bool) throws {
        let path = folder + "/" + checkpoint.file
        guard FileManager.default.fileExists(atPath: path) else {
            throw Failure(description: "\(checkpoint.file) (rows \(checkpoint.firstID) to \(checkpoint.lastID)) is missing from \(folder)")
        }
        let bytes: [UInt8]
        do { bytes = try ArchiveFiles.read(path) } catch { throw Failure(description: error.description) }
        guard ArchiveFiles.sha256(bytes) == checkpoint.sha256 else {
            throw Failure(description: "\(checkpoint.file) does not match the SHA-256 the database recorded for it: it was changed or replaced")
        }
        let content: [UInt8]
        do { content = try Gzip.decompress(bytes, limit: largestContent) } catch {
            throw Failure(description: "\(checkpoint.file): \(error.description)")
        }
        let decoder = JSONDecoder()
        var line = 0
        var start = 0
        while start < content.count {
            var end = start
            while end < content.count, content[end] != 0x0A { end += 1 }
            line += 1
            let text = content[start..<end]
            start = end + 1
            guard !text.isEmpty else { continue }
            let item: Item
            do {
                if let task = try decoder.decode(ArchiveLine.self, from: Data(text)).task {
                    item = .task(task)
                } else {
                    item = .audit(try decoder.decode(AuditEntry.self, from: Data(text)))
                }
            } catch {
                throw Failure(description: "\(checkpoint.file), line \(line): not an audit row or a task")
            }
            guard try body(item, line) else { return }
        }
    }
}

/// What `audit --verify --archive` found in the archives, before the database continues it.
public struct ArchiveVerification: Sendable {
    public var files = 0
    public var rows = 0
    public var tasks = 0
    /// The first thing that breaks the chain, naming the file and line; nil when all holds.
    public var problem: String?
    /// Files an interrupted prune left (their rows are still in the database): not a fault.
    public var leftovers: [String] = []
    /// The walk, to continue into the database.
    public var walker = AuditVerification.Walker()

    /// Walks every checkpoint's file in order from row 1, as one chain.
    public static func verify(_ checkpoints: [ArchiveCheckpoint], folder: String) -> ArchiveVerification {
        var result = ArchiveVerification()
        let recorded = Set(checkpoints.map(\.file))
        let lastID = checkpoints.last?.lastID ?? 0
        var strays: [String] = []
        for name in ArchiveFiles.list(folder) where !recorded.contains(name) {
            if let range = ArchiveFiles.range(ofName: name), range.first > lastID {
                result.leftovers.append(name)
            } else {
                strays.append(name)
            }
        }
        for checkpoint in checkpoints {
            guard checkpoint.file == ArchiveFiles.name(firstID: checkpoint.firstID, lastID: checkpoint.lastID) else {
                result.problem = "checkpoint \(checkpoint.sequence) names \(IDList.quoted(checkpoint.file)) for rows \(checkpoint.firstID) to \(checkpoint.lastID): not the name export-task-cleaner gives them"
                return result
            }
            do {
                try ArchiveReader.read(checkpoint, folder: folder) { item, line in
                    switch item {
                    case .task:
                        result.tasks += 1
                    case .audit(let entry):
                        guard result.walker.check(id: entry.id, values: AuditChain.values(of: entry), stored: entry.hash) else {
                            result.problem = "\(checkpoint.file), line \(line): \(result.walker.result.problem ?? "")"
                            return false
                        }
                        result.rows += 1
                    }
                    return true
                }
            } catch {
                result.problem = "\(error)"
                return result
            }
            if result.problem != nil { return result }
            let position = result.walker.position
            guard position.lastID == checkpoint.lastID, position.hash == checkpoint.lastHash else {
                result.problem = "\(checkpoint.file) ends at row \(position.lastID), not at row \(checkpoint.lastID) with the hash its checkpoint recorded"
                return result
            }
            result.files += 1
        }
        if let stray = strays.first {
            result.problem = "\(stray) is in \(folder) but no checkpoint in the database records it (\(strays.count) such file\(strays.count == 1 ? "" : "s"))"
        }
        return result
    }
}
