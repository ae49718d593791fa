#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The queue's files — the database and SQLite's `-wal` and `-shm` beside it — are shared with
/// the service's group, whoever creates them (docs/database.md, "Feeding the queue").
///
/// SQLite creates a database 0644 less the umask, and gives `-wal` and `-shm` the database's
/// mode. So a database made here is created 0660, whatever the umask, and `-wal`/`-shm` follow.
/// Their group comes from the folder: the state folder is setgid (2770), so every file made in
/// it belongs to the service's group. A writer opening the queue refuses, naming the fix, a
/// file it may not write (`checkAccess`); once the file is known to be a queue (another
/// application's database is left untouched), it adds the group's read and write bits to a
/// file this user owns and moves such a file into the setgid folder's group (`repair`).
public enum QueueFiles {
    /// A change `createIfMissing` or `repair` made, for the log.
    public struct Repair: Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var change: String
        public var description: String { "\(path): \(change)" }
    }

    static let sharedMode: mode_t = 0o660

    /// The database and the `-wal` and `-shm` beside it.
    private static func files(_ path: String) -> [(path: String, isDatabase: Bool)] {
        [(path, true), (path + "-wal", false), (path + "-shm", false)]
    }

    /// Refuses, before anything is opened or changed, a queue file that this user may not read
    /// and write, naming the fix.
    public static func checkAccess(databasePath path: String) throws(CleanerError) {
        let folder = folderInfo(of: path)
        for (file, isDatabase) in files(path) {
            var info = stat()
            guard lstat(file, &info) == 0 else { continue }
            if access(file, R_OK | W_OK) != 0 {
                throw unwritable(file, info: info, folder: folder, isDatabase: isDatabase)
            }
        }
    }

    /// Gives the group's read and write bits to each queue file this user owns without them,
    /// and moves such a file into a setgid folder's group. Returns what it changed.
    ///
    /// By path, not through a descriptor of its own: closing any descriptor of the database
    /// would drop the POSIX locks SQLite holds on it in this process. And never as root: in the
    /// group-writable folder a member could swap a file for a symlink between the check and
    /// the change, and root's chmod would follow it anywhere (root needs no repair: SQLite
    /// gives the files it makes as root to the database's owner).
    public static func repair(databasePath path: String) -> [Repair] {
        guard geteuid() != 0 else { return [] }
        var repairs: [Repair] = []
        let folder = folderInfo(of: path)
        for (file, _) in files(path) {
            var info = stat()
            guard lstat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid() else { continue }
            if info.st_mode & sharedMode != sharedMode, chmod(file, (info.st_mode | sharedMode) & 0o7777) == 0 {
                repairs.append(.init(path: file, change: "mode \(octal(info.st_mode)) → \(octal(info.st_mode | sharedMode))"))
            }
            if let folder, folder.setgid, info.st_gid != folder.gid, lchown(file, uid_t.max, folder.gid) == 0 {
                repairs.append(.init(path: file, change: "group \(info.st_gid) → \(folder.gid), the folder's"))
            }
        }
        return repairs
    }

    /// Creates an empty database file 0660 (not less the umask, in a setgid folder's group);
    /// false when it existed, or when it cannot be made here (SQLite's open then names why).
    public static func createIfMissing(_ path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, sharedMode)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        _ = fchmod(fd, sharedMode)
        if let folder = folderInfo(of: path), folder.setgid { _ = fchown(fd, uid_t.max, folder.gid) }
        return true
    }

    private struct Folder {
        var path: String
        var gid: gid_t
        var setgid: Bool
    }

    /// The folder a file is in (`.` for a bare name).
    static func folder(of path: String) -> String {
        path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
    }

    private static func folderInfo(of path: String) -> Folder? {
        let folder = folder(of: path)
        var info = stat()
        guard stat(folder, &info) == 0 else { return nil }
        return Folder(path: folder, gid: info.st_gid, setgid: info.st_mode & S_ISGID != 0)
    }

    /// A file another user made that this one cannot write: a database is a setup error
    /// (exit 2); a `-wal` or `-shm` left by a feeding tool that still has the database open is
    /// a passing one (exit 1, so systemd tries again), gone when that tool closes it.
    private static func unwritable(_ file: String, info: stat, folder: Folder?, isDatabase: Bool) -> CleanerError {
        let owner = "owned by uid \(info.st_uid), gid \(info.st_gid), mode \(octal(info.st_mode))"
        var fix = "make it group-writable for this service's group (chgrp GROUP \(file); chmod g+rw \(file))"
        if let folder, !folder.setgid {
            fix += " and make its folder setgid (chmod g+s \(folder.path)) so that files created there keep the group"
        }
        let message = "database: this user (uid \(geteuid())) cannot write \(file) (\(owner)); \(fix)"
        return isDatabase ? .configuration(message) : .runtime(message + "; it goes away once the tool that made it closes the database")
    }

    static func octal(_ mode: mode_t) -> String {
        let text = String(mode & 0o7777, radix: 8)
        return String(repeating: "0", count: max(0, 4 - text.count)) + text
    }
}
