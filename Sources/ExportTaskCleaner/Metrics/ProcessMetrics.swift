#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Prometheus
import Synchronization

/// The usual `process_*` metrics, read from `/proc/self` when scraped (Linux; elsewhere they
/// stay at zero): CPU seconds, resident and virtual memory, open descriptors, start time.
final class ProcessMetrics: Sendable {
    private let cpu: Prometheus.Counter
    private let resident: Prometheus.Gauge
    private let virtual: Prometheus.Gauge
    private let descriptors: Prometheus.Gauge
    private let startTime: Prometheus.Gauge
    private let cpuSeconds = Mutex<Double>(0)

    init(registry: PrometheusCollectorRegistry) {
        cpu = registry.makeCounter(name: "process_cpu_seconds_total", help: "User and system CPU time spent in seconds.")
        resident = registry.makeGauge(name: "process_resident_memory_bytes", help: "Resident memory size in bytes.")
        virtual = registry.makeGauge(name: "process_virtual_memory_bytes", help: "Virtual memory size in bytes.")
        descriptors = registry.makeGauge(name: "process_open_fds", help: "Number of open file descriptors.")
        startTime = registry.makeGauge(name: "process_start_time_seconds", help: "Start time of the process since unix epoch in seconds.")
    }

    func update() {
        #if os(Linux)
        guard let stat = Self.read("/proc/self/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return }
        // The fields after the command's closing parenthesis, from field 3 (state) on.
        let fields = stat[stat.index(after: close)...].split(separator: UInt8(ascii: " ")).map { Double(String(decoding: $0, as: UTF8.self)) }
        func field(_ number: Int) -> Double? { number - 3 < fields.count ? fields[number - 3] : nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        if let user = field(14), let system = field(15), ticks > 0 {
            let total = (user + system) / ticks
            let delta = cpuSeconds.withLock { last in
                defer { last = max(last, total) }
                return total - last
            }
            if delta > 0 { cpu.increment(by: delta) }
        }
        if let bytes = field(23) { virtual.set(bytes) }
        if let pages = field(24) { resident.set(pages * page) }
        if let started = field(22), ticks > 0, let boot = Self.bootTime() { startTime.set(boot + started / ticks) }
        descriptors.set(Double(Self.openDescriptors()))
        #endif
    }

    /// A small file's bytes (at most 4 KiB).
    private static func read(_ path: String) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { Glibc.close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        return count > 0 ? Array(bytes[0..<count]) : nil
    }

    /// `btime` of `/proc/stat`: when the system booted, in seconds since 1970.
    private static func bootTime() -> Double? {
        let descriptor = open("/proc/stat", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { Glibc.close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 64 * 1024)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        for line in bytes[0..<count].split(separator: UInt8(ascii: "\n")) where line.starts(with: Array("btime ".utf8)) {
            return Double(String(decoding: line.dropFirst(6), as: UTF8.self))
        }
        return nil
    }

    private static func openDescriptors() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            if entry.pointee.d_name.0 != UInt8(ascii: ".") { count += 1 }
        }
        // The directory's own descriptor is not the service's.
        return max(0, count - 1)
    }
}
