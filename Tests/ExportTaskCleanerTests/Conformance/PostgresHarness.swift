import Foundation

@testable import ExportTaskCleaner

/// The PostgreSQL server the tests may use: `EXPORT_TASK_CLEANER_TEST_POSTGRES_URL` (its
/// password in `PGPASSWORD`), as `scripts/postgres-cluster` prints it.
enum PostgresTestServer {
    static var configured: String? {
        let url = ProcessInfo.processInfo.environment["EXPORT_TASK_CLEANER_TEST_POSTGRES_URL"]
        return url?.isEmpty == false ? url : nil
    }
}

enum PostgresHarness {
    static func make(runner: String) async throws -> any StoreHarness {
        throw StoreError(.refused, "the PostgreSQL store is not built yet")
    }
}
