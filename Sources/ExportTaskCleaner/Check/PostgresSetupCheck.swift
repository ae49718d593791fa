import Logging
import PostgresNIO

/// `check` on a PostgreSQL database (issue 22, item 4; docs/commands.md, "Details": `check`):
/// the URL (redacted: it holds no password), where the password comes from, whether a
/// connection can be made and if not why, the schema's version, and the privileges the
/// service needs. Nothing is written: no table is created, nothing migrated.
///
/// One connection of its own rather than a `PostgresClient`: the client's pool retries a
/// failed connection with backoff and hands its waiters a "circuit breaker tripped" after
/// 15 s, the cause (refused, a wrong password, TLS) only in its log; a single connection
/// fails at once with the server's or the network's own error, which is what `check` is for.
/// The connection is bounded by `connectTimeout` from the first packet to the end of the
/// authentication (postgres-nio's deadline covers both), and the queries after it by
/// ``queryTimeout`` as a whole: the connection is closed then, which ends any query waiting.
public enum PostgresSetupCheck {
    public static let defaultConnectTimeout: Duration = .seconds(5)
    /// The queries after the connection, together; each is also bounded by the server
    /// (`statement_timeout`), for a lock it would wait on.
    static let queryTimeout: Duration = .seconds(10)
    /// How long a query waits for a lock held by another session (a migration, `LOCK TABLE`).
    static let lockTimeout: Duration = .seconds(3)

    /// What `run` does with each table (docs/database.md, "PostgreSQL: roles"): it reads the
    /// schema version at every start, claims and finishes tasks, appends to the audit log, and
    /// keeps one heartbeat row of its own (written, refreshed, removed at stop).
    static let requiredPrivileges: [(table: String, privileges: [String])] = [
        ("export_tasks", ["SELECT", "INSERT", "UPDATE"]),
        ("audit_log", ["SELECT", "INSERT"]),
        ("service_heartbeat", ["SELECT", "INSERT", "UPDATE", "DELETE"]),
        (PostgresSchema.versionTable, ["SELECT"]),
    ]

    public typealias Finding = SetupCheck.Finding

    /// The findings for the configuration's `database` value, a PostgreSQL URL
    /// (``PostgresURL/isPostgres(_:)``), with the password found as ``PostgresPassword``
    /// finds it. A finding that is not ok makes `check` exit 2.
    public static func findings(database: String, environment: [String: String], credentialsFile: String?,
                                connectTimeout: Duration = defaultConnectTimeout, logger: Logger) async -> [Finding] {
        let url: PostgresURL
        do {
            url = try PostgresURL(database)
        } catch {
            return [Finding("database", error.message, ok: false)]
        }
        let password: PostgresPassword
        do {
            password = try PostgresPassword.resolve(environment: environment, credentialsFile: credentialsFile)
        } catch {
            return [Finding("database", url.redacted), Finding("password", "\(error)", ok: false)]
        }
        return await findings(url: url, password: password, connectTimeout: connectTimeout, startupParameters: [], logger: logger)
    }

    /// The same with the password in hand; `startupParameters` are added to the connection's
    /// (the tests name their own schema as `search_path`).
    static func findings(url: PostgresURL, password: PostgresPassword, connectTimeout: Duration,
                         startupParameters: [(String, String)], logger: Logger) async -> [Finding] {
        var findings = [Finding("database", url.redacted), Finding("password", password.source.description)]
        logger.debug("database check connecting", metadata: ["database": "\(url.redacted)", "password_source": "\(password.source)"])
        let connection: PostgresConnection
        do {
            connection = try await connect(url: url, password: password.password, connectTimeout: connectTimeout,
                                           startupParameters: startupParameters, logger: logger)
        } catch {
            findings.append(Finding("connects", PostgresConnectFailure.explain(error, url: url, password: password, timeout: connectTimeout),
                                    ok: false))
            return findings
        }
        let inspected = await withTaskGroup(of: [Finding]?.self) { group in
            group.addTask { await inspect(connection, logger: logger) }
            group.addTask {
                do {
                    try await Task.sleep(for: queryTimeout)
                } catch {
                    return nil  // cancelled: the inspection finished first
                }
                // Ends the query waiting, so that the inspection returns (and is not used).
                try? await connection.close()
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        try? await connection.close()
        findings += inspected ?? [Finding(
            "connects", "yes, but the server did not answer the check's queries within \(queryTimeout.components.seconds) s", ok: false)]
        return findings
    }

    static func connect(url: PostgresURL, password: String?, connectTimeout: Duration,
                                startupParameters: [(String, String)], logger: Logger) async throws -> PostgresConnection {
        let tls: PostgresConnection.Configuration.TLS
        do {
            tls = try url.tlsConfiguration.map { .require(try NIOSSLContext(configuration: $0)) } ?? .disable
        } catch {
            throw PostgresConnectFailure.TLSSetup(error: error)
        }
        var configuration = PostgresConnection.Configuration(
            host: url.host, port: url.port, username: url.user, password: password, database: url.database, tls: tls)
        configuration.options.connectTimeout = .milliseconds(connectTimeout.milliseconds)
        configuration.options.additionalStartupParameters = [
            ("application_name", "export-task-cleaner check"),
            // The server's own bound on each statement, and a shorter one on a lock it would
            // wait for, so that a lock held elsewhere is named as such.
            ("statement_timeout", "5s"), ("lock_timeout", "\(lockTimeout.components.seconds)s"),
        ] + startupParameters
        return try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
    }

    // MARK: - What the connection shows

    private static func inspect(_ connection: PostgresConnection, logger: Logger) async -> [Finding] {
        var findings: [Finding] = []
        do {
            var who = ("", "", nil as String?)
            let rows = try await connection.query(
                "SELECT current_user::text, current_setting('server_version'), current_schema()::text", logger: logger)
            for try await row in rows.decode((String, String, String?).self) { who = row }
            findings.append(Finding("connects", "yes: PostgreSQL \(TextFormat.printable(who.1)), as the role \(quoted(who.0))"))

            let version: Int
            do {
                version = try await PostgresSchema.installedVersion(connection, logger: logger)
            } catch let error as CleanerError {
                // No schema in the search_path, or someone else's tables: the message says which.
                findings.append(Finding("schema", error.message, ok: false))
                return findings
            }
            let schema = quoted(who.2 ?? "")
            let current = PostgresSchema.currentVersion
            switch version {
            case current:
                findings.append(Finding("schema", "version \(version), this release's (in the schema \(schema))"))
            case 0:
                findings.append(Finding("schema", "none yet in the schema \(schema): `run` or `enqueue` creates it"))
                findings.append(try await mayCreate(connection, schema: schema, role: who.0, logger: logger))
                return findings
            case 1..<current:
                findings.append(try await migratable(connection, version: version, schema: schema, role: who.0, logger: logger))
            default:
                findings.append(Finding("schema",
                    "version \(version) in the schema \(schema), of a newer export-task-cleaner than this one (\(current)): upgrade export-task-cleaner",
                    ok: false))
                return findings
            }
            findings.append(try await privileges(connection, role: who.0, logger: logger))
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "55P03" {
            // lock_not_available: lock_timeout ran out.
            findings.append(Finding(findings.isEmpty ? "connects" : "schema",
                "a table is locked by another session (a migration, or a LOCK TABLE by hand); waited \(lockTimeout.components.seconds) s, try again",
                ok: false))
        } catch {
            findings.append(Finding(findings.isEmpty ? "connects" : "schema", "a query failed: \(serverMessage(error))", ok: false))
        }
        return findings
    }

    /// Before the first `run`: whether the role may create the tables in its default schema.
    private static func mayCreate(_ connection: PostgresConnection, schema: String, role: String, logger: Logger) async throws -> Finding {
        var may = false
        for try await value in try await connection.query("SELECT has_schema_privilege(current_schema(), 'CREATE')", logger: logger)
            .decode(Bool.self) { may = value }
        return may
            ? Finding("privileges", "the role may CREATE in the schema \(schema), where `run` creates the tables")
            : Finding("privileges",
                      "the role \(quoted(role)) may not CREATE in the schema \(schema), so `run` cannot create the tables there: give it a schema of its own (docs/database.md, \"PostgreSQL: roles\")",
                      ok: false)
    }

    /// An older schema: `run` migrates it, as a role that owns the tables (ALTER needs it).
    private static func migratable(_ connection: PostgresConnection, version: Int, schema: String, role: String,
                                   logger: Logger) async throws -> Finding {
        var owns = false
        let rows = try await connection.query("""
            SELECT pg_has_role(relowner, 'USAGE') FROM pg_catalog.pg_class
            WHERE relname = 'export_tasks' AND relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
            """, logger: logger)
        for try await value in rows.decode(Bool.self) { owns = value }
        let text = "version \(version) in the schema \(schema); `run` or `enqueue` migrates it to \(PostgresSchema.currentVersion)"
        return owns
            ? Finding("schema", text)
            : Finding("schema", text + ", but only as the tables' owner, which the role \(quoted(role)) is not", ok: false)
    }

    /// `has_table_privilege` of `current_user` for each privilege of ``requiredPrivileges``,
    /// or the same privilege on every column (a grant by columns serves as well).
    private static func privileges(_ connection: PostgresConnection, role: String, logger: Logger) async throws -> Finding {
        let pairs = requiredPrivileges.flatMap { entry in entry.privileges.map { (entry.table, $0) } }
        let tables = pairs.map(\.0)
        let wanted = pairs.map(\.1)
        let rows = try await connection.query("""
            SELECT r.tablename, r.privilege,
                CASE WHEN c.oid IS NULL THEN NULL
                    WHEN has_table_privilege(c.oid, r.privilege) THEN true
                    WHEN r.privilege = 'DELETE' THEN false
                    ELSE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                            AND NOT has_column_privilege(c.oid, a.attnum, r.privilege))
                END
            FROM unnest(\(tables)::text[], \(wanted)::text[]) WITH ORDINALITY AS r(tablename, privilege, n)
            LEFT JOIN pg_catalog.pg_class c ON c.relname = r.tablename
                AND c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
            ORDER BY r.n
            """, logger: logger)
        var missing: [String] = []
        var absent: [String] = []
        for try await (table, privilege, granted) in rows.decode((String, String, Bool?).self) {
            switch granted {
            case true?: break
            case false?: missing.append("\(privilege) on \(table)")
            case nil: if !absent.contains(table) { absent.append(table) }
            }
        }
        if !absent.isEmpty {
            return Finding("privileges", "the table \(absent.joined(separator: ", ")) is missing from the schema", ok: false)
        }
        guard missing.isEmpty else {
            return Finding("privileges",
                "the role \(quoted(role)) lacks \(missing.joined(separator: ", ")): grant them, or run as the tables' owner (docs/database.md, \"PostgreSQL: roles\")",
                ok: false)
        }
        let all = requiredPrivileges.map { "\($0.privileges.joined(separator: ", ")) on \($0.table)" }
        return Finding("privileges", "all that `run` needs: " + all.joined(separator: "; "))
    }

    // MARK: - Text

    /// A name from the server, quoted, control characters escaped.
    static func quoted(_ name: String) -> String {
        "\"" + TextFormat.printable(name) + "\""
    }

    /// The server's message and SQLSTATE for a refused statement; postgres-nio's own
    /// `description` is a fixed text (and its reflection may hold a query's binds).
    static func serverMessage(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] {
                let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
                return TextFormat.printable(message) + state
            }
            return "\(error.code)"
        }
        if let error = error as? CleanerError { return error.message }
        return TextFormat.printable("\(error)")
    }
}
