import Logging
import NIOHTTP1

extension IoTDAClient: ExportTaskLister {
    /// Lists one page: `GET /v5/iot/{project_id}/export-tasks?limit=…&marker=…`, signed as a
    /// delete is (the query is part of the canonical request), with `Instance-Id` when given.
    /// A 2xx answer's body is read up to ``ExportTaskPageParser/maximumBodyBytes`` and parsed
    /// strictly; a longer one is refused whole (docs/commands.md, "sweep").
    public func list(_ request: ListExportTasksRequest) async -> ListResult {
        let sent = await send(
            method: .GET, segments: ["v5", "iot", request.projectID, "export-tasks"], query: request.query,
            projectID: request.projectID, instanceID: request.instanceID,
            maxBodyBytes: ExportTaskPageParser.maximumBodyBytes)
        switch sent {
        case .failed(var result):
            // A list's 2xx whose body did not finish is no page: tried again, as without an answer.
            if let status = result.httpStatus, (200..<300).contains(status) { result.classification = .retryable }
            return ListResult(response: result)
        case .answered(let result, let response):
            logger.trace("list answered", metadata: [
                "http_status": "\(response.status)", "request_id": "\(result.requestID ?? "")",
                "body_bytes": "\(response.body.count)",
            ])
            guard (200..<300).contains(response.status) else { return ListResult(response: result) }
            guard !response.bodyTruncated else {
                return ListResult(response: result, problem:
                    "the answer's body is longer than \(ExportTaskPageParser.maximumBodyBytes) bytes")
            }
            do {
                return ListResult(response: result, page: try ExportTaskPageParser.parse(response.body, limit: request.limit))
            } catch {
                return ListResult(response: result, problem: error.reason)
            }
        }
    }
}
