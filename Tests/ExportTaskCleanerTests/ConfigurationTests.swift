import ExportTaskCleaner
import Foundation
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    static let minimal = #"{"region": "cn-north-4", "project_id": "p1"}"#

    func parse(_ text: String) throws -> Configuration {
        try ConfigurationLoader.parse(Array(text.utf8), source: "config.json")
    }

    @Test("defaults for every optional key")
    func defaults() throws {
        let configuration = try parse(Self.minimal)
        #expect(configuration.database == "/var/lib/export-task-cleaner/queue.sqlite3")
        #expect(configuration.endpoint == "https://iotda.cn-north-4.myhuaweicloud.com")
        #expect(configuration.instanceID == nil)
        #expect(configuration.auth == Configuration.Auth(method: .aksk, signing: .auto, credentialsFile: nil))
        #expect(configuration.concurrency == 8)
        #expect(configuration.maxRequestsPerSecond == 20)
        #expect(configuration.retry == Configuration.Retry(maxAttempts: 8, baseDelay: .seconds(1), maxDelay: .seconds(300)))
        #expect(configuration.requestTimeout == .seconds(30))
        #expect(configuration.leaseDuration == .seconds(300))
        #expect(configuration.shutdownGrace == .seconds(10))
        #expect(configuration.pollInterval == .seconds(1))
        #expect(configuration.logLevel == .info)
        #expect(configuration.signingAlgorithm == .sdkHMACSHA256)
    }

    @Test("the example configuration parses")
    func exampleParses() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("config.example.json")
        let configuration = try ConfigurationLoader.load(path: url.path)
        #expect(configuration.projectID == "your-project-id")
        #expect(configuration.auth.method == .aksk)
    }

    @Test("auto signing is derived exactly for hosts off the regional pattern")
    func autoSigning() throws {
        var configuration = try parse(Self.minimal)
        configuration.endpoint = "https://abc123.st1.iotda-app.cn-north-4.myhuaweicloud.com"
        #expect(configuration.signingAlgorithm == .v11HMACSHA256)
        configuration.endpoint = "http://127.0.0.1:8080"
        #expect(configuration.signingAlgorithm == .v11HMACSHA256)
        configuration.auth.signing = .algorithm(.sdkHMACSHA256)
        #expect(configuration.signingAlgorithm == .sdkHMACSHA256)
    }

    @Test("relative paths are resolved against the configuration's folder")
    func relativePaths() throws {
        let folder = try TestSupport.makeFolder()
        let path = folder.appendingPathComponent("config.json").path
        try Data(#"{"region": "r-1", "project_id": "p", "database": "q.sqlite3", "auth": {"credentials_file": "creds"}}"#.utf8)
            .write(to: URL(fileURLWithPath: path))
        let configuration = try ConfigurationLoader.load(path: path)
        #expect(configuration.database == folder.appendingPathComponent("q.sqlite3").standardizedFileURL.path)
        #expect(configuration.auth.credentialsFile == folder.appendingPathComponent("creds").standardizedFileURL.path)
    }

    /// Each bad configuration, and what its message must name.
    static let badConfigurations: [(text: String, names: [String])] = [
        (#"{"region": "cn-north-4", "project_id": "p1", "colour": 1}"#, ["config.json:1", "colour", "unknown key"]),
        (#"{"region": "cn-north-4"}"#, ["project_id", "missing"]),
        (#"{"project_id": "p1"}"#, ["region", "missing"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "concurrency": "8"}"#, ["concurrency", "got a string"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "concurrency": 0}"#, ["concurrency", "from 1 to 1024"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "concurrency": 2.5}"#, ["concurrency", "whole number"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "concurrency": true}"#, ["concurrency", "a boolean"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "max_requests_per_second": 0}"#, ["max_requests_per_second"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "retry": {"max_attempts": 0}}"#, ["retry.max_attempts"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "retry": {"tries": 3}}"#, ["retry.tries", "unknown key"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "retry": {"base_delay_ms": 5000, "max_delay_ms": 10}}"#, ["retry.max_delay_ms"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "retry": 3}"#, ["retry", "expected an object"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "auth": {"method": "password"}}"#, ["auth.method"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "auth": {"signing": "MD5"}}"#, ["auth.signing"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "auth": {"ak": "AKIA"}}"#, ["auth.ak", "unknown key"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "endpoint": "http://iotda.example.com"}"#, ["endpoint", "loopback"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "endpoint": "ftp://x"}"#, ["endpoint"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "endpoint": "https://x.com/v5"}"#, ["endpoint", "path"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "request_timeout_ms": 50}"#, ["request_timeout_ms"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "lease_seconds": 30, "request_timeout_ms": 30000}"#, ["lease_seconds", "twice"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "log_level": "loud"}"#, ["log_level"]),
        (#"{"region": "cn-north-4", "project_id": "p1", "database": ""}"#, ["database", "empty"]),
        (#"{"region": "cn-north-4", "project_id": "a/b"}"#, ["project_id"]),
        ("{\"region\": \"cn-north-4\",\n \"project_id\": \"p1\",\n}", ["config.json:3", "not valid JSON"]),
        ("{\"region\": \"cn-north-4\"\n \"project_id\": \"p1\"}", ["config.json:2", "not valid JSON"]),
        (#"{"region": "x", "region": "y", "project_id": "p"}"#, ["duplicate key"]),
        ("[]", ["expected an object"]),
        ("", ["not valid JSON"]),
    ]

    @Test("a bad configuration is an exit-2 error naming the key", arguments: 0..<badConfigurations.count)
    func badConfiguration(index: Int) throws {
        let (text, names) = Self.badConfigurations[index]
        let error = try #require(throws: CleanerError.self) { try parse(text) }
        #expect(error.code == .configuration)
        #expect(error.exitStatus == 2)
        for name in names {
            #expect(error.message.contains(name), "\(error.message) should name \(name)")
        }
    }

    @Test("a missing configuration file is named")
    func missingFile() throws {
        let error = try #require(throws: CleanerError.self) { try ConfigurationLoader.load(path: "/nonexistent/config.json") }
        #expect(error.exitStatus == 2)
        #expect(error.message.contains("/nonexistent/config.json"))
    }

    @Test("--config wins over the environment, which wins over the default path")
    func pathResolution() {
        #expect(ConfigurationLoader.resolvePath("/a.json", environment: ["EXPORT_TASK_CLEANER_CONFIG": "/b.json"]) == "/a.json")
        #expect(ConfigurationLoader.resolvePath(nil, environment: ["EXPORT_TASK_CLEANER_CONFIG": "/b.json"]) == "/b.json")
        #expect(ConfigurationLoader.resolvePath(nil, environment: [:]) == "/etc/export-task-cleaner/config.json")
    }
}
