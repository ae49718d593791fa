import ExportTaskCleaner
import Testing

/// The configuration's `database` value as a PostgreSQL URL (issue 22): what is read, what is
/// refused, and that no refusal repeats a password.
@Suite("PostgreSQL URL")
struct PostgresURLTests {
    struct Accepted: Sendable, CustomTestStringConvertible {
        var url: String
        var user: String
        var host: String
        var port: Int
        var database: String
        var sslMode: PostgresURL.SSLMode
        var testDescription: String { url }
    }

    static let accepted: [Accepted] = [
        .init(url: "postgresql://cleaner@db.example.com/queue", user: "cleaner", host: "db.example.com", port: 5432,
              database: "queue", sslMode: .verifyFull),
        .init(url: "postgres://cleaner@127.0.0.1:54329/cleaner_test?sslmode=disable", user: "cleaner", host: "127.0.0.1",
              port: 54329, database: "cleaner_test", sslMode: .disable),
        .init(url: "postgresql://u@[::1]:6543/d?sslmode=require", user: "u", host: "::1", port: 6543, database: "d", sslMode: .require),
        .init(url: "postgresql://u@[2001:db8::5]/d?sslmode=verify-full", user: "u", host: "2001:db8::5", port: 5432,
              database: "d", sslMode: .verifyFull),
        // Percent-decoded user and database; an @ in a name is written %40.
        .init(url: "postgresql://team%40ops@h/queue%2Fone%20two", user: "team@ops", host: "h", port: 5432,
              database: "queue/one two", sslMode: .verifyFull),
        .init(url: "postgresql://r%C3%A9le@h/b%C3%A4se", user: "réle", host: "h", port: 5432, database: "bäse", sslMode: .verifyFull),
        // The scheme in any case, as URL schemes are; a port with leading zeros; an empty query.
        .init(url: "PostgreSQL://u@H-1.example_internal:00065/d?", user: "u", host: "H-1.example_internal", port: 65,
              database: "d", sslMode: .verifyFull),
        .init(url: "postgresql://u@h:65535/d", user: "u", host: "h", port: 65535, database: "d", sslMode: .verifyFull),
        // Parameter names and values are percent-decoded too, as libpq reads them.
        .init(url: "postgresql://u@h/d?ssl%6Dode=dis%61ble", user: "u", host: "h", port: 5432, database: "d", sslMode: .disable),
        .init(url: "postgresql://\(String(repeating: "u", count: 63))@h/\(String(repeating: "d", count: 63))",
              user: String(repeating: "u", count: 63), host: "h", port: 5432, database: String(repeating: "d", count: 63),
              sslMode: .verifyFull),
    ]

    @Test("accepted URLs, and their redacted form reads back as the same URL", arguments: accepted)
    func accepts(_ example: Accepted) throws {
        let url = try PostgresURL(example.url)
        #expect(url.user == example.user)
        #expect(url.host == example.host)
        #expect(url.port == example.port)
        #expect(url.database == example.database)
        #expect(url.sslMode == example.sslMode)
        #expect(try PostgresURL(url.redacted) == url)
        #expect(PostgresURL.isPostgres(example.url))
    }

    @Test("the redacted form spells out every part")
    func redacted() throws {
        #expect(try PostgresURL("postgres://u@h/d").redacted == "postgresql://u@h:5432/d?sslmode=verify-full")
        #expect(try PostgresURL("postgresql://a%20b@[::1]:7/c%2Fd?sslmode=disable").redacted
                    == "postgresql://a%20b@[::1]:7/c%2Fd?sslmode=disable")
        #expect("\(try PostgresURL("postgresql://u@h/d"))" == "postgresql://u@h:5432/d?sslmode=verify-full")
    }

    @Test("a path, or anything but the two schemes, stays a SQLite file", arguments: [
        "/var/lib/export-task-cleaner/queue.sqlite3", "queue.sqlite3", "postgresql:/x", "postgresql:x", "mysql://u@h/d",
        "file:///tmp/q.sqlite3", "", " postgresql://u@h/d", "postgresq://u@h/d", "postgresql\u{1A}//u@h/d",
        "./postgresql://u@h/d",
    ])
    func sqlitePaths(_ value: String) {
        #expect(!PostgresURL.isPostgres(value))
    }

    struct Refused: Sendable, CustomTestStringConvertible {
        var url: String
        /// A piece of the message that says why.
        var because: String
        var testDescription: String { url }
    }

    static let refused: [Refused] = [
        .init(url: "postgresql:///d", because: "names no user"),
        .init(url: "postgresql://u@/d", because: "names no host"),
        .init(url: "postgresql://u@h", because: "names no database"),
        .init(url: "postgresql://u@h/", because: "names no database"),
        .init(url: "postgresql://u@h?sslmode=disable", because: "names no database"),
        .init(url: "postgresql://h/d", because: "names no user"),
        .init(url: "postgresql://@h/d", because: "empty user"),
        .init(url: "postgresql://u@h:0/d", because: "port"),
        .init(url: "postgresql://u@h:65536/d", because: "port"),
        .init(url: "postgresql://u@h:/d", because: "port"),
        .init(url: "postgresql://u@h:-1/d", because: "port"),
        .init(url: "postgresql://u@h:+5/d", because: "port"),
        .init(url: "postgresql://u@h:99999999999999999999999/d", because: "port"),
        .init(url: "postgresql://u@h:54a/d", because: "port"),
        .init(url: "postgresql://u@h1,h2/d", because: "more than one host"),
        .init(url: "postgresql://u@h1:5432,h2:5432/d", because: "more than one host"),
        .init(url: "postgresql://u@::1/d", because: "without brackets"),
        .init(url: "postgresql://u@[::1/d", because: "without its ]"),
        .init(url: "postgresql://u@[::1]x/d", because: "after the IPv6"),
        .init(url: "postgresql://u@[db.example.com]/d", because: "not an IPv6"),
        .init(url: "postgresql://u@[fe80::1%25eth0]/d", because: "not an IPv6"),
        .init(url: "postgresql://u@%2Fvar%2Frun%2Fpostgresql/d", because: "Unix socket"),
        .init(url: "postgresql://u@h..x/d", because: "neither a name"),
        .init(url: "postgresql://u@h/d/e", because: "a / in the database"),
        .init(url: "postgresql://u@h/d#frag", because: "fragment"),
        .init(url: "postgresql://u@h/d%", because: "% not followed"),
        .init(url: "postgresql://u@h/d%4", because: "% not followed"),
        .init(url: "postgresql://u@h/d%ZZ", because: "% not followed"),
        .init(url: "postgresql://u%zz@h/d", because: "% not followed"),
        .init(url: "postgresql://u@h/d%00x", because: "control characters"),
        .init(url: "postgresql://u@h/d%0Afake%20log%20line", because: "control characters"),
        .init(url: "postgresql://u@h/%FF%FE", because: "not UTF-8"),
        .init(url: "postgresql://u@h/\(String(repeating: "d", count: 64))", because: "longer than 63"),
        .init(url: "postgresql://\(String(repeating: "%41", count: 64))@h/d", because: "longer than 63"),
        .init(url: "postgresql://u@h/d?sslmode=prefer", because: "sslmode=prefer, which is not offered"),
        .init(url: "postgresql://u@h/d?sslmode=verify-ca", because: "sslmode=verify-ca, which is not offered"),
        .init(url: "postgresql://u@h/d?sslmode=DISABLE", because: "an sslmode other than"),
        .init(url: "postgresql://u@h/d?sslmode=", because: "an sslmode other than"),
        .init(url: "postgresql://u@h/d?sslmode=disable&sslmode=require", because: "sslmode twice"),
        .init(url: "postgresql://u@h/d?connect_timeout=10", because: "unknown parameter \"connect_timeout\""),
        .init(url: "postgresql://u@h/d?sslmode=disable&host=%2Ftmp", because: "unknown parameter \"host\""),
        .init(url: "postgresql://u@h/d?sslrootcert=x", because: "unknown parameter \"sslrootcert\""),
        .init(url: "postgresql://u@h/d?Sslmode=disable", because: "unknown parameter (not shown)"),
        .init(url: "postgresql://u@h/d?sslmode", because: "not NAME=VALUE"),
        .init(url: "postgresql://u@h/d?&sslmode=disable", because: "not NAME=VALUE"),
        .init(url: "postgresql://u@h/d name", because: "a space"),
        .init(url: "postgresql://u@h/dé", because: "non-ASCII"),
        .init(url: "postgresql://u@h/d\n", because: "control character"),
        .init(url: "postgresql://u@h/d?x=\u{7F}", because: "control character"),
        .init(url: "postgresql://u@h/" + String(repeating: "a", count: 2100), because: "longer than 2048 bytes"),
        .init(url: "postgresql://u@h/d?" + Array(repeating: "a=b", count: 600).joined(separator: "&"), because: "longer than 2048"),
    ]

    @Test("refused URLs, each saying why", arguments: refused)
    func refuses(_ example: Refused) {
        #expect(PostgresURL.isPostgres(example.url))
        let error = #expect(throws: CleanerError.self) { try PostgresURL(example.url) }
        #expect(error?.code == .configuration)
        #expect(error?.message.contains(example.because) == true, "\(error?.message ?? "no error")")
        #expect(error?.message.hasPrefix("database: the PostgreSQL URL ") == true)
    }

    /// A password is refused wherever it stands, and no part of it is ever repeated: not in
    /// the message, whichever piece of the URL the parser stopped at.
    @Test("a password is refused and never repeated", arguments: [
        "postgresql://u:hunter2secret@h/d",
        "postgresql://u:@h/d",
        "postgresql://:hunter2secret@h/d",
        "postgres://u:hunter2secret@h:5432/d?sslmode=disable",
        "postgresql://u:hunter2/secret@h/d",
        "postgresql://u:hunter2?secret@h/d",
        "postgresql://u:hunter2#secret@h/d",
        "postgresql://u:hunter2@secret@h/d",
        "postgresql://u:hunter2secret@[::1/d",
        "postgresql://u:hunter2secret@",
        "postgresql://u@h/d?password=hunter2secret",
        "postgresql://u@h/d?sslmode=disable&password=hunter2secret",
        "postgresql://u@h/d?password",
        "postgresql://u@h/d?pass%77ord=hunter2secret",
    ])
    func password(_ value: String) {
        let error = #expect(throws: CleanerError.self) { try PostgresURL(value) }
        let message = error?.message ?? ""
        #expect(!message.contains("hunter"), "\(message)")
        #expect(!message.contains("secret"), "\(message)")
        if value.contains("?pass") || value.contains("&pass") || value.contains(":hunter") || value.contains("u:@") {
            #expect(message.contains("PGPASSWORD"), "\(message)")
        }
    }

    /// No message quotes the host, the user or the database (any of them could be a
    /// mistyped secret): only a parameter's name that looks like one.
    @Test("messages never quote the input's names", arguments: [
        "postgresql://hunter2secret@h:bad/d", "postgresql://u@hunter2secret:99999/d", "postgresql://u@h/hunter2secret/x",
        "postgresql://u@h/d?hunter2secret=1", "postgresql://u@h/d?sslmode=hunter2secret", "postgresql://u@hunter2secret,x/d",
        "postgresql://u@[hunter2secret]/d", "postgresql://hunter2secret%zz@h/d",
    ])
    func quotesNothing(_ value: String) {
        let error = #expect(throws: CleanerError.self) { try PostgresURL(value) }
        #expect(error?.message.contains("hunter") == false, "\(error?.message ?? "")")
    }
}

@Suite("PostgreSQL URL: mistyped")
struct PostgresURLMistypedTests {
    @Test("a URL mistyped is refused at load, without showing it", arguments: [
        "postgres:/u:secret@h/db", "postgresql//u:secret@h/db", "POSTGRES:u:secret@h",
    ])
    func mistyped(value: String) throws {
        #expect(PostgresURL.looksMistyped(value))
        let json = #"{"region": "r-1", "project_id": "p", "database": "\#(value)"}"#
        let error = try #require(throws: CleanerError.self) { try ConfigurationLoader.parse(Array(json.utf8), source: "test.json") }
        #expect(!error.message.contains("secret"))
        #expect(error.message.contains("neither a path nor a postgresql:// URL"))
    }

    @Test("paths and URLs are not mistaken for mistyped URLs", arguments: [
        "/var/lib/export-task-cleaner/queue.sqlite3", "postgresql://u@h/db", "postgres://u@h/db", "postgres-queue.sqlite3",
    ])
    func notMistyped(value: String) {
        #expect(!PostgresURL.looksMistyped(value))
    }
}
