import ExportTaskCleaner
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The queue's files are shared with the service's group whoever creates them (docs/database.md,
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
    func createdGroupWritable() async throws {
        let path = try TestSupport.makeFolder().appendingPathComponent("queue.sqlite3").path
        let old = umask(0o077)
        defer { umask(old) }
        let store = try SQLiteQueueStore(path: path)
        _ = try await store.enqueue(TestSupport.items(["a1"]), now: Date())
        #expect(mode(path) == 0o660)
        #expect(mode(path + "-wal") == 0o660)
        #expect(mode(path + "-shm") == 0o660)
        #expect(store.repairs.map(\.change) == ["created with mode 0660"])
    }

    /// Runs the built binary's `enqueue` as `nobody` (repairs are never made as root), with a
    /// configuration naming `database`; returns its exit status.
    private func enqueueAsNobody(_ database: String, _ id: String) throws -> Int32 {
        let folder = (database as NSString).deletingLastPathComponent
        let config = folder + "/config.json"
        try Data(#"{"region": "cn-north-4", "project_id": "p1", "database": "\#(database)"}"#.utf8)
            .write(to: URL(fileURLWithPath: config))
        chmod(config, 0o644)
        // A link beside the queue: the build folder may sit where nobody cannot reach it (a
        // clone in a 0700 temporary folder). A hard link costs nothing; copying the 100 MB
        // debug binary, only where the folders are on different file systems.
        let binary = folder + "/export-task-cleaner"
        if !FileManager.default.fileExists(atPath: binary) {
            if link(ChildProcess.binary.path, binary) != 0 {
                try FileManager.default.copyItem(atPath: ChildProcess.binary.path, toPath: binary)
            }
            chmod(binary, 0o755)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        process.arguments = ["-u", "nobody", "--", binary, "enqueue", "--config", config, id]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    @Test("a queue its user owns without the group's bits is repaired, -wal and -shm too; root repairs nothing",
          .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser"), "runs the binary as nobody"))
    func modesRepaired() throws {
        let folder = try TestSupport.makeFolder()
        let nobody = getpwnam("nobody").pointee
        try #require(chown(folder.path, nobody.pw_uid, nobody.pw_gid) == 0)
        let path = folder.appendingPathComponent("queue.sqlite3").path
        #expect(try enqueueAsNobody(path, "a1") == 0)
        #expect(mode(path) == 0o660)
        // Take the group's bits away; root opening it changes nothing, nobody repairs them.
        chmod(path, 0o600)
        #expect(try SQLiteQueueStore(path: path).repairs.isEmpty)
        #expect(mode(path) == 0o600)
        #expect(try enqueueAsNobody(path, "a2") == 0)
        #expect(mode(path) == 0o660)
    }

    @Test("in a setgid folder the queue takes the folder's group, and a stray group is repaired",
          .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser"), "runs the binary as nobody"))
    func setgidFolderGroup() throws {
        let folder = try TestSupport.makeFolder()
        let nobody = getpwnam("nobody").pointee
        try #require(chown(folder.path, nobody.pw_uid, nobody.pw_gid) == 0)
        try #require(chmod(folder.path, 0o2770) == 0)
        let path = folder.appendingPathComponent("queue.sqlite3").path
        #expect(try enqueueAsNobody(path, "a1") == 0)
        #expect(group(path) == nobody.pw_gid)
        // A stray group on a file nobody owns (set by root here) moves back to the folder's.
        chown(path, .max, 0)
        #expect(try enqueueAsNobody(path, "a2") == 0)
        #expect(group(path) == nobody.pw_gid)
    }

    @Test("a missing folder is still named by the opening error")
    func missingFolder() throws {
        let path = try TestSupport.makeFolder().appendingPathComponent("no/such/queue.sqlite3").path
        let error = try #require(throws: CleanerError.self) { try SQLiteQueueStore(path: path) }
        #expect(error.code == .configuration)
        #expect(error.message.contains("does not exist"))
    }
}
