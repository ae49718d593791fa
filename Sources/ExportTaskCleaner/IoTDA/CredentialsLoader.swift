#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where credentials were found (for the log line that says so; never the secret itself).
public enum CredentialSource: String, Sendable {
    case credentialsDirectory = "$CREDENTIALS_DIRECTORY"
    case credentialsFile = "auth.credentials_file"
    case environment = "environment"
}

/// Finds the credentials for an `auth.method`. They never sit in the configuration itself.
///
/// Sources, first found wins:
///
/// 1. **`$CREDENTIALS_DIRECTORY`** (systemd `LoadCredential=`/`SetCredentialEncrypted=`): the
///    files `ak` and `sk`, plus `security_token` for a temporary key; for `auth.method: token`
///    the file `token`. A directory holding none of the files the method needs is passed
///    over; one holding only some of them is an error.
/// 2. **`auth.credentials_file`**: when configured it must exist, be a regular file, and be
///    readable and writable by its owner only (mode `0600` or `0400`; anything open to the group
///    or others is refused with the `chmod 600 <path>` that fixes it), belong to this user or
///    root, and lie in folders no one else may write (as OpenSSH's StrictModes). Its format:
///
///    ```
///    # comments and blank lines are allowed
///    ak = QTWAOYTTINDUT2QVKYUC
///    sk = MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc
///    security_token = ...        # optional: temporary keys only
///    token = ...                 # auth.method token instead of ak/sk
///    database_password = ...     # the PostgreSQL store's (PostgresPassword), nothing else's
///    ```
///
///    One `key = value` a line; keys are case-insensitive, and the official SDKs' variable
///    names are accepted as synonyms (`HUAWEICLOUD_SDK_AK`, `HUAWEICLOUD_SDK_SK`,
///    `HUAWEICLOUD_SDK_SECURITY_TOKEN`, `HUAWEICLOUD_SDK_AUTH_TOKEN`). White space around keys
///    and values is ignored, and one pair of matching quotes around a value is removed. A `#`
///    starts a comment only at the beginning of a line (a value may contain `#`). A malformed
///    line is reported by file and line number, never by its content, which may be a secret.
/// 3. **The environment**: the official SDKs' `HUAWEICLOUD_SDK_AK`, `HUAWEICLOUD_SDK_SK` and
///    `HUAWEICLOUD_SDK_SECURITY_TOKEN`. The SDKs define no variable for an IAM token, so for
///    `auth.method: token` this tool reads `HUAWEICLOUD_SDK_AUTH_TOKEN`.
///
/// Values are trimmed of surrounding white space (a file's trailing newline included); an
/// empty value, or one with a control character inside, is an error. Missing or partial
/// credentials are a ``CleanerError`` (`configuration`) naming what is missing and every place
/// looked at.
public enum CredentialsLoader {
    public static let directoryVariable = "CREDENTIALS_DIRECTORY"
    public static let akVariable = "HUAWEICLOUD_SDK_AK"
    public static let skVariable = "HUAWEICLOUD_SDK_SK"
    public static let securityTokenVariable = "HUAWEICLOUD_SDK_SECURITY_TOKEN"
    public static let authTokenVariable = "HUAWEICLOUD_SDK_AUTH_TOKEN"

    /// The largest credentials file read; anything bigger is not a credentials file.
    static let maximumFileSize = 64 * 1024

    /// Loads the credentials for `method`; see ``CredentialsLoader`` for the sources and their
    /// order.
    public static func load(
        method: AuthMethod,
        credentialsFile: String?,
        environment: [String: String]
    ) throws -> (credentials: Credentials, source: CredentialSource) {
        guard method != .metadata else {
            throw CleanerError.configuration("auth.method \"metadata\" reads its credentials from the ECS metadata service, not from files or the environment")
        }
        var lookedAt: [String] = []

        if let directory = environment[directoryVariable], !directory.isEmpty {
            if let credentials = try fromDirectory(directory, method: method) {
                return (credentials, .credentialsDirectory)
            }
            lookedAt.append("$\(directoryVariable) (\(directory)) has no \(method.fileNames)")
        } else {
            lookedAt.append("$\(directoryVariable) is not set")
        }

        if let path = credentialsFile, !path.isEmpty {
            return (try fromFile(path, method: method), .credentialsFile)
        }
        lookedAt.append("auth.credentials_file is not set")

        if let credentials = try fromEnvironment(environment, method: method) {
            return (credentials, .environment)
        }
        lookedAt.append("\(method.variableNames) \(method == .aksk ? "are" : "is") not set")

        throw CleanerError.configuration(
            "no credentials for auth.method \"\(method.rawValue)\": " + lookedAt.joined(separator: "; ")
        )
    }

    // MARK: - $CREDENTIALS_DIRECTORY

    private static func fromDirectory(_ directory: String, method: AuthMethod) throws -> Credentials? {
        let base = directory.hasSuffix("/") ? directory : directory + "/"
        func value(_ name: String) throws -> String? {
            let path = base + name
            guard let bytes = try readFile(path) else { return nil }
            return try credentialValue(bytes, describedAs: "\(path)")
        }

        switch method {
        case .metadata:
            return nil
        case .token:
            return try value("token").map(Credentials.token)
        case .aksk:
            let ak = try value("ak")
            let sk = try value("sk")
            let securityToken = try value("security_token")
            if ak == nil, sk == nil, securityToken == nil { return nil }
            guard let ak, let sk else {
                let missing = [ak == nil ? "ak" : nil, sk == nil ? "sk" : nil].compactMap { $0 }
                throw CleanerError.configuration(
                    "$\(directoryVariable) (\(directory)) has no \(missing.joined(separator: " or ")) file; "
                        + "systemd LoadCredential= must provide both ak and sk"
                )
            }
            return .accessKey(AccessKey(ak: ak, sk: sk, securityToken: securityToken))
        }
    }

    // MARK: - auth.credentials_file

    private static func fromFile(_ path: String, method: AuthMethod) throws -> Credentials {
        let fields = try checkedFields(path)

        switch method {
        case .metadata:
            throw CleanerError.configuration("auth.credentials_file is not used with auth.method \"metadata\"")
        case .token:
            guard let token = fields[.token] else {
                throw CleanerError.configuration("auth.credentials_file: \(path) has no token (needed for auth.method \"token\")")
            }
            return .token(token)
        case .aksk:
            guard let ak = fields[.ak], let sk = fields[.sk] else {
                let missing = [fields[.ak] == nil ? "ak" : nil, fields[.sk] == nil ? "sk" : nil].compactMap { $0 }
                throw CleanerError.configuration(
                    "auth.credentials_file: \(path) has no \(missing.joined(separator: " or ")) (needed for auth.method \"aksk\")"
                )
            }
            return .accessKey(AccessKey(ak: ak, sk: sk, securityToken: fields[.securityToken]))
        }
    }

    /// The credentials file's `database_password`, or nil when the file has none: the same
    /// checks of the file (mode, owner, folders) and the same format as for the keys, for the
    /// PostgreSQL store's password (``PostgresPassword``; docs/credentials.md, "Credential
    /// sources"). The other keys are parsed and checked, and left unused.
    public static func databasePassword(credentialsFile path: String) throws -> String? {
        try checkedFields(path)[.databasePassword]
    }

    /// The file at `path`, held to the rules above, parsed.
    private static func checkedFields(_ path: String) throws -> [CredentialsFileFormat.Field: String] {
        guard let file = try readFile(path, withMode: true) else {
            throw CleanerError.configuration("auth.credentials_file: \(path) does not exist")
        }
        let mode = file.mode
        if mode & 0o077 != 0 {
            throw CleanerError.configuration(
                "auth.credentials_file: \(path) is accessible by group or others (mode \(String(mode & 0o777, radix: 8))); "
                    + "run chmod 600 \(path)"
            )
        }
        // As OpenSSH's StrictModes: the file (a symlink's target included) belongs to this user
        // or root, and no folder on its way can be written by someone else, who could swap it.
        if file.owner != geteuid(), file.owner != 0 {
            throw CleanerError.configuration(
                "auth.credentials_file: \(path) belongs to uid \(file.owner), not to this user (uid \(geteuid())) or root; "
                    + "run chown \(geteuid()) \(path)")
        }
        try checkFolders(of: path)
        return try CredentialsFileFormat.parse(file.bytes, path: path)
    }

    /// Each folder from the file's real location up to `/` must belong to root or this user and
    /// be writable by no one else, unless it is sticky (as `/tmp` is: others cannot rename or
    /// remove what is not theirs there).
    private static func checkFolders(of path: String) throws {
        guard let resolved = realpath(path, nil) else { return }
        var folder = String(cString: resolved)
        free(resolved)
        while folder != "/" {
            folder = folder.lastIndex(of: "/").map { $0 == folder.startIndex ? "/" : String(folder[..<$0]) } ?? "/"
            var info = stat()
            guard stat(folder, &info) == 0 else { return }
            if info.st_uid != geteuid(), info.st_uid != 0 {
                throw CleanerError.configuration(
                    "auth.credentials_file: the folder \(folder) belongs to uid \(info.st_uid), so that user could replace \(path); "
                        + "keep the file in a folder of this user's or root's")
            }
            if info.st_mode & 0o022 != 0, info.st_mode & S_ISVTX == 0 {
                throw CleanerError.configuration(
                    "auth.credentials_file: the folder \(folder) is writable by group or others (mode \(String(info.st_mode & 0o7777, radix: 8))), "
                        + "so they could replace \(path); run chmod go-w \(folder)")
            }
        }
    }

    // MARK: - Environment

    private static func fromEnvironment(_ environment: [String: String], method: AuthMethod) throws -> Credentials? {
        func value(_ name: String) throws -> String? {
            guard let raw = environment[name] else { return nil }
            let trimmed = trimmedWhitespace(raw)
            if trimmed.isEmpty { return nil }
            return try credentialValue(Array(trimmed.utf8), describedAs: name)
        }

        switch method {
        case .metadata:
            return nil
        case .token:
            return try value(authTokenVariable).map(Credentials.token)
        case .aksk:
            let ak = try value(akVariable)
            let sk = try value(skVariable)
            let securityToken = try value(securityTokenVariable)
            if ak == nil, sk == nil, securityToken == nil { return nil }
            guard let ak, let sk else {
                let missing = [ak == nil ? akVariable : nil, sk == nil ? skVariable : nil].compactMap { $0 }
                throw CleanerError.configuration(
                    "incomplete credentials in the environment: \(missing.joined(separator: " and ")) "
                        + "\(missing.count == 1 ? "is" : "are") not set or empty"
                )
            }
            return .accessKey(AccessKey(ak: ak, sk: sk, securityToken: securityToken))
        }
    }

    // MARK: - Reading and checking values

    /// A credential value from raw bytes: UTF-8, trimmed, not empty, no control characters.
    /// `place` names where it came from; the value itself never appears in an error.
    static func credentialValue(_ bytes: [UInt8], describedAs place: String) throws -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw CleanerError.configuration("\(place) is not UTF-8 text")
        }
        let value = trimmedWhitespace(text)
        guard !value.isEmpty else {
            throw CleanerError.configuration("\(place) is empty")
        }
        guard !value.unicodeScalars.contains(where: \.isControlCharacter) else {
            throw CleanerError.configuration("\(place) contains a line break or another control character")
        }
        return value
    }

    /// The contents of the regular file at `path` (and its permission bits and owner), or nil when there
    /// is no such file. `open` then `fstat` check the very file that is read.
    static func readFile(_ path: String, withMode: Bool) throws -> (bytes: [UInt8], mode: UInt32, owner: uid_t)? {
        // O_NONBLOCK: a FIFO put where a credential file belongs would block `open` until
        // someone writes to it; without a writer it opens at once and `fstat` refuses it. A
        // regular file reads the same with or without it.
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            let code = errno
            if code == ENOENT { return nil }
            throw CleanerError.configuration("cannot open \(path): \(String(cString: strerror(code)))")
        }
        defer { close(descriptor) }

        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw CleanerError.configuration("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw CleanerError.configuration("\(path) is not a regular file")
        }
        guard info.st_size <= maximumFileSize else {
            throw CleanerError.configuration("\(path) is larger than \(maximumFileSize / 1024) KiB; it is not a credentials file")
        }

        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw CleanerError.configuration("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            bytes.append(contentsOf: buffer[0..<count])
            guard bytes.count <= maximumFileSize else {
                throw CleanerError.configuration("\(path) is larger than \(maximumFileSize / 1024) KiB; it is not a credentials file")
            }
        }
        return (bytes, UInt32(info.st_mode), info.st_uid)
    }

    static func readFile(_ path: String) throws -> [UInt8]? {
        try readFile(path, withMode: false)?.bytes
    }
}

// MARK: - The credentials file format

/// Parses `key = value` lines (see ``CredentialsLoader``). Errors name the file and line, and
/// at most a known key name: never anything else the line holds.
enum CredentialsFileFormat {
    enum Field: String, CaseIterable {
        case ak, sk
        case securityToken = "security_token"
        case token
        /// The PostgreSQL store's password (issue 22), read by ``PostgresPassword`` alone.
        case databasePassword = "database_password"

        init?(key: String) {
            switch asciiLowercased(key) {
            case "ak", "huaweicloud_sdk_ak": self = .ak
            case "sk", "huaweicloud_sdk_sk": self = .sk
            case "security_token", "huaweicloud_sdk_security_token": self = .securityToken
            case "token", "huaweicloud_sdk_auth_token": self = .token
            case "database_password": self = .databasePassword
            default: return nil
            }
        }
    }

    static func parse(_ bytes: [UInt8], path: String) throws -> [Field: String] {
        var fields: [Field: String] = [:]
        var lineOfField: [Field: Int] = [:]
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)

        for (index, rawLine) in lines.enumerated() {
            let lineNumber = index + 1
            let place = "auth.credentials_file: \(path) line \(lineNumber)"
            guard let text = String(validating: rawLine, as: UTF8.self) else {
                throw CleanerError.configuration("\(place) is not UTF-8 text")
            }
            let line = trimmedWhitespace(text)
            if line.isEmpty || line.hasPrefix("#") { continue }

            guard let equals = line.firstIndex(of: "=") else {
                throw CleanerError.configuration("\(place): expected `key = value`")
            }
            guard let field = Field(key: trimmedWhitespace(line[..<equals])) else {
                throw CleanerError.configuration("\(place): unknown key (expected ak, sk, security_token, token or database_password)")
            }
            if let earlier = lineOfField[field] {
                throw CleanerError.configuration("\(place): \(field.rawValue) is already set on line \(earlier)")
            }
            let value = unquoted(trimmedWhitespace(line[line.index(after: equals)...]))
            fields[field] = try CredentialsLoader.credentialValue(
                Array(value.utf8), describedAs: "\(place): the value of \(field.rawValue)"
            )
            lineOfField[field] = lineNumber
        }
        return fields
    }

    /// Removes one pair of matching single or double quotes around `value`.
    private static func unquoted(_ value: String) -> String {
        guard value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first else {
            return value
        }
        return String(value.dropFirst().dropLast())
    }
}

// MARK: - Per-method names, for messages

extension AuthMethod {
    /// The `$CREDENTIALS_DIRECTORY` files this method reads.
    fileprivate var fileNames: String {
        switch self {
        case .aksk: "ak and sk files"
        case .token: "token file"
        case .metadata: "files"
        }
    }

    /// The environment variables this method reads.
    fileprivate var variableNames: String {
        switch self {
        case .aksk: "\(CredentialsLoader.akVariable) and \(CredentialsLoader.skVariable)"
        case .token: CredentialsLoader.authTokenVariable
        case .metadata: "no variables"
        }
    }
}

extension Unicode.Scalar {
    /// C0 and C1 control characters and DEL: never part of a key or token.
    fileprivate var isControlCharacter: Bool {
        value < 0x20 || (0x7F...0x9F).contains(value)
    }
}
