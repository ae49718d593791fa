import Crypto
import Synchronization
import FoundationEssentials

/// An HMAC-SHA256 key set up once: the HMAC state after absorbing the padded key is kept, so
/// each message costs only its own hashing (no `SymmetricKey` and key schedule per request).
package struct HMACKey: Sendable {
    private let keyed: HMAC<SHA256>

    package init(_ key: [UInt8]) {
        keyed = HMAC<SHA256>(key: SymmetricKey(data: key))
    }

    package func authenticationCode(for message: [UInt8]) -> HMAC<SHA256>.MAC {
        var mac = keyed
        mac.update(data: message)
        return mac.finalize()
    }
}

/// Remembers the last key made and what it was made from (`Source`), so that a key is made
/// once and reused while its source stays the same: a signer's derived key changes once a day.
package final class SigningKeyCache<Source: Equatable & Sendable>: Sendable {
    private let last = Mutex<(source: Source, key: HMACKey)?>(nil)

    package init() {}

    package func key(for source: Source, make: (Source) -> HMACKey) -> HMACKey {
        if let cached = last.withLock({ $0?.source == source ? $0?.key : nil }) { return cached }
        let key = make(source)
        last.withLock { $0 = (source, key) }
        return key
    }
}
