import Foundation
import Logging
import Synchronization
import Testing

@testable import ExportTaskCleaner

/// A reload (`SIGHUP`) and the re-read before a probe, in process: real files in a temporary
/// folder, a service that is not running, and systemd's socket played by the test.
@Suite("Reload", .serialized)
struct ReloadTests {
    static let keyA = AccessKey(ak: "RELOADAKAAAAAAAAAAAA", sk: "reload-secret-a")
    static let keyB = AccessKey(ak: "RELOADAKBBBBBBBBBBBB", sk: "reload-secret-b")

    /// A folder with a configuration and a credentials file, both rewritable.
    struct Setup {
        let folder: URL
        var config: String { folder.appendingPathComponent("config.json").path }
        var credentials: String { folder.appendingPathComponent("credentials").path }

        init() throws {
            folder = try TestSupport.makeFolder("reload")
            guard chmod(folder.path, 0o700) == 0 else { throw CleanerError.runtime("chmod failed") }
        }

        func writeKey(_ key: AccessKey, mode: mode_t = 0o600) throws {
            try CredentialEndToEndTests.writeKey(key, to: credentials, mode: mode)
        }

        func writeConfig(_ overrides: [String: Any] = [:]) throws {
            var config: [String: Any] = [
                "database": folder.appendingPathComponent("queue.sqlite3").path, "endpoint": "http://127.0.0.1:9",
                "region": "cn-north-4", "project_id": "reload-project", "concurrency": 4, "max_requests_per_second": 20,
                "auth": ["credentials_file": credentials], "log_level": "info",
            ]
            config.merge(overrides) { $1 }
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: self.config))
        }

        /// Key A on disk, the configuration written, and a service (not running) with its reloader.
        func running(notifier: SystemdNotifier?) throws
            -> (CredentialProvider, CleanerService, ConfigurationReloader, CapturedLogs) {
            try writeKey(ReloadTests.keyA)
            try writeConfig()
            let configuration = try ConfigurationLoader.load(path: config)
            let provider = ReloadTests.provider(ReloadTests.keyA)
            let logs = CapturedLogs()
            let service = CleanerService(
                options: CleanerOptions(configuration: configuration, drain: false, credentialsDescription: "test"),
                store: try TestSupport.makeStore().store, transport: FailingTransport(),
                retry: .exponentialJitter(maxAttempts: 8, baseDelay: .seconds(1), maxDelay: .seconds(300)),
                credentials: provider, logger: logs.logger())
            let reloader = ConfigurationReloader(path: config, running: configuration, cleaner: service,
                                                 credentials: reader(provider, logs: logs), notifier: notifier,
                                                 logger: logs.logger())
            return (provider, service, reloader, logs)
        }

        func reader(_ provider: CredentialProvider, logs: CapturedLogs) -> CredentialSourceReader {
            CredentialSourceReader(auth: .init(credentialsFile: credentials), environment: [:], provider: provider,
                                   refresher: nil, logger: logs.logger())
        }
    }

    static func provider(_ key: AccessKey) -> CredentialProvider {
        CredentialProvider(.accessKey(key), source: "auth.credentials_file", signing: .sdkHMACSHA256, region: "cn-north-4")
    }

    @Test("before a probe, a key rotated on disk replaces the refused one; an unchanged or unreadable file does not")
    func beforeProbe() throws {
        let setup = try Setup()
        try setup.writeKey(Self.keyA)
        let provider = Self.provider(Self.keyA)
        let logs = CapturedLogs()
        let reader = setup.reader(provider, logs: logs)

        reader.beforeProbe()
        #expect(provider.current.generation == 0)

        try setup.writeKey(Self.keyB)
        reader.beforeProbe()
        #expect(provider.current.credentials == .accessKey(Self.keyB))
        #expect(logs.lines.contains { $0.message == "new credentials found before the probe; probing with them" })

        try setup.writeKey(Self.keyA, mode: 0o644)
        reader.beforeProbe()
        #expect(provider.current.credentials == .accessKey(Self.keyB))
        #expect(logs.lines.contains { $0.level == .error && $0.text.contains("chmod 600") })
        #expect(!logs.allText.contains(Self.keyA.sk) && !logs.allText.contains(Self.keyB.sk))
    }

    @Test("a reload applies the credentials and the safe settings, names what needs a restart, and says RELOADING=1 then READY=1")
    func reloadApplies() throws {
        let setup = try Setup()
        let socket = try SystemdTestSocket(kind: .path)
        let (provider, service, reloader, logs) = try setup.running(notifier: SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.notifySocket]))
        defer { LogSetup.level.set(.info) }
        // Before the service's READY=1, a reload tells systemd nothing.
        _ = reloader.reload()
        #expect(socket.receiveIfQueued() == nil)
        service.isReady.store(true, ordering: .releasing)

        try setup.writeKey(Self.keyB)
        try setup.writeConfig(["log_level": "debug", "concurrency": 16, "max_requests_per_second": 50,
                               "retry": ["max_attempts": 3], "endpoint": "http://127.0.0.1:10", "lease_seconds": 120])
        #expect(reloader.reload() == .applied(changed: ["log_level", "max_requests_per_second", "concurrency", "retry"],
                                              needRestart: ["endpoint", "lease_seconds"]))
        #expect(provider.current.credentials == .accessKey(Self.keyB))
        #expect(LogSetup.level.current == .debug)
        #expect(service.traffic.snapshot.maxRate == 50 && service.traffic.snapshot.maxConcurrency == 16)
        #expect(!service.retry.shouldRetry(attempts: 3))
        let reloading = try #require(socket.receive())
        #expect(reloading.hasPrefix("RELOADING=1\nMONOTONIC_USEC="))
        #expect(socket.receive() == "READY=1")
        #expect(logs.lines.contains { $0.level == .warning && $0.metadata["keys"] == "endpoint, lease_seconds" })
    }

    @Test("a configuration or credentials that no longer load are refused with one line; the running ones stay",
          arguments: ["config", "credentials"])
    func reloadRefused(broken: String) throws {
        let setup = try Setup()
        let (provider, service, reloader, logs) = try setup.running(notifier: nil)
        if broken == "config" {
            try setup.writeKey(Self.keyB)
            try Data(#"{"region": "cn-north-4", "project_id": "p", "concurrency": 0}"#.utf8)
                .write(to: URL(fileURLWithPath: setup.config))
        } else {
            try setup.writeConfig(["concurrency": 16])
            try Data("ak = ONLYAK\n".utf8).write(to: URL(fileURLWithPath: setup.credentials))
        }
        guard case .refused(let reason) = reloader.reload() else {
            Issue.record("the reload was not refused")
            return
        }
        #expect(reason.contains(broken == "config" ? "concurrency" : "no sk"))
        #expect(provider.current.credentials == .accessKey(Self.keyA))
        #expect(service.traffic.snapshot.maxConcurrency == 4)
        #expect(logs.lines.filter { $0.message == "reload refused; the running configuration is kept" }.count == 1)
    }
}

/// Answers every delete with a failure without a response; for services that never send.
struct FailingTransport: IoTDATransport {
    func delete(_ request: DeleteRequest) async -> DeleteResult {
        .noResponse(delivery: .notSent, message: "not sent in this test", duration: .zero)
    }
}
