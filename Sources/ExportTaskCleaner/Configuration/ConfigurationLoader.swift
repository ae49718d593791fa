import FoundationEssentials
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads and validates the configuration file. Every problem is a `CleanerError.configuration`
/// (exit status 2) that names the file, the line and the key at fault.
public enum ConfigurationLoader {
    /// `--config`, else `$EXPORT_TASK_CLEANER_CONFIG`, else `/etc/export-task-cleaner/config.json`.
    public static func resolvePath(_ option: String?, environment: [String: String]) -> String {
        if let option, !option.isEmpty { return option }
        if let fromEnvironment = environment[Configuration.pathEnvironmentVariable], !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        return Configuration.defaultPath
    }

    public static func load(path: String) throws -> Configuration {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            var info = stat()
            let reason = stat(path, &info) != 0 ? Self.reason(errno: errno)
                : info.st_mode & S_IFMT == S_IFDIR ? "it is a folder, not a file"
                : "it cannot be read (check its permissions)"
            throw CleanerError.configuration("\(path): cannot read the configuration: \(reason)")
        }
        var configuration = try parse(Array(data), source: path)
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
        // A PostgreSQL URL is no path (docs/configuration.md): resolved against the folder,
        // `postgresql://…` would become a file beside the configuration.
        if !PostgresURL.isPostgres(configuration.database) {
            configuration.database = resolve(configuration.database, against: folder)
        }
        configuration.auth.credentialsFile = configuration.auth.credentialsFile.map { resolve($0, against: folder) }
        if let retention = configuration.retention {
            configuration.retention?.archiveDirectory = retention.archiveFolder(database: configuration.database)
        }
        return configuration
    }

    /// Why `stat` found no file, as the system says it (a symlink loop is no missing file).
    private static func reason(errno code: Int32) -> String {
        switch code {
        case ENOENT: "no such file"
        case ELOOP: "too many levels of symbolic links (a symlink loop?)"
        case ENOTDIR: "a part of the path is not a folder"
        case EACCES: "a folder on the way cannot be searched (check its permissions)"
        case ENAMETOOLONG: "the path is too long"
        default: String(cString: strerror(code))
        }
    }

    private static func resolve(_ path: String, against folder: URL) -> String {
        path.hasPrefix("/") ? path : folder.appendingPathComponent(path).standardizedFileURL.path
    }

    /// Parses and validates configuration text; `source` names it in messages.
    public static func parse(_ bytes: [UInt8], source: String) throws -> Configuration {
        let root: JSONValue.Located
        do {
            root = try JSONValue.parse(bytes)
        } catch {
            throw CleanerError.configuration("\(source):\(error.line): not valid JSON: \(error.message)")
        }
        var reader = Reader(source: source)
        return try reader.configuration(root)
    }

    /// Walks the parsed JSON, checking each key against what it may hold.
    private struct Reader {
        let source: String

        func fail(_ key: String, _ line: Int, _ message: String) -> CleanerError {
            .configuration("\(source):\(line): \(key.isEmpty ? "the configuration" : key): \(message)")
        }

        func object(_ value: JSONValue.Located, _ key: String, allowed: [String]) throws -> [String: JSONValue.Located] {
            guard case .object(let members) = value.value else {
                throw fail(key, value.line, "expected an object, got \(value.value.kind)")
            }
            var result: [String: JSONValue.Located] = [:]
            for member in members {
                let path = key.isEmpty ? member.key : "\(key).\(member.key)"
                guard allowed.contains(member.key) else {
                    throw fail(path, member.value.line, "unknown key (known keys: \(allowed.joined(separator: ", ")))")
                }
                result[member.key] = member.value
            }
            return result
        }

        func string(_ value: JSONValue.Located, _ key: String) throws -> String {
            guard case .string(let text) = value.value else {
                throw fail(key, value.line, "expected a string, got \(value.value.kind)")
            }
            guard !trimmedWhitespace(text).isEmpty else {
                throw fail(key, value.line, "must not be empty")
            }
            guard !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw fail(key, value.line, "must not contain control characters")
            }
            return text
        }

        func identifier(_ value: JSONValue.Located, _ rule: IdentifierRule) throws -> String {
            let text = try string(value, rule.name)
            if let problem = rule.problem(with: text) {
                throw fail(rule.name, value.line, "\(problem) (1 to \(rule.maximumLength) letters, digits, '-' or '_')")
            }
            return text
        }

        func optionalString(_ value: JSONValue.Located?, _ key: String) throws -> String? {
            guard let value, value.value != .null else { return nil }
            return try string(value, key)
        }

        func integer(_ value: JSONValue.Located, _ key: String, _ range: ClosedRange<Int>, unit: String = "") throws -> Int {
            let expectation = "a whole number from \(range.lowerBound) to \(range.upperBound)\(unit)"
            guard case .number(let number, let text) = value.value else {
                throw fail(key, value.line, "expected \(expectation), got \(value.value.kind)")
            }
            guard number.rounded() == number, let whole = Int(exactly: number), range.contains(whole) else {
                throw fail(key, value.line, "expected \(expectation), got \(text)")
            }
            return whole
        }

        func milliseconds(_ value: JSONValue.Located?, _ key: String, _ range: ClosedRange<Int>, default fallback: Duration) throws -> Duration {
            guard let value else { return fallback }
            return .milliseconds(try integer(value, key, range, unit: " (milliseconds)"))
        }

        mutating func configuration(_ root: JSONValue.Located) throws -> Configuration {
            let keys = try object(root, "", allowed: [
                "database", "endpoint", "region", "project_id", "instance_id", "auth", "concurrency",
                "max_requests_per_second", "retry", "request_timeout_ms", "lease_seconds", "shutdown_grace_ms",
                "poll_interval_ms", "log_level", "metrics", "retention", "sweep",
            ])
            func required(_ key: String) throws -> JSONValue.Located {
                guard let value = keys[key] else { throw fail(key, root.line, "missing; it is required") }
                return value
            }
            let region = try string(try required("region"), "region")
            guard region.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                throw fail("region", keys["region"]!.line, "expected a region name such as cn-north-4")
            }
            let projectID = try identifier(try required("project_id"), .projectID)
            let endpoint = try keys["endpoint"].map { try endpointValue($0) } ?? "https://iotda.\(region).myhuaweicloud.com"
            var configuration = Configuration(endpoint: endpoint, region: region, projectID: projectID)
            if let database = try optionalString(keys["database"], "database") {
                if PostgresURL.looksMistyped(database) { throw PostgresURL.mistyped }
                configuration.database = database
            }
            if let value = keys["instance_id"], value.value != .null {
                configuration.instanceID = try identifier(value, .instanceID)
            }
            if let auth = keys["auth"] { configuration.auth = try self.auth(auth) }
            if let value = keys["concurrency"] { configuration.concurrency = try integer(value, "concurrency", 1...Configuration.maximumConcurrency) }
            if let value = keys["max_requests_per_second"] {
                guard case .number(let rate, let text) = value.value else {
                    throw fail("max_requests_per_second", value.line, "expected a number from 0.001 to 100000, got \(value.value.kind)")
                }
                guard rate >= 0.001, rate <= 100_000 else {
                    throw fail("max_requests_per_second", value.line, "expected a number from 0.001 to 100000, got \(text)")
                }
                configuration.maxRequestsPerSecond = rate
            }
            if let retry = keys["retry"] { configuration.retry = try self.retry(retry) }
            if let metrics = keys["metrics"], metrics.value != .null {
                let keys = try object(metrics, "metrics", allowed: ["listen"])
                if let listen = keys["listen"], listen.value != .null {
                    do {
                        configuration.metricsListen = try ListenAddress(parsing: try string(listen, "metrics.listen"))
                    } catch let problem as Endpoint.Problem {
                        throw fail("metrics.listen", listen.line, problem.reason)
                    }
                }
            }
            if let retention = keys["retention"] {
                configuration.retention = retention.value == .null ? nil : try self.retention(retention)
            }
            if let sweep = keys["sweep"], sweep.value != .null { configuration.sweep = try self.sweep(sweep) }
            configuration.requestTimeout = try milliseconds(keys["request_timeout_ms"], "request_timeout_ms", 100...600_000, default: configuration.requestTimeout)
            if let value = keys["lease_seconds"] {
                configuration.leaseDuration = .seconds(try integer(value, "lease_seconds", 5...86_400, unit: " (seconds)"))
            }
            if configuration.leaseDuration <= configuration.requestTimeout * 2 {
                throw fail("lease_seconds", keys["lease_seconds"]?.line ?? root.line,
                           "must be more than twice request_timeout_ms, so a lease outlives its request")
            }
            configuration.shutdownGrace = try milliseconds(keys["shutdown_grace_ms"], "shutdown_grace_ms", 0...600_000, default: configuration.shutdownGrace)
            configuration.pollInterval = try milliseconds(keys["poll_interval_ms"], "poll_interval_ms", 10...3_600_000, default: configuration.pollInterval)
            if let value = keys["log_level"] {
                let text = try string(value, "log_level")
                guard let level = Logger.Level(rawValue: text.lowercased()) else {
                    throw fail("log_level", value.line, "expected one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(text)\"")
                }
                configuration.logLevel = level
            }
            return configuration
        }

        /// The endpoint as written, by ``Endpoint``'s rule (the client's own), without a
        /// trailing slash.
        func endpointValue(_ value: JSONValue.Located) throws -> String {
            let text = try string(value, "endpoint")
            do {
                _ = try Endpoint(parsing: text)
            } catch {
                throw fail("endpoint", value.line, error.reason)
            }
            return text.hasSuffix("/") ? String(text.dropLast()) : text
        }

        func auth(_ value: JSONValue.Located) throws -> Configuration.Auth {
            let keys = try object(value, "auth", allowed: ["method", "signing", "credentials_file", "metadata_endpoint"])
            var auth = Configuration.Auth()
            if let method = keys["method"] {
                let text = try string(method, "auth.method")
                guard let parsed = AuthMethod(rawValue: text) else {
                    throw fail("auth.method", method.line, "expected \"aksk\", \"token\" or \"metadata\", got \"\(text)\"")
                }
                auth.method = parsed
            }
            if let signing = keys["signing"] {
                let text = try string(signing, "auth.signing")
                if text == "auto" {
                    auth.signing = .auto
                } else if let algorithm = SigningAlgorithm(rawValue: text) {
                    auth.signing = .algorithm(algorithm)
                } else {
                    throw fail("auth.signing", signing.line, "expected \"auto\", \"SDK-HMAC-SHA256\" or \"V11-HMAC-SHA256\", got \"\(text)\"")
                }
            }
            auth.credentialsFile = try optionalString(keys["credentials_file"], "auth.credentials_file")
            if let file = keys["credentials_file"], auth.credentialsFile != nil, auth.method == .metadata {
                throw fail("auth.credentials_file", file.line, "is not used with auth.method \"metadata\" (the ECS metadata service provides the credentials); remove it")
            }
            if let endpoint = keys["metadata_endpoint"] {
                guard auth.method == .metadata else {
                    throw fail("auth.metadata_endpoint", endpoint.line, "is used only with auth.method \"metadata\"")
                }
                let text = try string(endpoint, "auth.metadata_endpoint")
                do {
                    let parsed = try MetadataCredentialsClient.endpoint(parsing: text)
                    auth.metadataEndpoint = parsed.baseURL
                } catch {
                    throw fail("auth.metadata_endpoint", endpoint.line, error.reason)
                }
            }
            return auth
        }

        /// `retention` (docs/configuration.md): ages as `audit --since` takes them.
        func retention(_ value: JSONValue.Located) throws -> Configuration.Retention {
            let keys = try object(value, "retention", allowed: ["keep_finished", "archive_dir", "every"])
            var retention = Configuration.Retention()
            func age(_ key: String) throws -> TimeInterval? {
                guard let value = keys[key] else { return nil }
                let text = try string(value, "retention.\(key)")
                guard let seconds = AuditFilter.ageSeconds(text) else {
                    throw fail("retention.\(key)", value.line, "expected an age such as 90s, 15m, 2h or 90d (at most 100 years), got \(IDList.quoted(text))")
                }
                return seconds
            }
            if let keep = try age("keep_finished") { retention.keepFinished = keep }
            if let every = try age("every") {
                guard every >= Configuration.Retention.shortestEvery else {
                    throw fail("retention.every", keys["every"]!.line, "must be at least 1s")
                }
                retention.every = every
            }
            if let folder = keys["archive_dir"] { retention.archiveDirectory = try string(folder, "retention.archive_dir") }
            return retention
        }

        /// `sweep`: `every` (an age from 1m to 30d) and `older_than` (an age, default 7d), as
        /// `audit --since` reads an age (docs/configuration.md).
        func sweep(_ value: JSONValue.Located) throws -> Configuration.Sweep {
            let keys = try object(value, "sweep", allowed: ["every", "older_than"])
            guard let everyValue = keys["every"] else { throw fail("sweep.every", value.line, "missing; it is required") }
            let every = try string(everyValue, "sweep.every")
            guard let seconds = AuditFilter.ageSeconds(every), seconds >= 60, seconds <= 30 * 86_400 else {
                throw fail("sweep.every", everyValue.line, "expected an age from 1m to 30d such as 15m, 1h or 1d, got \(IDList.quoted(every))")
            }
            var sweep = Configuration.Sweep(every: .milliseconds(Int64(seconds * 1000)))
            if let olderValue = keys["older_than"] {
                let older = try string(olderValue, "sweep.older_than")
                guard let age = AuditFilter.ageSeconds(older), age <= AuditFilter.longestAge else {
                    throw fail("sweep.older_than", olderValue.line, "expected an age such as 2h or 7d (at most 100 years), got \(IDList.quoted(older))")
                }
                sweep.olderThan = older
            }
            return sweep
        }

        func retry(_ value: JSONValue.Located) throws -> Configuration.Retry {
            let keys = try object(value, "retry", allowed: ["max_attempts", "base_delay_ms", "max_delay_ms"])
            var retry = Configuration.Retry()
            if let attempts = keys["max_attempts"] { retry.maxAttempts = try integer(attempts, "retry.max_attempts", 1...100) }
            retry.baseDelay = try milliseconds(keys["base_delay_ms"], "retry.base_delay_ms", 1...3_600_000, default: retry.baseDelay)
            retry.maxDelay = try milliseconds(keys["max_delay_ms"], "retry.max_delay_ms", 1...86_400_000, default: retry.maxDelay)
            if retry.maxDelay < retry.baseDelay {
                throw fail("retry.max_delay_ms", keys["max_delay_ms"]?.line ?? value.line, "must not be less than retry.base_delay_ms")
            }
            return retry
        }
    }
}
