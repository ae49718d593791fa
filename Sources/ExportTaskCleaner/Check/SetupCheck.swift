import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `export-task-cleaner check [--probe]` (docs/commands.md, "Commands"): what the configuration,
/// the credentials and the database look like before the service is enabled. Nothing here
/// writes to the queue.
public enum SetupCheck {
    /// One finding: what was looked at, what was found, and whether it is fine.
    public struct Finding: Sendable, Equatable {
        public var label: String
        public var value: String
        public var ok: Bool

        public init(_ label: String, _ value: String, ok: Bool = true) {
            self.label = label
            self.value = value
            self.ok = ok
        }
    }

    /// The queue at `path`: whether it can be read and written, and its schema version. Opened
    /// read-only, never created or migrated.
    public static func database(path: String) -> [Finding] {
        var findings: [Finding] = []
        let folder = QueueFiles.folder(of: path)
        guard access(path, F_OK) == 0 else {
            let creatable = access(folder, W_OK | X_OK) == 0
            findings.append(Finding("database", "\(TextFormat.printable(path)) does not exist yet; "
                + (creatable ? "`run` or `enqueue` creates it" : "and this user cannot create it in \(TextFormat.printable(folder))"),
                ok: creatable))
            return findings
        }
        let writable = access(path, R_OK | W_OK) == 0
        // SQLite writes -wal and -shm beside the file.
        let folderWritable = access(folder, W_OK | X_OK) == 0
        findings.append(Finding("database", TextFormat.printable(path)))
        findings.append(Finding("writable", writable && folderWritable
            ? "yes (the file and its folder)"
            : writable ? "the file yes, but not its folder \(TextFormat.printable(folder)), where SQLite keeps -wal and -shm"
            : "no: this user cannot write \(TextFormat.printable(path))",
            ok: writable && folderWritable))
        findings.append(schema(path: path))
        return findings
    }

    /// The file's schema version, read without changing anything: this release's, an older one
    /// that `run` migrates, or a problem (not a queue; a newer release's).
    static func schema(path: String) -> Finding {
        let current = SQLiteQueueStore.schemaVersion
        do {
            let connection = try SQLiteConnection(path: path, mode: .readOnly)
            let found = try connection.scalarInt("PRAGMA user_version") ?? 0
            switch found {
            case current: return Finding("schema", "version \(found), this release's")
            case 1..<current: return Finding("schema", "version \(found); `run` or `enqueue` migrates it to \(current)")
            case 0 where isEmpty(connection): return Finding("schema", "none yet (an empty file): `run` or `enqueue` creates it")
            case 0: return Finding("schema", "no export-task-cleaner schema: another application's database", ok: false)
            default: return Finding("schema", "version \(found), of a newer export-task-cleaner than this one (\(current))", ok: false)
            }
        } catch {
            return Finding("schema", "cannot read it: \(error)", ok: false)
        }
    }

    private static func isEmpty(_ connection: SQLiteConnection) -> Bool {
        (try? connection.scalarInt("SELECT count(*) FROM sqlite_master")) == 0
    }

    /// A made-up export task ID that no export task has: `etc-check-` and 16 random hex digits.
    public static func probeExportTaskID() -> String {
        let digits = String(UInt64.random(in: .min ... .max), radix: 16)
        return "etc-check-" + String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// What an answer to the probe means.
    public struct Verdict: Sendable, Equatable {
        public var ok: Bool
        /// 0 works; 1 does not (permission, network, server); 3 credentials refused, as `run --drain`.
        public var exitCode: Int32
        public var explanation: String
    }

    /// Explains the answer to a DELETE of a made-up export task.
    public static func explain(_ result: DeleteResult) -> Verdict {
        let detail = [result.httpStatus.map { "HTTP \($0)" }, result.errorCode, result.errorMessage,
                      result.requestID.map { "request ID \($0)" }]
            .compactMap { $0 }.map(TextFormat.printable).joined(separator: "; ")
        if result.unfinishedAnswerStatus != nil {
            // The head came and the body did not: the endpoint is reached (docs/commands.md, "Commands": check).
            return Verdict(ok: false, exitCode: 1, explanation:
                "\(TextFormat.printable(result.errorMessage ?? "answered but did not finish its answer")): the endpoint can be reached, but the server or a proxy on the way stalls in the middle of an answer; try again, and check proxies")
        }
        guard let status = result.httpStatus else {
            return Verdict(ok: false, exitCode: 1, explanation:
                "no answer (\(TextFormat.printable(result.errorMessage ?? "no response"))): the endpoint cannot be reached from here; check the endpoint, DNS, firewalls and proxies")
        }
        switch status {
        case 404 where (result.errorCode ?? "").hasPrefix("APIG"):
            return Verdict(ok: false, exitCode: 1, explanation:
                "404 from the API gateway (\(detail)): the endpoint answers but does not serve this API; check the endpoint and region")
        case 404:
            return Verdict(ok: true, exitCode: 0, explanation:
                "404, the made-up export task does not exist (\(detail)): the endpoint, the credentials and the permission to delete export tasks work")
        case 200..<300:
            return Verdict(ok: true, exitCode: 0, explanation:
                "\(status): the endpoint, the credentials and the permission work (the made-up export task existed?)")
        case 401:
            let clock = result.clockOffset.map { offset in
                offset.isSignificant
                    ? " By the answer's Date header \(offset.explanation): fix the clock (NTP) first."
                    : " The local clock agrees with the server's (\(offset.seconds) s off), so it is the key."
            } ?? ""
            return Verdict(ok: false, exitCode: 3, explanation:
                "401, the credentials were refused (\(detail)): a wrong, revoked or expired key, a wrong region for derived signing, or the local clock.\(clock)")
        case 403:
            return Verdict(ok: false, exitCode: 1, explanation:
                "403, forbidden (\(detail)): the credentials work, but their user lacks the IAM action iotda:exporttasks:delete, or the project or instance is not theirs")
        case 429:
            return Verdict(ok: false, exitCode: 1, explanation: "429, too many requests (\(detail)): try again later; lower max_requests_per_second if it persists")
        case 500..<600:
            return Verdict(ok: false, exitCode: 1, explanation: "\(status), a server error (\(detail)): try again later")
        default:
            return Verdict(ok: false, exitCode: 1, explanation: "\(status), refused (\(detail)): see the error code in IoTDA's documentation")
        }
    }

    /// Explains a list request's outcome for `check --probe`: a 2xx whose body is not a list
    /// of export tasks is a problem too.
    public static func explainList(_ listed: ListResult) -> Verdict {
        if let problem = listed.problem, let status = listed.response.httpStatus {
            return Verdict(ok: false, exitCode: 1, explanation:
                "\(status), but the answer is not a list of export tasks (\(TextFormat.printable(problem))): check the endpoint and proxies")
        }
        return explainList(listed.response)
    }

    /// Explains an answer to a list of export tasks (`check --probe`, `sweep`): as a delete's,
    /// but a 403 names the list's IAM action and a 404 is never an export task's.
    public static func explainList(_ result: DeleteResult) -> Verdict {
        let detail = [result.httpStatus.map { "HTTP \($0)" }, result.errorCode, result.errorMessage,
                      result.requestID.map { "request ID \($0)" }]
            .compactMap { $0 }.map(TextFormat.printable).joined(separator: "; ")
        switch result.httpStatus {
        case let status? where (200..<300).contains(status) && result.unfinishedAnswerStatus == nil:
            return Verdict(ok: true, exitCode: 0, explanation:
                "\(status): the credentials and the permission to list export tasks work")
        case 403?:
            return Verdict(ok: false, exitCode: 1, explanation:
                "403, forbidden (\(detail)): the credentials work, but their user lacks the IAM action iotda:exporttasks:queryList, or the project or instance is not theirs")
        case 404? where !(result.errorCode ?? "").hasPrefix("APIG"):
            return Verdict(ok: false, exitCode: 1, explanation:
                "404 (\(detail)): the endpoint answers but does not list export tasks; check the endpoint, region and project")
        default:
            return explain(result)
        }
    }
}
