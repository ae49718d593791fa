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
        func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "process", metricName: metric, unitName: unit, helpText: help)
        }
        cpu = registry.makeCounter(descriptor: name("cpu", "seconds_total", "User and system CPU time spent in seconds."))
        resident = registry.makeGauge(descriptor: name("resident_memory", "bytes", "Resident memory size in bytes."))
        virtual = registry.makeGauge(descriptor: name("virtual_memory", "bytes", "Virtual memory size in bytes."))
        descriptors = registry.makeGauge(descriptor: name("open", "fds", "Number of open file descriptors."))
        startTime = registry.makeGauge(descriptor: name("start_time", "seconds", "Start time of the process since unix epoch in seconds."))
        startTime.set(Self.startTime() ?? 0)
    }

    func update() {
        #if os(Linux)
        guard let fields = Self.statFields() else { return }
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
        descriptors.set(Double(Self.openDescriptors()))
        #endif
    }

    /// The numeric fields of `/proc/self/stat` from field 3 (state) on, those after the
    /// command's closing parenthesis (the command may hold spaces and parentheses itself).
    private static func statFields() -> [Double?]? {
        let descriptor = open("/proc/self/stat", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0, let end = bytes[0..<count].lastIndex(of: UInt8(ascii: ")")) else { return nil }
        return bytes[(end + 1)..<count].split(separator: UInt8(ascii: " ")).map { Double(String(decoding: $0, as: UTF8.self)) }
    }

    /// When the process started, in seconds since 1970: its start in ticks since boot (field
    /// 22), and the boot time from the clocks (not `/proc/stat`, which the unit's
    /// `ProcSubset=pid` hides).
    static func startTime() -> Double? {
        #if os(Linux)
        guard let fields = statFields(), fields.count > 19, let started = fields[19] else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var realtime = timespec(), boottime = timespec()
        guard ticks > 0, clock_gettime(CLOCK_REALTIME, &realtime) == 0, clock_gettime(CLOCK_BOOTTIME, &boottime) == 0 else { return nil }
        let booted = (Double(realtime.tv_sec) + Double(realtime.tv_nsec) / 1e9) - (Double(boottime.tv_sec) + Double(boottime.tv_nsec) / 1e9)
        return (booted + started / ticks).rounded()
        #else
        return nil
        #endif
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
