import ExportTaskCleaner
import Testing

@Suite("Retry, pacing, adaptive limits and the credential circuit")
struct TrafficTests {
    let start = ContinuousClock.now

    @Test("backoff grows exponentially with full jitter, is capped, and honours Retry-After")
    func backoff() {
        let retry = ExponentialJitterRetry(maxAttempts: 8, baseDelay: .seconds(1), maxDelay: .seconds(300))
        #expect((1...10).map { retry.ceiling(attempts: $0) } ==
                [1, 2, 4, 8, 16, 32, 64, 128, 256, 300].map { Duration.seconds($0) })
        #expect(retry.backoff(attempts: 3, retryAfter: nil, unit: 0.5) == .seconds(2))
        #expect(retry.backoff(attempts: 3, retryAfter: nil, unit: 0) == .zero)
        #expect(retry.backoff(attempts: 3, retryAfter: .seconds(10), unit: 0.5) == .seconds(10))
        #expect(retry.backoff(attempts: 40, retryAfter: nil, unit: 0.999_999) <= .seconds(300))
        #expect(retry.shouldRetry(attempts: 7))
        #expect(!retry.shouldRetry(attempts: 8))
        // A seeded source gives the same jittered schedule every time, within the ceilings.
        let a = SeededRandomSource(seed: 7), b = SeededRandomSource(seed: 7)
        let first = (1...8).map { retry.backoff(attempts: $0, retryAfter: nil, unit: a.nextUnit()) }
        let second = (1...8).map { retry.backoff(attempts: $0, retryAfter: nil, unit: b.nextUnit()) }
        #expect(first == second)
        #expect(zip(first, 1...8).allSatisfy { $0 <= retry.ceiling(attempts: $1) })
        #expect(Set(first).count > 4)
    }

    @Test("the pacer spaces starts so no one-second window holds more than the rate")
    func pacer() {
        var pacer = RequestPacer(rate: 20)
        let slots = (0..<100).map { _ in pacer.reserve(now: start) }
        for (index, slot) in slots.enumerated() {
            let window = slots[index...].prefix { $0 < slot.advanced(by: .seconds(1)) }
            #expect(window.count <= 20)
        }
        #expect(slots[20] - slots[0] >= .milliseconds(1_010))
        // After a quiet spell, the next start is immediate, not a burst of saved-up slots.
        let later = start.advanced(by: .seconds(60))
        let immediate = pacer.reserve(now: later)
        #expect(immediate == later)
        let spaced = pacer.reserve(now: later)
        #expect(spaced > later)
    }

    @Test("429 halves rate and concurrency once per second, recovery is additive and capped")
    func adaptiveLimits() {
        var limits = AdaptiveLimits(maxRate: 100, maxConcurrency: 16)
        let halved = limits.throttled(now: start)
        #expect(halved)
        #expect(limits.rate == 50 && limits.concurrency == 8)
        let halvedAgainTooSoon = limits.throttled(now: start.advanced(by: .milliseconds(500)))
        #expect(!halvedAgainTooSoon)
        let halvedAgain = limits.throttled(now: start.advanced(by: .seconds(1)))
        #expect(halvedAgain)
        #expect(limits.rate == 25 && limits.concurrency == 4)
        let recoveredTooSoon = limits.recover(now: start.advanced(by: .milliseconds(1_500)))
        #expect(!recoveredTooSoon)
        let recovered = limits.recover(now: start.advanced(by: .seconds(2)))
        #expect(recovered)
        #expect(limits.rate == 35 && limits.concurrency == 5)
        let recoveredMore = limits.recover(now: start.advanced(by: .seconds(5)))
        #expect(recoveredMore)
        #expect(limits.rate == 65 && limits.concurrency == 8)
        _ = limits.recover(now: start.advanced(by: .seconds(60)))
        #expect(limits.rate == 100 && limits.concurrency == 16)
        #expect(!limits.isReduced)
        var floor = AdaptiveLimits(maxRate: 2, maxConcurrency: 1)
        for second in 0..<5 { _ = floor.throttled(now: start.advanced(by: .seconds(second))) }
        #expect(floor.rate == 1 && floor.concurrency == 1)
    }

    @Test("recovery adds a tenth of the configured rate and one to the concurrency a calm second, stops at the configured values; a 429 restarts the count")
    func adaptiveRecoveryIsCapped() {
        // The concurrency would overshoot its configured 3 while the rate still climbs: capped.
        var limits = AdaptiveLimits(maxRate: 25, maxConcurrency: 3)
        _ = limits.throttled(now: start)
        #expect(limits.rate == 12.5 && limits.concurrency == 1)
        var seen: [String] = []
        for second in 1...6 {
            _ = limits.recover(now: start.advanced(by: .seconds(second)))
            seen.append("\(limits.rate)/\(limits.concurrency)")
        }
        #expect(seen == ["15.0/2", "17.5/3", "20.0/3", "22.5/3", "25.0/3", "25.0/3"])
        #expect(!limits.isReduced)
        let nothingToRecover = limits.recover(now: start.advanced(by: .seconds(60)))
        #expect(!nothingToRecover)
        // A 429 while recovering halves again, and the calm seconds count from it.
        _ = limits.throttled(now: start.advanced(by: .seconds(70)))
        _ = limits.recover(now: start.advanced(by: .seconds(71)))
        #expect(limits.rate == 15 && limits.concurrency == 2)
        let halved = limits.throttled(now: start.advanced(by: .milliseconds(71_500)))
        #expect(halved)
        #expect(limits.rate == 7.5 && limits.concurrency == 1)
        let tooSoon = limits.recover(now: start.advanced(by: .milliseconds(72_400)))
        #expect(!tooSoon)
        let calm = limits.recover(now: start.advanced(by: .milliseconds(72_500)))
        #expect(calm)
        #expect(limits.rate == 10 && limits.concurrency == 2)
    }

    @Test("the credential circuit: one request until verified, pauses doubling to 15 minutes, one probe")
    func credentialCircuit() {
        var circuit = CredentialCircuit()
        let firstAllowance = circuit.allowance(now: start)
        #expect(firstAllowance == 1)
        let firstPause = circuit.refused(now: start)
        #expect(firstPause == .seconds(60))
        #expect(circuit.refused(now: start) == nil)  // a late answer of a request already in flight
        let duringPause = circuit.allowance(now: start.advanced(by: .seconds(59)))
        #expect(duringPause == 0)
        let afterPause = circuit.allowance(now: start.advanced(by: .seconds(60)))
        #expect(afterPause == 1)
        #expect(circuit.state == .probing)
        var pauses: [Duration] = []
        var now = start.advanced(by: .seconds(60))
        for _ in 0..<6 {
            let pause = circuit.refused(now: now)!
            pauses.append(pause)
            now = now.advanced(by: pause)
            let probeAllowance = circuit.allowance(now: now)
            #expect(probeAllowance == 1)
        }
        #expect(pauses == [120, 240, 480, 900, 900, 900].map { Duration.seconds($0) })
        circuit.accepted()
        let verifiedAllowance = circuit.allowance(now: now)
        #expect(verifiedAllowance == nil)
        let pauseAfterVerified = circuit.refused(now: now)
        #expect(pauseAfterVerified == .seconds(60))
    }
}
