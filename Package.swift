// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "export-task-cleaner",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "export-task-cleaner", targets: ["export-task-cleaner"]),
        .library(name: "ExportTaskCleaner", targets: ["ExportTaskCleaner"]),
        .library(name: "IoTDASimulator", targets: ["IoTDASimulator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        // Already in the graph through async-http-client; named so the simulator's server and
        // the client's timeouts can use NIO's types directly.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        // Metrics: swift-metrics as the API, swift-prometheus for the registry and text format.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // The PostgreSQL store (issue 22): the client, its pool and LISTEN/NOTIFY.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // glibc's mallopt, for the executable's allocator tuning.
        .systemLibrary(name: "CMalloc"),
        // Debian's zlib, for the retention archives' gzip (docs/database.md, "Retention").
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(
            name: "ExportTaskCleaner",
            dependencies: [
                "CSQLite",
                "CZlib",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .target(
            name: "IoTDASimulator",
            dependencies: [
                "ExportTaskCleaner",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "export-task-cleaner",
            dependencies: [
                "ExportTaskCleaner",
                "IoTDASimulator",
                "CMalloc",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // scripts/bench's floor under the low-rate rows: built, never shipped.
        .executableTarget(
            name: "export-task-cleaner-bench-http",
            dependencies: [
                "ExportTaskCleaner",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Sources/export-task-cleaner-bench-http"
        ),
        // scripts/bench's store benchmark: built, never shipped.
        .executableTarget(
            name: "export-task-cleaner-bench-store",
            dependencies: [
                "ExportTaskCleaner",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/export-task-cleaner-bench"
        ),
        .testTarget(
            name: "ExportTaskCleanerTests",
            dependencies: [
                "ExportTaskCleaner",
                "IoTDASimulator",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                // The metrics endpoint's hostile clients: raw connections on loopback.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // The PostgreSQL tests' own connections (LISTEN, locks held, statements refused).
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            // Read through #filePath (OfficialSDKVectorTests), not bundled.
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
