import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@testable import ExportTaskCleaner

/// Where credentials come from, in which order, what is refused, and that no secret ever shows.
@Suite struct CredentialsTests {
    static let ak = "QTWAOYTTINDUT2QVKYUC"
    static let sk = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"

    // MARK: - Redaction

    @Test func descriptionsNeverShowSecrets() {
        let key = AccessKey(ak: Self.ak, sk: Self.sk, securityToken: "token-secret")
        let texts = [
            key.description, key.debugDescription, "\(key)", String(reflecting: key), dumped(key),
            Credentials.accessKey(key).description, String(reflecting: Credentials.accessKey(key)),
            dumped(Credentials.accessKey(key)),
            Credentials.token("iam-token-secret").description, dumped(Credentials.token("iam-token-secret")),
        ]
        for text in texts {
            #expect(!text.contains(Self.sk))
            #expect(!text.contains("token-secret"))
            #expect(!text.contains(Self.ak))
        }
        #expect(AccessKey(ak: Self.ak, sk: Self.sk).description == "AccessKey(ak: QTWA…, sk: <redacted>)")
        #expect(key.description == "AccessKey(ak: QTWA…, sk: <redacted>, securityToken: <redacted>)")
        #expect(Credentials.token("x").description == "Credentials.token(<redacted>)")
    }

    // MARK: - Sources and their order

    @Test func credentialsDirectoryWinsOverFileAndEnvironment() throws {
        let directory = try TemporaryDirectory()
        try directory.write("ak", "DIRAK\n")
        try directory.write("sk", "DIRSK\n")
        let file = try directory.write("credentials", "ak = FILEAK\nsk = FILESK\n", mode: 0o600)

        let loaded = try CredentialsLoader.load(
            method: .aksk, credentialsFile: file,
            environment: ["CREDENTIALS_DIRECTORY": directory.path] + Self.sdkEnvironment
        )
        #expect(loaded.source == .credentialsDirectory)
        #expect(loaded.credentials == .accessKey(AccessKey(ak: "DIRAK", sk: "DIRSK")))
    }

    @Test func fileWinsOverEnvironment() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("credentials", "ak = FILEAK\nsk = FILESK\n", mode: 0o600)
        let loaded = try CredentialsLoader.load(method: .aksk, credentialsFile: file, environment: Self.sdkEnvironment)
        #expect(loaded.source == .credentialsFile)
        #expect(loaded.credentials == .accessKey(AccessKey(ak: "FILEAK", sk: "FILESK")))
    }

    @Test func environmentIsTheLastResort() throws {
        let loaded = try CredentialsLoader.load(method: .aksk, credentialsFile: nil, environment: Self.sdkEnvironment)
        #expect(loaded.source == .environment)
        #expect(loaded.credentials == .accessKey(AccessKey(ak: "ENVAK", sk: "ENVSK", securityToken: "ENVTOKEN")))
    }

    @Test func directoryWithoutTheMethodsFilesIsPassedOver() throws {
        let directory = try TemporaryDirectory()
        try directory.write("database-password", "unrelated")
        let loaded = try CredentialsLoader.load(
            method: .aksk, credentialsFile: nil,
            environment: ["CREDENTIALS_DIRECTORY": directory.path] + Self.sdkEnvironment
        )
        #expect(loaded.source == .environment)
    }

    @Test func directoryWithSecurityToken() throws {
        let directory = try TemporaryDirectory()
        try directory.write("ak", "  DIRAK \r\n")
        try directory.write("sk", "DIRSK")
        try directory.write("security_token", "DIRTOKEN\n\n")
        let loaded = try CredentialsLoader.load(
            method: .aksk, credentialsFile: nil, environment: ["CREDENTIALS_DIRECTORY": directory.path]
        )
        #expect(loaded.credentials == .accessKey(AccessKey(ak: "DIRAK", sk: "DIRSK", securityToken: "DIRTOKEN")))
    }

    @Test func tokenMethodReadsTokenFromEachSource() throws {
        let directory = try TemporaryDirectory()
        try directory.write("token", "DIRTOKEN\n")
        let fromDirectory = try CredentialsLoader.load(
            method: .token, credentialsFile: nil, environment: ["CREDENTIALS_DIRECTORY": directory.path]
        )
        #expect(fromDirectory.credentials == .token("DIRTOKEN"))
        #expect(fromDirectory.source == .credentialsDirectory)

        let file = try directory.write("credentials", "# an IAM token\ntoken = FILETOKEN\n", mode: 0o600)
        #expect(try CredentialsLoader.load(method: .token, credentialsFile: file, environment: [:]).credentials
            == .token("FILETOKEN"))

        let fromEnvironment = try CredentialsLoader.load(
            method: .token, credentialsFile: nil, environment: ["HUAWEICLOUD_SDK_AUTH_TOKEN": "ENVTOKEN"]
        )
        #expect(fromEnvironment.credentials == .token("ENVTOKEN"))
        #expect(fromEnvironment.source == .environment)
    }

    // MARK: - The credentials file

    @Test func groupOrWorldReadableFileIsRefused() throws {
        let directory = try TemporaryDirectory()
        for mode in [0o644, 0o640, 0o604] as [mode_t] {
            let file = try directory.write("credentials-\(mode)", "ak = A\nsk = S\n", mode: mode)
            let error = try configurationError {
                try CredentialsLoader.load(method: .aksk, credentialsFile: file, environment: Self.sdkEnvironment)
            }
            #expect(error.message.contains("chmod 600 \(file)"))
        }
    }

    @Test func privateFileIsAccepted() throws {
        let directory = try TemporaryDirectory()
        for mode in [0o600, 0o400] as [mode_t] {
            let file = try directory.write("credentials-\(mode)", "ak = A\nsk = S\n", mode: mode)
            let loaded = try CredentialsLoader.load(method: .aksk, credentialsFile: file, environment: [:])
            #expect(loaded.credentials == .accessKey(AccessKey(ak: "A", sk: "S")))
        }
    }

    @Test func fileFormatAcceptsCommentsQuotesAndSDKNames() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("credentials", """
            # Huawei Cloud access key for export-task-cleaner

              HUAWEICLOUD_SDK_AK = "QTWAOYTTINDUT2QVKYUC"\r
            Sk='MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc'
            huaweicloud_sdk_security_token=abc#def==
            """, mode: 0o600)
        let loaded = try CredentialsLoader.load(method: .aksk, credentialsFile: file, environment: [:])
        #expect(loaded.credentials == .accessKey(AccessKey(ak: Self.ak, sk: Self.sk, securityToken: "abc#def==")))
    }

    @Test(arguments: [
        ("ak = A\nsk = S\nthis line holds SECRETVALUE\n", "line 3", "key = value"),
        ("ak = A\nSECRETVALUE = S\n", "line 2", "unknown key"),
        ("ak = A\nsk = SECRETVALUE\nsk = SECRETVALUE\n", "line 3", "already set on line 2"),
        ("ak = A\nsk =\n", "line 2", "empty"),
        ("ak = A\nsk = SECRET\u{7}VALUE\n", "line 2", "control character"),
    ])
    func malformedLinesNameTheLineButNotItsContent(contents: String, line: String, problem: String) throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("credentials", contents, mode: 0o600)
        let error = try configurationError {
            try CredentialsLoader.load(method: .aksk, credentialsFile: file, environment: [:])
        }
        #expect(error.message.contains(file))
        #expect(error.message.contains(line))
        #expect(error.message.contains(problem))
        #expect(!error.message.contains("SECRET"))
    }

    @Test func configuredFileMustExistAndHoldTheMethodsKeys() throws {
        let directory = try TemporaryDirectory()
        let missing = directory.path + "/nope"
        let absent = try configurationError {
            try CredentialsLoader.load(method: .aksk, credentialsFile: missing, environment: Self.sdkEnvironment)
        }
        #expect(absent.message.contains("does not exist"))

        let file = try directory.write("credentials", "ak = A\n", mode: 0o600)
        let partial = try configurationError {
            try CredentialsLoader.load(method: .aksk, credentialsFile: file, environment: Self.sdkEnvironment)
        }
        #expect(partial.message.contains("has no sk"))

        let noToken = try configurationError {
            try CredentialsLoader.load(method: .token, credentialsFile: file, environment: [:])
        }
        #expect(noToken.message.contains("no token"))
    }

    // MARK: - Missing and partial credentials

    @Test func nothingFoundNamesEveryPlaceLooked() throws {
        let error = try configurationError {
            try CredentialsLoader.load(method: .aksk, credentialsFile: nil, environment: [:])
        }
        #expect(error.code == .configuration)
        #expect(error.exitStatus == 2)
        #expect(error.message.contains("CREDENTIALS_DIRECTORY"))
        #expect(error.message.contains("auth.credentials_file"))
        #expect(error.message.contains("HUAWEICLOUD_SDK_AK"))
        #expect(error.message.contains("HUAWEICLOUD_SDK_SK"))
    }

    @Test func partialCredentialsAreErrorsNamingWhatIsMissing() throws {
        let directory = try TemporaryDirectory()
        try directory.write("ak", "DIRAK\n")
        let fromDirectory = try configurationError {
            try CredentialsLoader.load(
                method: .aksk, credentialsFile: nil,
                environment: ["CREDENTIALS_DIRECTORY": directory.path] + Self.sdkEnvironment
            )
        }
        #expect(fromDirectory.message.contains("no sk file"))

        let fromEnvironment = try configurationError {
            try CredentialsLoader.load(
                method: .aksk, credentialsFile: nil, environment: ["HUAWEICLOUD_SDK_AK": "ENVAK", "HUAWEICLOUD_SDK_SK": " "]
            )
        }
        #expect(fromEnvironment.message.contains("HUAWEICLOUD_SDK_SK"))
        #expect(!fromEnvironment.message.contains("HUAWEICLOUD_SDK_AK"))
    }

    @Test func emptyCredentialFileIsAnError() throws {
        let directory = try TemporaryDirectory()
        try directory.write("ak", "DIRAK\n")
        try directory.write("sk", "\n")
        let error = try configurationError {
            try CredentialsLoader.load(method: .aksk, credentialsFile: nil, environment: ["CREDENTIALS_DIRECTORY": directory.path])
        }
        #expect(error.message.contains(directory.path + "/sk is empty"))
    }

    @Test func multiLineValueIsRefusedWithoutEchoingIt() throws {
        let directory = try TemporaryDirectory()
        try directory.write("ak", "DIRAK\nSECRETVALUE\n")
        try directory.write("sk", "DIRSK")
        let error = try configurationError {
            try CredentialsLoader.load(method: .aksk, credentialsFile: nil, environment: ["CREDENTIALS_DIRECTORY": directory.path])
        }
        #expect(error.message.contains("control character"))
        #expect(!error.message.contains("SECRETVALUE"))
    }

    // MARK: - Helpers

    static let sdkEnvironment = [
        "HUAWEICLOUD_SDK_AK": "ENVAK", "HUAWEICLOUD_SDK_SK": "ENVSK", "HUAWEICLOUD_SDK_SECURITY_TOKEN": "ENVTOKEN",
    ]

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

    private func dumped(_ value: some Any) -> String {
        var text = ""
        dump(value, to: &text)
        return text
    }
}

/// A directory under the system's temporary directory, removed when the value goes away.
private final class TemporaryDirectory {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("credentials-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    @discardableResult
    func write(_ name: String, _ contents: String, mode: mode_t = 0o600) throws -> String {
        let file = path + "/" + name
        try Data(contents.utf8).write(to: URL(fileURLWithPath: file))
        guard chmod(file, mode) == 0 else { throw CleanerError.runtime("chmod failed") }
        return file
    }
}

private func + (lhs: [String: String], rhs: [String: String]) -> [String: String] {
    lhs.merging(rhs) { first, _ in first }
}
