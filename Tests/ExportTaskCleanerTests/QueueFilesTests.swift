import ExportTaskCleaner
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The queue's files are shared with the service's group whoever creates them (README,
/// "Feeding the queue"); the system test shows the same under systemd with a feeding user.
@Suite("Queue files")
struct QueueFilesTests {
    private func mode(_ path: String) -> mode_t {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o7777 : 0
    }

    private func group(_ path: String) -> gid_t {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_gid : .max
    }

    @Test("a new queue is 0660 whatever the umask, and SQLite gives -wal and -shm the same mode")
    func createdGroupWritable() throws {
        let path = try TestSupport.makeFolder().appendingPathComponent("queue.sqlite3").path
        let old = umask(0o077)
        defer { umask(old) }
        let store = try SQLiteQueueStore(path: path)
        _ = try store.enqueue(TestSupport.items(["a1"]), now: Date())
        #expect(mode(path) == 0o660)
        #expect(mode(path + "-wal") == 0o660)
        #expect(mode(path + "-shm") == 0o660)
        #expect(store.repairs.map(\.change) == ["created with mode 0660"])
    }

    @Test("a queue this user owns without the group's bits is repaired, -wal and -shm too")
    func modesRepaired() throws {
        let path = try TestSupport.makeFolder().appendingPathComponent("queue.sqlite3").path
        do {
            let store = try SQLiteQueueStore(path: path)
            _ = try store.enqueue(TestSupport.items(["a1"]), now: Date())
            // While it is open, -wal and -shm exist; take the group's bits away from all three.
            for file in [path, path + "-wal", path + "-shm"] { chmod(file, 0o600) }
            let again = try SQLiteQueueStore(path: path)
            #expect(again.repairs.map(\.path) == [path, path + "-wal", path + "-shm"])
            #expect(again.repairs.allSatisfy { $0.change == "mode 0600 → 0660" })
        }
        #expect(mode(path) == 0o660)
        #expect(try SQLiteQueueStore(path: path).repairs.isEmpty)
    }

    @Test("in a setgid folder the queue takes the folder's group, and a stray group is repaired")
    func setgidFolderGroup() throws {
        let folder = try TestSupport.makeFolder()
        // A group this user may give files: as root any; otherwise one of its own.
        let target: gid_t = getuid() == 0 ? 4242 : getgid()
        try #require(chown(folder.path, .max, target) == 0)
        try #require(chmod(folder.path, 0o2770) == 0)
        let path = folder.appendingPathComponent("queue.sqlite3").path
        _ = try SQLiteQueueStore(path: path)
        #expect(group(path) == target)
        if getuid() == 0 {
            chown(path, .max, 0)
            let again = try SQLiteQueueStore(path: path)
            #expect(group(path) == target)
            #expect(again.repairs.contains { $0.change == "group 0 → 4242, the folder's" })
        }
    }

    @Test("a missing folder is still named by the opening error")
    func missingFolder() throws {
        let path = try TestSupport.makeFolder().appendingPathComponent("no/such/queue.sqlite3").path
        let error = try #require(throws: CleanerError.self) { try SQLiteQueueStore(path: path) }
        #expect(error.code == .configuration)
        #expect(error.message.contains("does not exist"))
    }
}
