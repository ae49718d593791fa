import ExportTaskCleaner
import Foundation
import IoTDASimulator
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The IoTDA client tests' simulator, client and requests.

let testKey = AccessKey(ak: "TESTAK0123456789", sk: "test-secret-key-0123456789abcdef")
let testProject = "test-project-0001"

func clientRequest(_ id: String, instance: String? = nil) -> DeleteRequest {
    DeleteRequest(exportTaskID: id, projectID: testProject, instanceID: instance)
}

func isRequestID(_ id: String?) -> Bool {
    guard let id else { return false }
    return id.utf8.count == 32 && id.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
}

func quietLogger() -> Logger {
    var logger = Logger(label: "iotda-client-tests") { _ in SwiftLogNoOpLogHandler() }
    logger.logLevel = .critical
    return logger
}

func makeClient(
    endpoint: String,
    credentials: Credentials = .accessKey(testKey),
    signing: SigningAlgorithm = .sdkHMACSHA256,
    concurrency: Int = 4,
    requestTimeout: Duration = .seconds(10),
    logger: Logger = quietLogger()
) throws -> IoTDAClient {
    try IoTDAClient(
        configuration: .init(
            endpoint: endpoint, credentials: credentials, signing: signing, region: "cn-north-4",
            concurrency: concurrency, requestTimeout: requestTimeout, connectTimeout: .seconds(2)),
        logger: logger)
}

func withClientSimulator<T: Sendable>(
    auth: IoTDASimulator.Configuration.Auth = .accessKey(testKey),
    instanceID: String? = nil,
    latency: Duration = .zero,
    logger: Logger = quietLogger(),
    _ body: (IoTDASimulator) async throws -> T
) async throws -> T {
    let simulator = try await IoTDASimulator.start(
        .init(projectID: testProject, instanceID: instanceID, auth: auth, region: "cn-north-4", latency: latency),
        logger: logger)
    do {
        let result = try await body(simulator)
        try await simulator.shutdown()
        return result
    } catch {
        try? await simulator.shutdown()
        throw error
    }
}

func withClientAndSimulator(
    credentials: Credentials = .accessKey(testKey),
    signing: SigningAlgorithm = .sdkHMACSHA256,
    instanceID: String? = nil,
    requestTimeout: Duration = .seconds(10),
    _ body: (IoTDAClient, IoTDASimulator) async throws -> Void
) async throws {
    try await withClientSimulator(instanceID: instanceID) { simulator in
        let client = try makeClient(
            endpoint: simulator.endpoint, credentials: credentials, signing: signing, requestTimeout: requestTimeout)
        do {
            try await body(client, simulator)
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}

/// A TCP socket bound to 127.0.0.1 on a free port, not listening: connections are refused.
final class BoundButNotListening: Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        #if canImport(Glibc)
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = Darwin.socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw CleanerError.runtime("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            _ = closeFD(fd)
            throw CleanerError.runtime("bind() failed")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            _ = closeFD(fd)
            throw CleanerError.runtime("getsockname() failed")
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { _ = closeFD(fd) }
}

func closeFD(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    Glibc.close(fd)
    #else
    Darwin.close(fd)
    #endif
}
