/// How requests authenticate (`auth.method` in the configuration).
public enum AuthMethod: String, Sendable {
    /// Signed with an access key (AK/SK, optionally with a security token).
    case aksk
    /// An IAM token in `X-Auth-Token`; nothing is signed.
    case token
    /// Temporary access keys of the ECS instance's IAM agency, from the metadata service;
    /// nothing on disk (docs/credentials.md, "Authentication and credentials").
    case metadata
}

/// An access key: the AK names it, the SK signs with it; temporary keys also carry a security
/// token, sent (and signed) as `X-Security-Token`.
///
/// Every textual form (`description`, `debugDescription`, `dump`, string interpolation) shows
/// at most the first four characters of the AK and never the SK or the token:
/// `AccessKey(ak: QTWA…, sk: <redacted>)`.
public struct AccessKey: Sendable, Equatable {
    public var ak: String
    public var sk: String
    public var securityToken: String?

    public init(ak: String, sk: String, securityToken: String? = nil) {
        self.ak = ak
        self.sk = sk
        self.securityToken = securityToken
    }

    /// Whether this is a temporary key (one with a security token).
    public var isTemporary: Bool { securityToken?.isEmpty == false }

    /// The first four characters of the AK, then `…`: enough to tell keys apart in a log.
    public var abbreviatedAK: String {
        ak.count <= 4 ? ak : String(ak.prefix(4)) + "…"
    }
}

extension AccessKey: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        isTemporary
            ? "AccessKey(ak: \(abbreviatedAK), sk: <redacted>, securityToken: <redacted>)"
            : "AccessKey(ak: \(abbreviatedAK), sk: <redacted>)"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        var children: [(label: String?, value: Any)] = [("ak", abbreviatedAK), ("sk", "<redacted>")]
        if isTemporary { children.append(("securityToken", "<redacted>")) }
        return Mirror(self, children: children, displayStyle: .struct)
    }
}

/// What authenticates requests: an access key, or an IAM token. Redacted in every textual
/// form, like ``AccessKey``.
public enum Credentials: Sendable, Equatable {
    case accessKey(AccessKey)
    case token(String)

    /// The method these credentials serve.
    public var method: AuthMethod {
        switch self {
        case .accessKey: .aksk
        case .token: .token
        }
    }
}

extension Credentials: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        switch self {
        case .accessKey(let key): "Credentials.accessKey(\(key))"
        case .token: "Credentials.token(<redacted>)"
        }
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        switch self {
        case .accessKey(let key): Mirror(self, children: [("accessKey", key)], displayStyle: .enum)
        case .token: Mirror(self, children: [("token", "<redacted>")], displayStyle: .enum)
        }
    }
}
