/// The PostgreSQL store's password (issue 22; docs/credentials.md, "The database password"):
/// never part of the URL, which is logged and shown by `status` and `check` as it is.
///
/// Sources, first found wins, in the order of ``CredentialsLoader``'s for the keys and for
/// the same reason: the more deliberate a source, the earlier.
///
/// 1. **systemd's credential** `database_password` (`LoadCredential=database_password:…`):
///    the file `$CREDENTIALS_DIRECTORY/database_password`. A directory without it is passed
///    over (the unit may hand over the keys alone).
/// 2. **`auth.credentials_file`**'s `database_password` key, when a file is configured and
///    has the key; the file is held to the same rules as for the keys (mode, owner, folders),
///    and a configured file that is missing or refused is an error, not passed over.
/// 3. **`PGPASSWORD`**, libpq's variable, so that `psql` and the service read the same one; an
///    empty one counts as unset, as libpq counts it. Last: an environment is inherited, and
///    an operator's shell may hold one for another database.
/// 4. **None**: no password is sent, for a server that asks for none (`trust`); a server that
///    asks for one then refuses the connection, and `check` says so.
///
/// As with the keys, surrounding white space is removed (a file's trailing newline
/// included), so a password cannot begin or end with a space; an empty value, one longer
/// than ``maximumBytes``, one that is not UTF-8 or that holds a control character (NUL, a
/// line break) is refused. No message, log line or textual form of this value holds the
/// password: they name the source.
public struct PostgresPassword: Sendable, Equatable {
    /// Where the password came from, as `check` and the log name it.
    public enum Source: Sendable, Equatable, CustomStringConvertible {
        case systemdCredential
        case credentialsFile(path: String)
        case environment
        case none

        public var description: String {
            switch self {
            case .systemdCredential:
                "the systemd credential \(PostgresPassword.credentialName) ($\(CredentialsLoader.directoryVariable))"
            case .credentialsFile(let path):
                "\(PostgresPassword.credentialName) in auth.credentials_file (\(TextFormat.printable(path)))"
            case .environment:
                PostgresPassword.environmentVariable
            case .none:
                "none (no password is sent)"
            }
        }
    }

    /// The password, or nil for none.
    public let password: String?
    public let source: Source

    public init(password: String?, source: Source) {
        self.password = password
        self.source = source
    }

    /// The name of the systemd credential and of the credentials file's key.
    public static let credentialName = "database_password"
    /// libpq's variable.
    public static let environmentVariable = "PGPASSWORD"
    /// Longer is refused: a password is not a file. PostgreSQL's own limit is larger (about
    /// 1 GB in a protocol message); 1024 bytes leaves room for any generated password.
    public static let maximumBytes = 1024

    /// Finds the password; see ``PostgresPassword`` for the sources and their order. Throws a
    /// ``CleanerError`` (`configuration`) naming the source at fault, never the password.
    public static func resolve(environment: [String: String], credentialsFile: String?) throws -> PostgresPassword {
        if let directory = environment[CredentialsLoader.directoryVariable], !directory.isEmpty {
            let path = (directory.hasSuffix("/") ? directory : directory + "/") + credentialName
            let place = "the systemd credential \(credentialName) (\(TextFormat.printable(path)))"
            if let bytes = try CredentialsLoader.readFile(path) {
                return PostgresPassword(password: try checked(bytes, place), source: .systemdCredential)
            }
        }
        if let path = credentialsFile, !path.isEmpty, let value = try CredentialsLoader.databasePassword(credentialsFile: path) {
            let place = "auth.credentials_file: \(TextFormat.printable(path)): the value of \(credentialName)"
            return PostgresPassword(password: try checked(Array(value.utf8), place), source: .credentialsFile(path: path))
        }
        if let value = environment[environmentVariable], !value.isEmpty {
            return PostgresPassword(password: try checked(Array(value.utf8), environmentVariable), source: .environment)
        }
        return PostgresPassword(password: nil, source: .none)
    }

    /// The loader's rules for any credential (UTF-8, trimmed, not empty, no control
    /// character), and the size bound: on the raw bytes first, so that nothing much longer is
    /// decoded at all (a trailing newline and the white space trimmed may add a few), then on
    /// what is sent.
    private static func checked(_ bytes: [UInt8], _ place: String) throws -> String {
        let tooLong = CleanerError.configuration("\(place) is longer than \(maximumBytes) bytes")
        guard bytes.count <= maximumBytes + 64 else { throw tooLong }
        let value = try CredentialsLoader.credentialValue(bytes, describedAs: place)
        guard value.utf8.count <= maximumBytes else { throw tooLong }
        return value
    }
}

extension PostgresPassword: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// `<redacted> from PGPASSWORD`: the source, never the password.
    public var description: String {
        password == nil ? "no password" : "<redacted> from \(source)"
    }

    public var debugDescription: String { "PostgresPassword(\(description))" }

    public var customMirror: Mirror {
        Mirror(self, children: [("password", password == nil ? "nil" : "<redacted>"), ("source", source.description)],
               displayStyle: .struct)
    }
}
