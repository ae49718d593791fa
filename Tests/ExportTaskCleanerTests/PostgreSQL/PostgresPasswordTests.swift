import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@testable import ExportTaskCleaner

/// The PostgreSQL password's sources, their order, what is refused, and that the password never
/// shows (docs/credentials.md, "The database password").
@Suite struct PostgresPasswordTests {
    /// In every password below that may end up in a message: no message may hold it.
    static let marker = "S3CRETMARK"

    // MARK: - Sources and their order

    struct OrderCase: Sendable, CustomTestStringConvertible {
        var name: String
        var credential: String?
        var fileText: String?
        var pgpassword: String?
        var expected: String?
        var source: String
        var testDescription: String { name }
    }

    static let orderCases: [OrderCase] = [
        OrderCase(name: "the systemd credential wins", credential: "from-systemd\n", fileText: "database_password = from-file\n",
                  pgpassword: "from-env", expected: "from-systemd", source: "credential"),
        OrderCase(name: "the file's key before PGPASSWORD", fileText: "ak = A\nsk = S\ndatabase_password = from-file\n",
                  pgpassword: "from-env", expected: "from-file", source: "file"),
        OrderCase(name: "a file without the key is passed over", fileText: "ak = A\nsk = S\n",
                  pgpassword: "from-env", expected: "from-env", source: "environment"),
        OrderCase(name: "PGPASSWORD alone", pgpassword: "from-env", expected: "from-env", source: "environment"),
        OrderCase(name: "an empty PGPASSWORD is unset, as for libpq", pgpassword: "", expected: nil, source: "none"),
        OrderCase(name: "nothing: no password", expected: nil, source: "none"),
        OrderCase(name: "surrounding white space trimmed", credential: "  p w \r\n", expected: "p w", source: "credential"),
        OrderCase(name: "quotes removed once, # kept", fileText: "database_password = \"p#w 'x'\"\n",
                  expected: "p#w 'x'", source: "file"),
        OrderCase(name: "keys are case-insensitive", fileText: "# c\n\nDATABASE_PASSWORD=pw\n", expected: "pw", source: "file"),
        OrderCase(name: "UTF-8 beyond ASCII", pgpassword: "pässwörd-密码", expected: "pässwörd-密码", source: "environment"),
        OrderCase(name: "1024 bytes and a newline", credential: String(repeating: "x", count: 1024) + "\n",
                  expected: String(repeating: "x", count: 1024), source: "credential"),
    ]

    @Test(arguments: orderCases)
    func sources(_ example: OrderCase) throws {
        let directory = try PasswordTestDirectory()
        var environment: [String: String] = [:]
        // A credentials directory always, with the keys, so that "passed over" is tested too.
        let credentials = try directory.folder("credentials")
        try directory.write("credentials/ak", "A")
        if let credential = example.credential { try directory.write("credentials/database_password", credential) }
        environment["CREDENTIALS_DIRECTORY"] = credentials
        let file = try example.fileText.map { try directory.write("file", $0, mode: 0o600) }
        environment["PGPASSWORD"] = example.pgpassword

        let resolved = try PostgresPassword.resolve(environment: environment, credentialsFile: file)
        #expect(resolved.password == example.expected)
        switch example.source {
        case "credential": #expect(resolved.source == .systemdCredential)
        case "file": #expect(resolved.source == .credentialsFile(path: file ?? ""))
        case "environment": #expect(resolved.source == .environment)
        default: #expect(resolved.source == .none)
        }
    }

    @Test func sourceDescriptionsNameThePlaceNeverThePassword() throws {
        #expect(PostgresPassword.Source.systemdCredential.description == "the systemd credential database_password ($CREDENTIALS_DIRECTORY)")
        #expect(PostgresPassword.Source.credentialsFile(path: "/etc/x/credentials").description
            == "database_password in auth.credentials_file (/etc/x/credentials)")
        #expect(PostgresPassword.Source.environment.description == "PGPASSWORD")
        #expect(PostgresPassword.Source.none.description == "none (no password is sent)")
        // A path is shown with its control characters escaped: it cannot fake a line.
        #expect(!PostgresPassword.Source.credentialsFile(path: "/a\nb").description.contains("\n"))

        let password = PostgresPassword(password: Self.marker, source: .environment)
        var dumped = ""
        dump(password, to: &dumped)
        for text in [password.description, "\(password)", String(reflecting: password), dumped] {
            #expect(!text.contains(Self.marker), "\(text)")
        }
        #expect(password.description == "<redacted> from PGPASSWORD")
        #expect(PostgresPassword(password: nil, source: .none).description == "no password")
    }

    // MARK: - The credentials file keeps its rules

    @Test func keysAreReadAsBeforeBesideTheNewKey() throws {
        let directory = try PasswordTestDirectory()
        let file = try directory.write("file", "ak = AK1\nsk = SK1\ndatabase_password = \(Self.marker)\n", mode: 0o600)
        let loaded = try CredentialsLoader.load(method: .aksk, credentialsFile: file, environment: [:])
        #expect(loaded.credentials == .accessKey(AccessKey(ak: "AK1", sk: "SK1")))
        let token = try directory.write("token", "token = T\ndatabase_password = x\n", mode: 0o600)
        #expect(try CredentialsLoader.load(method: .token, credentialsFile: token, environment: [:]).credentials == .token("T"))
        // The key alone does not make a credentials file for the keys.
        let only = try directory.write("only", "database_password = x\n", mode: 0o600)
        let error = try configurationError { try CredentialsLoader.load(method: .aksk, credentialsFile: only, environment: [:]) }
        #expect(error.message.contains("has no ak or sk"))
        #expect(try CredentialsLoader.databasePassword(credentialsFile: only) == "x")
        #expect(try CredentialsLoader.databasePassword(credentialsFile: file) == Self.marker)
    }

    // MARK: - Hostile input

    struct HostileCase: Sendable, CustomTestStringConvertible {
        enum Place: Sendable { case credential, file, environment }
        var name: String
        var place: Place
        var bytes: [UInt8]
        var mode: mode_t = 0o600
        /// What the message must say.
        var says: String
        var testDescription: String { name }
    }

    static let marker8 = Array(marker.utf8)

    static let hostileCases: [HostileCase] = [
        HostileCase(name: "empty credential", place: .credential, bytes: Array(" \n".utf8), says: "is empty"),
        HostileCase(name: "NUL in the credential", place: .credential, bytes: marker8 + [0] + marker8, says: "control character"),
        HostileCase(name: "a line break inside", place: .credential, bytes: marker8 + [10] + marker8, says: "line break"),
        HostileCase(name: "a carriage return inside", place: .credential, bytes: marker8 + [13] + marker8, says: "line break"),
        HostileCase(name: "an escape sequence", place: .credential, bytes: marker8 + Array("\u{1b}[2J".utf8), says: "control character"),
        HostileCase(name: "a C1 control", place: .credential, bytes: marker8 + Array("\u{85}".utf8) + marker8, says: "control character"),
        HostileCase(name: "not UTF-8", place: .credential, bytes: marker8 + [0xC3, 0x28], says: "not UTF-8"),
        HostileCase(name: "1025 bytes", place: .credential, bytes: marker8 + Array(repeating: 0x61, count: 1025 - marker8.count),
                    says: "longer than 1024 bytes"),
        HostileCase(name: "far too long, not UTF-8 past the bound", place: .credential,
                    bytes: marker8 + Array(repeating: 0xFF, count: 5000), says: "longer than 1024 bytes"),
        HostileCase(name: "larger than a credentials file", place: .credential, bytes: marker8 + Array(repeating: 0x61, count: 70_000),
                    says: "larger than 64 KiB"),
        HostileCase(name: "NUL in the file's value", place: .file,
                    bytes: Array("ak = A\ndatabase_password = ".utf8) + marker8 + [0] + Array("\n".utf8), says: "control character"),
        HostileCase(name: "an empty value in the file", place: .file, bytes: Array("database_password = \"\"\n".utf8), says: "is empty"),
        HostileCase(name: "the key twice", place: .file,
                    bytes: Array("database_password = \(marker)\ndatabase_password = \(marker)\n".utf8), says: "already set on line 1"),
        HostileCase(name: "a long value in the file", place: .file,
                    bytes: Array("database_password = ".utf8) + marker8 + Array(repeating: 0x61, count: 1100), says: "longer than 1024 bytes"),
        HostileCase(name: "an unknown key", place: .file, bytes: Array("database_pass = \(marker)\n".utf8),
                    says: "unknown key (expected ak, sk, security_token, token or database_password)"),
        HostileCase(name: "a file open to others", place: .file, bytes: Array("database_password = \(marker)\n".utf8),
                    mode: 0o644, says: "chmod 600"),
        HostileCase(name: "a line break in PGPASSWORD", place: .environment, bytes: marker8 + [10] + marker8, says: "line break"),
        HostileCase(name: "NUL in PGPASSWORD", place: .environment, bytes: marker8 + [0], says: "control character"),
        HostileCase(name: "white space alone in PGPASSWORD", place: .environment, bytes: Array("  ".utf8), says: "PGPASSWORD is empty"),
        HostileCase(name: "a long PGPASSWORD", place: .environment, bytes: marker8 + Array(repeating: 0x61, count: 2000),
                    says: "PGPASSWORD is longer than 1024 bytes"),
    ]

    @Test(arguments: hostileCases)
    func hostile(_ example: HostileCase) throws {
        let directory = try PasswordTestDirectory()
        var environment: [String: String] = [:]
        var file: String?
        switch example.place {
        case .credential:
            environment["CREDENTIALS_DIRECTORY"] = try directory.folder("credentials")
            try directory.write("credentials/database_password", example.bytes)
        case .file:
            file = try directory.write("file", example.bytes, mode: example.mode)
        case .environment:
            environment["PGPASSWORD"] = String(decoding: example.bytes, as: UTF8.self)
        }
        let error = try configurationError { try PostgresPassword.resolve(environment: environment, credentialsFile: file) }
        #expect(error.message.contains(example.says), "\(error.message)")
        #expect(!error.message.contains(Self.marker), "\(error.message)")
    }

    /// Not a file where the credential belongs: refused by what it is, at once (a FIFO without
    /// a writer would block a plain `open`).
    @Test(arguments: ["folder", "fifo", "device", "dangling"])
    func notARegularFile(_ kind: String) async throws {
        let directory = try PasswordTestDirectory()
        let credentials = try directory.folder("credentials")
        let path = credentials + "/database_password"
        switch kind {
        case "folder": try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        case "fifo": #expect(mkfifo(path, 0o600) == 0)
        case "device": try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: "/dev/zero")
        default: try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: credentials + "/nothing")
        }
        let environment = ["CREDENTIALS_DIRECTORY": credentials, "PGPASSWORD": "from-env"]
        if kind == "dangling" {
            // A link to nothing is no credential: passed over, as a missing file is.
            #expect(try PostgresPassword.resolve(environment: environment, credentialsFile: nil).source == .environment)
            return
        }
        let error = try configurationError { try PostgresPassword.resolve(environment: environment, credentialsFile: nil) }
        #expect(error.message.contains("is not a regular file"), "\(error.message)")
    }

    @Test func aConfiguredFileThatIsMissingIsAnError() throws {
        let directory = try PasswordTestDirectory()
        let error = try configurationError {
            try PostgresPassword.resolve(environment: ["PGPASSWORD": "x"], credentialsFile: directory.path + "/missing")
        }
        #expect(error.message.contains("does not exist"))
    }

    // MARK: - Helpers

    private func configurationError(_ body: () throws -> Any) throws -> CleanerError {
        do {
            _ = try body()
        } catch let error as CleanerError {
            #expect(error.code == .configuration)
            return error
        }
        Issue.record("expected a configuration error")
        throw CleanerError.runtime("no error")
    }
}

/// A folder under /tmp (sticky and root's, which the credentials file's folder check allows),
/// removed when the value goes away.
private final class PasswordTestDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("pg-password-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    func folder(_ name: String) throws -> String {
        let folder = path + "/" + name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        return folder
    }

    @discardableResult
    func write(_ name: String, _ contents: String, mode: mode_t = 0o600) throws -> String {
        try write(name, Array(contents.utf8), mode: mode)
    }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8], mode: mode_t = 0o600) throws -> String {
        let file = path + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        guard chmod(file, mode) == 0 else { throw CleanerError.runtime("chmod failed") }
        return file
    }
}
