#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The queue's files — the database and SQLite's `-wal` and `-shm` beside it — are shared with
/// the service's group, whoever creates them (README, "Feeding the queue").
///
/// SQLite creates a database 0644 less the umask, and gives `-wal` and `-shm` the database's
/// mode. So a database made here is created 0660, whatever the umask, and `-wal`/`-shm` follow.
/// Their group comes from the folder: the state folder is setgid (2770), so every file made in
/// it belongs to the service's group. Before a writer opens the queue, `prepare` checks the
/// three files: it adds the group's read and write bits to a file this user owns, moves such a
/// file into the setgid folder's group, and refuses, naming the fix, a file this user may not
/// write.
public enum QueueFiles {
    /// A change `prepare` made, for the log.
    public struct Repair: Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var change: String
        public var description: String { "\(path): \(change)" }
    }

    static let sharedMode: mode_t = 0o660

    /// Creates the database 0660 when missing, and repairs or refuses the modes of the files
    /// that exist. Returns what it changed.
    public static func prepare(databasePath path: String) throws(CleanerError) -> [Repair] {
        var repairs: [Repair] = []
        if createIfMissing(path) {
            repairs.append(.init(path: path, change: "created with mode 0660"))
        }
        let folder = folderInfo(of: path)
        for (file, isDatabase) in [(path, true), (path + "-wal", false), (path + "-shm", false)] {
            var info = stat()
            guard lstat(file, &info) == 0 else { continue }
            if info.st_uid == geteuid() {
                if info.st_mode & sharedMode != sharedMode, chmod(file, (info.st_mode | sharedMode) & 0o7777) == 0 {
                    repairs.append(.init(path: file, change: "mode \(octal(info.st_mode)) → \(octal(info.st_mode | sharedMode))"))
                }
                if let folder, folder.setgid, info.st_gid != folder.gid, chown(file, uid_t.max, folder.gid) == 0 {
                    repairs.append(.init(path: file, change: "group \(info.st_gid) → \(folder.gid), the folder's"))
                }
            }
            if access(file, R_OK | W_OK) != 0 {
                throw unwritable(file, info: info, folder: folder, isDatabase: isDatabase)
            }
        }
        return repairs
    }

    /// Creates an empty database file 0660 (not less the umask); false when it existed, or
    /// when it cannot be made here (SQLite's open then names the reason).
    private static func createIfMissing(_ path: String) -> Bool {
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

    private static func folderInfo(of path: String) -> Folder? {
        let folder = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
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
