/// Sends one delete and reports what happened.
///
/// ``IoTDAClient`` is the real one; tests and the scheduler's unit tests substitute their own.
/// Implementations never throw: every failure becomes a ``DeleteResult`` (without a response:
/// ``DeleteClassification/retryable`` with ``Delivery/unknown`` or ``Delivery/notSent``). When the
/// calling task is cancelled, the request is abandoned and reported the same way.
public protocol IoTDATransport: Sendable {
    func delete(_ request: DeleteRequest) async -> DeleteResult
}
