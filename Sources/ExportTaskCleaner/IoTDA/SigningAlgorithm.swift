import FoundationEssentials

/// How a request is signed with an access key: the two algorithms of Huawei Cloud's official
/// SDKs (`core/auth/signer`).
public enum SigningAlgorithm: String, Sendable, CaseIterable {
    /// `SDK-HMAC-SHA256`: HMAC-SHA256 keyed with the secret key itself.
    case sdkHMACSHA256 = "SDK-HMAC-SHA256"
    /// `V11-HMAC-SHA256`: HMAC-SHA256 keyed with a key derived per day, region and service
    /// (HKDF-SHA256), as IoTDA's standard and enterprise editions require.
    case v11HMACSHA256 = "V11-HMAC-SHA256"

    /// What `auth.signing: "auto"` picks for an endpoint host: derived signing exactly when
    /// the SDKs would use it.
    public static func automatic(forHost host: String) -> SigningAlgorithm {
        usesDerivedSigning(host: host) ? .v11HMACSHA256 : .sdkHMACSHA256
    }

    /// Whether the official SDKs sign for `host` with derived keys: exactly when `host` does
    /// not match their regional endpoint pattern, here as a Swift `Regex` (`[0-9]` where the
    /// SDKs write `\d`, which in Swift would match any Unicode digit).
    ///
    /// As in Go's `regexp.MatchString` the match is a prefix match (a port or anything else
    /// may follow), it is case-sensitive, it goes by Unicode scalar, and the `.` before
    /// `(com|cn)` is unescaped, so it stands for any one character but a newline:
    /// `iotda.cn-north-4.myhuaweicloud.com` → false; `abc.st1.iotda-app.cn-north-4.myhuaweicloud.com`,
    /// `127.0.0.1` → true.
    public static func usesDerivedSigning(host: String) -> Bool {
        let regional = #/^[a-z][a-z0-9-]+(\.[a-z]{2,}-[a-z]+-[0-9]{1,2})?\.(my)?(huaweicloud|myhwclouds).(com|cn)/#
        return (try? regional.matchingSemantics(.unicodeScalar).prefixMatch(in: host)) == nil
    }
}
