import Crypto
import Synchronization
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
    /// not match their regional endpoint pattern
    /// `^[a-z][a-z0-9-]+(\.[a-z]{2,}-[a-z]+-\d{1,2})?\.(my)?(huaweicloud|myhwclouds).(com|cn)`.
    ///
    /// As in Go's `regexp.MatchString` the match is a prefix match (a port or anything else
    /// may follow), it is case-sensitive, and the `.` before `(com|cn)` is unescaped, so it
    /// stands for any one character. Hand-written, as it runs for every client set up:
    /// `iotda.cn-north-4.myhuaweicloud.com` → false; `abc.st1.iotda-app.cn-north-4.myhuaweicloud.com`,
    /// `127.0.0.1` → true.
    public static func usesDerivedSigning(host: String) -> Bool {
        !RegionalEndpointPattern.matches(Array(host.unicodeScalars))
    }
}

// MARK: - The SDKs' regional endpoint pattern

/// A hand-written matcher for
/// `^[a-z][a-z0-9-]+(\.[a-z]{2,}-[a-z]+-\d{1,2})?\.(my)?(huaweicloud|myhwclouds).(com|cn)`
/// with Go's `MatchString` semantics (prefix match, `.` is any character but a newline).
///
/// No backtracking is needed inside the character-class runs: each run is followed by a
/// character outside its class (`.` or `-`), so only the maximal run can succeed.
private enum RegionalEndpointPattern {
    static func matches(_ s: [Unicode.Scalar]) -> Bool {
        // ^[a-z][a-z0-9-]+
        guard let first = s.first, isLower(first) else { return false }
        let labelEnd = run(s, from: 1, while: { isLower($0) || isDigit($0) || $0 == "-" })
        guard labelEnd >= 2 else { return false }
        // (\.[a-z]{2,}-[a-z]+-\d{1,2})? then the tail: try with the group, then without.
        if let afterRegion = regionGroupEnd(s, from: labelEnd), tailMatches(s, from: afterRegion) {
            return true
        }
        return tailMatches(s, from: labelEnd)
    }

    /// `\.[a-z]{2,}-[a-z]+-\d{1,2}` starting at `i`; where it ends, or nil.
    private static func regionGroupEnd(_ s: [Unicode.Scalar], from i: Int) -> Int? {
        guard i < s.count, s[i] == "." else { return nil }
        let lettersEnd = run(s, from: i + 1, while: isLower)
        guard lettersEnd - (i + 1) >= 2, lettersEnd < s.count, s[lettersEnd] == "-" else { return nil }
        let secondEnd = run(s, from: lettersEnd + 1, while: isLower)
        guard secondEnd > lettersEnd + 1, secondEnd < s.count, s[secondEnd] == "-" else { return nil }
        let digitsEnd = run(s, from: secondEnd + 1, while: isDigit)
        let digitCount = digitsEnd - (secondEnd + 1)
        // \d{1,2} must be followed by `\.`, which no digit matches: a longer run cannot succeed.
        guard (1...2).contains(digitCount) else { return nil }
        return digitsEnd
    }

    /// `\.(my)?(huaweicloud|myhwclouds).(com|cn)` starting at `i`.
    private static func tailMatches(_ s: [Unicode.Scalar], from i: Int) -> Bool {
        guard i < s.count, s[i] == "." else { return false }
        for brand in ["huaweicloud", "myhuaweicloud", "myhwclouds", "mymyhwclouds"] {
            guard let afterBrand = literal(brand, in: s, at: i + 1),
                  afterBrand < s.count, s[afterBrand] != "\n"
            else { continue }
            if literal("com", in: s, at: afterBrand + 1) != nil || literal("cn", in: s, at: afterBrand + 1) != nil {
                return true
            }
        }
        return false
    }

    private static func literal(_ text: String, in s: [Unicode.Scalar], at i: Int) -> Int? {
        var index = i
        for scalar in text.unicodeScalars {
            guard index < s.count, s[index] == scalar else { return nil }
            index += 1
        }
        return index
    }

    private static func run(_ s: [Unicode.Scalar], from i: Int, while predicate: (Unicode.Scalar) -> Bool) -> Int {
        var index = i
        while index < s.count, predicate(s[index]) { index += 1 }
        return index
    }

    private static func isLower(_ c: Unicode.Scalar) -> Bool { c >= "a" && c <= "z" }
    private static func isDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }
}
