/// One `DELETE /v5/iot/{project_id}/export-tasks/{export_task_id}` to send.
public struct DeleteRequest: Sendable, Hashable {
    /// The export task to delete, exactly as queued (validated by the caller).
    public var exportTaskID: String
    /// The project in the path and in `X-Project-Id`.
    public var projectID: String
    /// The `Instance-Id` header; `nil` sends none.
    public var instanceID: String?

    public init(exportTaskID: String, projectID: String, instanceID: String? = nil) {
        self.exportTaskID = exportTaskID
        self.projectID = projectID
        self.instanceID = instanceID
    }
}

/// What one delete attempt means for the task.
public enum DeleteClassification: String, Sendable, Hashable, CaseIterable {
    /// 2xx.
    case deleted
    /// 404.
    case notFound
    /// 403.
    case forbidden
    /// Any other 4xx but 401, 408 and 429, and any status outside 2xx/4xx/5xx (1xx, 3xx).
    case rejected
    /// 401: the service refused our credentials; not a task's outcome. Also a request not sent
    /// because the temporary credentials in hand had expired (no status, `not_sent`).
    case authRefused
    /// 408, 429, 5xx, and every failure without a response.
    case retryable

    /// The classification of an HTTP status.
    public init(httpStatus status: Int) {
        switch status {
        case 200..<300: self = .deleted
        case 401: self = .authRefused
        case 403: self = .forbidden
        case 404: self = .notFound
        case 408, 429, 500..<600: self = .retryable
        default: self = .rejected
        }
    }
}

/// The outcome of one delete attempt. Built by an ``IoTDATransport``; never thrown.
public struct DeleteResult: Sendable, Hashable {
    public var classification: DeleteClassification
    public var delivery: Delivery
    /// The response's status; `nil` without a response.
    public var httpStatus: Int?
    /// The response body's `error_code` (or `code`, or IAM's `error.code`).
    public var errorCode: String?
    /// The response body's `error_msg` (or `message`, or IAM's `error.message`); for failures
    /// without a response, a short description such as "connection refused".
    public var errorMessage: String?
    /// The response's `X-Request-Id`.
    public var requestID: String?
    /// The response's `Retry-After`, as a duration from when the response arrived.
    public var retryAfter: Duration?
    /// How long the attempt took, from just before signing to the end of the response (or the failure).
    public var duration: Duration
    /// On a 401: how far the local clock is from the server's, by the response's `Date` header.
    public var clockOffset: ClockOffset?
    /// The status of an answer whose head came but whose body did not (cut off by the request's
    /// deadline, or a connection that broke). The status line is the server's decision, so it is
    /// the outcome (``httpStatus``, with the error body missing); `check --probe` names it as a
    /// server that stalls in the middle of an answer.
    public var unfinishedAnswerStatus: Int?
    /// Which credentials signed the request (``CredentialProvider/Current/generation``): a
    /// refusal of older ones says nothing about the credentials in hand.
    public var credentialsGeneration: Int?

    public init(
        classification: DeleteClassification,
        delivery: Delivery,
        httpStatus: Int? = nil,
        errorCode: String? = nil,
        errorMessage: String? = nil,
        requestID: String? = nil,
        retryAfter: Duration? = nil,
        duration: Duration = .zero
    ) {
        self.classification = classification
        self.delivery = delivery
        self.httpStatus = httpStatus
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.requestID = requestID
        self.retryAfter = retryAfter
        self.duration = duration
    }

    /// A failure without a response: always ``DeleteClassification/retryable``.
    public static func noResponse(delivery: Delivery, message: String, duration: Duration) -> DeleteResult {
        DeleteResult(classification: .retryable, delivery: delivery, errorMessage: message, duration: duration)
    }
}
