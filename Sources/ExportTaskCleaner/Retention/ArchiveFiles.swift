import Crypto
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The archive folder's files (docs/database.md, "Retention"): one gzip JSON Lines file per
/// batch pruned, named after the first and last audit row it holds, zero-padded so that `ls`
/// lists them in chain order. Each is written whole under a temporary name, fsynced, renamed,
/// and the folder fsynced, before the transaction that deletes its rows may commit.
package enum ArchiveFiles {
    package static let prefix = "audit-"
    package static let suffix = ".jsonl.gz"
    /// Digits of each ID in a name: 10^16 rows is thousands of years at 20 a second.
    static let digits = 16
    /// An archive file read back is refused beyond this, compressed or not (a batch is a few
    /// megabytes): it is input, not trusted to be small.
    package static let largestFile = 256 << 20

    package struct Failure: Error, CustomStringConvertible {
        package var description: String
    }

    /// `audit-0000000000000001-0000000000002000.jsonl.gz`.
    package static func name(firstID: Int, lastID: Int) -> String {
        prefix + padded(firstID) + "-" + padded(lastID) + suffix
    }

    private static func padded(_ id: Int) -> String {
        let text = String(id)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }

    /// The first and last IDs a file's name gives, or nil for a name that is not an archive's.
    package static func range(ofName name: String) -> (first: Int, last: Int)? {
        guard name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        let middle = name.dropFirst(prefix.count).dropLast(suffix.count)
        let parts = middle.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.count <= 19 && $0.allSatisfy(\.isASCII) }),
              let first = Int(parts[0]), let last = Int(parts[1]), first > 0, last >= first else { return nil }
        return (first, last)
    }

    /// Creates the folder (and its parents) 2770 when missing, like the state folder: the
    /// service's group may read the archives and prune too.
    package static func prepareFolder(_ path: String) throws(Failure) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw Failure(description: "archive folder \(path) is not a folder") }
            return
        }
        let parent = QueueFiles.folder(of: path)
        if parent != path, parent != ".", stat(parent, &info) != 0 { try prepareFolder(parent) }
        guard mkdir(path, 0o2770) == 0 || errno == EEXIST else {
            throw Failure(description: "cannot create the archive folder \(path): \(String(cString: strerror(errno)))")
        }
        _ = chmod(path, 0o2770)
        // The folder's own entry made durable too, before a file in it is trusted with rows.
        try syncFolder(parent == "." || parent.isEmpty ? "." : parent)
    }

    /// Names in the folder that are archives', sorted (chain order).
    package static func list(_ folder: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        return names.filter { range(ofName: $0) != nil }.sorted()
    }

    /// Writes `bytes` as `folder/name` durably: a temporary file, fsync, a link to its name
    /// (never replacing a file already there), fsync of the folder. Returns the file's SHA-256
    /// (hex). Mode 0440: an archive is never changed.
    package static func write(_ bytes: [UInt8], folder: String, name: String) throws(Failure) -> String {
        let final = folder + "/" + name
        let temporary = folder + "/.tmp-" + name
        _ = unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o440)
        guard fd >= 0 else { throw failure("cannot create", temporary) }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { systemWrite(fd, $0.baseAddress! + written, $0.count - written) }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else {
                let error = failure("cannot write", temporary)
                close(fd)
                _ = unlink(temporary)
                throw error
            }
            written += result
        }
        _ = fchmod(fd, 0o440)
        guard fsync(fd) == 0 else {
            let error = failure("cannot fsync", temporary)
            close(fd)
            _ = unlink(temporary)
            throw error
        }
        close(fd)
        guard link(temporary, final) == 0 else {
            let error = failure(errno == EEXIST ? "will not replace \(name), already there, with" : "cannot link \(name) to", temporary)
            _ = unlink(temporary)
            throw error
        }
        _ = unlink(temporary)
        try syncFolder(folder)
        return sha256(bytes)
    }

    /// Sets a file aside under a hidden name that no listing reads (`.set-aside-NAME`, or with a
    /// number when that is taken), and syncs the folder: a file past the checkpoint is kept, not
    /// deleted, since it may hold the only copy of rows (a database restored from a backup older
    /// than the archive, another queue's folder). Returns the new name, or nil.
    package static func setAside(folder: String, name: String) -> String? {
        for attempt in 0..<1_000 {
            let aside = ".set-aside-" + (attempt == 0 ? "" : "\(attempt)-") + name
            if link(folder + "/" + name, folder + "/" + aside) == 0 {
                _ = unlink(folder + "/" + name)
                try? syncFolder(folder)
                return aside
            }
            guard errno == EEXIST else { return nil }
        }
        return nil
    }

    /// Removes a file this prune wrote but did not commit (its rows are all still in the
    /// database), and syncs the folder.
    package static func remove(folder: String, name: String) {
        _ = unlink(folder + "/" + name)
        try? syncFolder(folder)
    }

    package static func syncFolder(_ folder: String) throws(Failure) {
        let fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open", folder) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure("cannot fsync", folder) }
    }

    /// A file's bytes, refused beyond ``largestFile``.
    package static func read(_ path: String) throws(Failure) -> [UInt8] {
        var info = stat()
        guard stat(path, &info) == 0 else { throw failure("cannot read", path) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw Failure(description: "\(path) is not a file") }
        guard Int(info.st_size) <= largestFile else { throw Failure(description: "\(path) is larger than \(largestFile) bytes") }
        guard let data = FileManager.default.contents(atPath: path) else { throw failure("cannot read", path) }
        return Array(data)
    }

    package static func sha256(_ bytes: [UInt8]) -> String {
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        SHA256.hash(data: bytes).withUnsafeBytes { appendLowerHex($0, to: &hex) }
        return String(decoding: hex, as: UTF8.self)
    }

    private static func systemWrite(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        Glibc.write(fd, pointer, count)
        #elseif canImport(Musl)
        Musl.write(fd, pointer, count)
        #else
        Darwin.write(fd, pointer, count)
        #endif
    }

    private static func failure(_ what: String, _ path: String) -> Failure {
        Failure(description: "\(what) \(path): \(String(cString: strerror(errno)))")
    }
}
