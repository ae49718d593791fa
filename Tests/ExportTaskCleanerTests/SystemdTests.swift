#if os(Linux)
import Foundation
import Glibc
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@testable import ExportTaskCleaner

/// sd_notify over real datagram sockets, and the watchdog paced by a manual clock.
@Suite("Systemd", .timeLimit(.minutes(1)))
struct SystemdTests {
    enum SocketKind: String, CaseIterable, Sendable {
        case path, abstract
    }

    // MARK: - SystemdNotifier

    @Test("Messages arrive one datagram each, in order", arguments: SocketKind.allCases)
    func messageOrder(kind: SocketKind) throws {
        let receiver = try SystemdTestSocket(kind: kind)
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket])
        #expect(notifier.isEnabled)

        #expect(notifier.ready())
        #expect(notifier.status("3 pending,\n1 in progress\r\n"))
        #expect(notifier.watchdog())
        #expect(notifier.stopping())
        #expect(notifier.send("EXTEND_TIMEOUT_USEC=1000000"))

        #expect(receiver.receive() == "READY=1")
        #expect(receiver.receive() == "STATUS=3 pending, 1 in progress ")
        #expect(receiver.receive() == "WATCHDOG=1")
        #expect(receiver.receive() == "STOPPING=1")
        #expect(receiver.receive() == "EXTEND_TIMEOUT_USEC=1000000")
        #expect(receiver.receiveIfQueued() == nil)
    }

    @Test("Unset or empty NOTIFY_SOCKET is a silent no-op", arguments: [[:], ["NOTIFY_SOCKET": ""]])
    func unsetIsSilent(environment: [String: String]) {
        let log = CapturedLogs()
        let notifier = SystemdNotifier(environment: environment, logger: log.logger())
        #expect(!notifier.isEnabled)
        #expect(!notifier.ready())
        #expect(!notifier.status("idle"))
        #expect(!notifier.watchdog())
        #expect(!notifier.stopping())
        #expect(log.lines.isEmpty)
    }

    @Test("A socket nobody listens on makes sends fail quietly, at debug level")
    func unreachableSocket() {
        let log = CapturedLogs()
        let notifier = SystemdNotifier(
            environment: ["NOTIFY_SOCKET": "/nonexistent/\(UUID().uuidString)/notify"],
            logger: log.logger()
        )
        #expect(notifier.isEnabled)
        #expect(!notifier.ready())
        #expect(!notifier.ready())
        #expect(log.lines.count == 2)
        #expect(log.lines.allSatisfy { $0.level == .debug })
    }

    @Test("A name too long for sun_path turns notifications off")
    func tooLongName() {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)])
        #expect(!notifier.isEnabled)
        #expect(!notifier.ready())
    }

    @Test("Socket address lengths: offsetof(sun_path) + name, not sizeof(sockaddr_un)")
    func addressLengths() throws {
        let offset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        let abstract = try #require(SystemdNotifier.socketAddress("@abc"))
        #expect(abstract.count == offset + 4)
        #expect(Array(abstract[offset...]) == [0] + Array("abc".utf8))
        let path = try #require(SystemdNotifier.socketAddress("/run/x"))
        #expect(path.count == offset + 7)
        #expect(Array(path[offset...]) == Array("/run/x".utf8) + [0])
        #expect(SystemdNotifier.socketAddress("@") == nil)
        #expect(SystemdNotifier.socketAddress("relative/notify") == nil)
    }

    @Test("watchdogInterval is half of WATCHDOG_USEC, for this process only")
    func watchdogInterval() {
        func interval(_ environment: [String: String]) -> Duration? {
            SystemdNotifier(environment: environment).watchdogInterval
        }
        let pid = getpid()
        #expect(interval(["WATCHDOG_USEC": "30000000"]) == .seconds(15))
        #expect(interval(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(pid)"]) == .seconds(15))
        #expect(interval(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(pid == 1 ? 2 : 1)"]) == nil)
        #expect(interval(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"]) == nil)
        #expect(interval(["WATCHDOG_USEC": "3"]) == .microseconds(1))
        #expect(interval([:]) == nil)
        for bad in ["", "0", "-5", "abc", "1.5", "18446744073709551615"] {
            #expect(interval(["WATCHDOG_USEC": bad]) == nil, "WATCHDOG_USEC=\(bad)")
        }
    }

    // MARK: - LivenessMonitor

    @Test("consumeBeat reports a beat once")
    func liveness() {
        let monitor = LivenessMonitor()
        #expect(!monitor.consumeBeat())
        monitor.beat()
        monitor.beat()
        #expect(monitor.consumeBeat())
        #expect(!monitor.consumeBeat())
        #expect(LivenessMonitor(beaten: true).consumeBeat())
    }

    // MARK: - WatchdogService

    @Test("A beating loop gets one WATCHDOG=1 per interval", arguments: SocketKind.allCases)
    func watchdogPacing(kind: SocketKind) async throws {
        let receiver = try SystemdTestSocket(kind: kind)
        let monitor = LivenessMonitor()
        let clock = SystemdTestClock()
        let service = WatchdogService(
            notifier: SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket, "WATCHDOG_USEC": "30000000"]),
            monitor: monitor, clock: clock, logger: CapturedLogs().logger()
        )
        let run = Task { try await service.run() }
        await clock.waitForSleeps(1)

        for tick in 1...3 {
            monitor.beat()
            monitor.beat()
            clock.advance(by: .seconds(10))  // not yet due: the watchdog task is not even woken
            #expect(receiver.receiveIfQueued() == nil)
            monitor.beat()
            clock.advance(by: .seconds(5))
            await clock.waitForSleeps(tick + 1)  // the tick ran and the service sleeps again
            #expect(receiver.receive() == "WATCHDOG=1")
            #expect(receiver.receiveIfQueued() == nil)
        }

        run.cancel()
        try await run.value
    }

    @Test("A stuck loop gets no pings, one warning, and pings again when it recovers")
    func watchdogStuckLoop() async throws {
        let receiver = try SystemdTestSocket(kind: .path)
        let monitor = LivenessMonitor()
        let clock = SystemdTestClock()
        let log = CapturedLogs()
        let service = WatchdogService(
            notifier: SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket]),
            monitor: monitor, interval: .seconds(15), clock: clock, logger: log.logger()
        )
        let run = Task { try await service.run() }
        await clock.waitForSleeps(1)

        for tick in 1...4 {
            clock.advance(by: .seconds(15))
            await clock.waitForSleeps(tick + 1)
            #expect(receiver.receiveIfQueued() == nil)
        }
        #expect(log.lines.filter { $0.level == .warning }.count == 1)

        monitor.beat()
        clock.advance(by: .seconds(15))
        await clock.waitForSleeps(6)
        #expect(receiver.receive() == "WATCHDOG=1")
        #expect(log.lines.filter { $0.level == .info }.count == 1)

        run.cancel()
        try await run.value
    }

    @Test("A late tick starts a new schedule instead of a burst")
    func watchdogLateTick() async throws {
        let receiver = try SystemdTestSocket(kind: .path)
        let monitor = LivenessMonitor()
        let clock = SystemdTestClock()
        let service = WatchdogService(
            notifier: SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket]),
            monitor: monitor, interval: .seconds(15), clock: clock, logger: CapturedLogs().logger()
        )
        let run = Task { try await service.run() }
        await clock.waitForSleeps(1)

        monitor.beat()
        clock.advance(by: .seconds(100))
        await clock.waitForSleeps(2)
        #expect(receiver.receive() == "WATCHDOG=1")
        #expect(clock.pendingDeadlines == [clock.now.advanced(by: .seconds(15))])

        run.cancel()
        try await run.value
    }

    @Test("Without a watchdog interval run() returns at once")
    func watchdogOff() async throws {
        let clock = SystemdTestClock()
        let service = WatchdogService(
            notifier: SystemdNotifier(environment: [:]), monitor: LivenessMonitor(), clock: clock,
            logger: CapturedLogs().logger()
        )
        try await service.run()
        #expect(clock.sleepCount == 0)
    }

    @Test("Graceful shutdown ends the watchdog")
    func watchdogGracefulShutdown() async throws {
        let clock = SystemdTestClock()
        let log = CapturedLogs()
        let service = WatchdogService(
            notifier: SystemdNotifier(environment: [:]), monitor: LivenessMonitor(), interval: .seconds(15),
            clock: clock, logger: log.logger()
        )
        let group = ServiceGroup(configuration: .init(services: [service], logger: log.logger()))
        let run = Task { try await group.run() }
        await clock.waitForSleeps(1)
        await group.triggerGracefulShutdown()
        try await run.value
    }
}

// MARK: - Test doubles

/// One end of a notification socket: bound in a fresh temporary directory, or under a random
/// abstract name. Receives wait at most five seconds (`SO_RCVTIMEO`).
final class SystemdTestSocket {
    let fd: Int32
    let notifySocket: String
    private let directory: String?

    init(kind: SystemdTests.SocketKind) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemdTestError.errno("socket", errno) }

        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let offset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        let nameBytes: [UInt8]
        let length: Int
        switch kind {
        case .path:
            var template = Array("/tmp/etc-systemd-test-XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else {
                close(fd)
                throw SystemdTestError.errno("mkdtemp", errno)
            }
            directory = String(cString: made)
            notifySocket = directory! + "/notify.sock"
            nameBytes = Array(notifySocket.utf8) + [0]
            length = offset + nameBytes.count
        case .abstract:
            directory = nil
            let name = "export-task-cleaner-test-\(UInt64.random(in: 0...UInt64.max))"
            notifySocket = "@" + name
            nameBytes = [0] + Array(name.utf8)
            length = offset + nameBytes.count
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: nameBytes) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw SystemdTestError.errno("bind", code)
        }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
        if let directory {
            unlink(notifySocket)
            rmdir(directory)
        }
    }

    /// The next datagram, waiting up to the receive timeout.
    func receive() -> String? { receive(flags: 0) }

    /// A datagram already queued, without waiting.
    func receiveIfQueued() -> String? { receive(flags: Int32(MSG_DONTWAIT)) }

    private func receive(flags: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, flags) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer.prefix(count), as: UTF8.self)
    }
}

enum SystemdTestError: Error {
    case errno(String, Int32)
}

/// A clock that moves only when a test advances it. Tests can wait until the code under test
/// has called `sleep` a number of times, which is how they know a tick has been handled.
final class SystemdTestClock: Clock, Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private struct State {
        var now = Instant(offset: .zero)
        var nextID: UInt64 = 0
        var sleeps = 0
        var sleepers: [UInt64: (deadline: Instant, continuation: CheckedContinuation<Void, any Error>)] = [:]
        var cancelled: Set<UInt64> = []
        var sleepWaiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []

        mutating func takeSatisfiedWaiters() -> [CheckedContinuation<Void, Never>] {
            let ready = sleepWaiters.filter { $0.count <= sleeps }.map(\.continuation)
            sleepWaiters.removeAll { $0.count <= sleeps }
            return ready
        }
    }

    private let state = Mutex(State())

    var now: Instant { state.withLock { $0.now } }
    var minimumResolution: Duration { .zero }
    var sleepCount: Int { state.withLock { $0.sleeps } }
    var pendingDeadlines: [Instant] { state.withLock { $0.sleepers.values.map(\.deadline).sorted() } }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (outcome, waiters): (Result<Void, any Error>?, [CheckedContinuation<Void, Never>]) =
                    state.withLock { state in
                        state.sleeps += 1
                        let waiters = state.takeSatisfiedWaiters()
                        if state.cancelled.remove(id) != nil { return (.failure(CancellationError()), waiters) }
                        if deadline <= state.now { return (.success(()), waiters) }
                        state.sleepers[id] = (deadline, continuation)
                        return (nil, waiters)
                    }
                if let outcome { continuation.resume(with: outcome) }
                for waiter in waiters { waiter.resume() }
            }
        } onCancel: {
            let sleeper = state.withLock { state in
                if let sleeper = state.sleepers.removeValue(forKey: id) { return Optional(sleeper) }
                state.cancelled.insert(id)
                return nil
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    func advance(by duration: Duration) {
        let due = state.withLock { state in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.value.deadline <= now }
            for id in due.keys { state.sleepers[id] = nil }
            return due.values.map(\.continuation)
        }
        for continuation in due { continuation.resume() }
    }

    /// Returns once `sleep` has been called at least `count` times in all.
    func waitForSleeps(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state in
                if state.sleeps >= count { return true }
                state.sleepWaiters.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }
}

#endif
