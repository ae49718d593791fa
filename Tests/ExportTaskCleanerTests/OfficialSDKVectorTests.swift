import Foundation
import Testing

@testable import ExportTaskCleaner

/// Known answers from Huawei Cloud's official Python SDK (`huaweicloudsdkcore`): the signer
/// is checked against someone else's implementation, not against itself.
///
/// `Fixtures/sdk-signing-vectors.json` is written by `scripts/sdk-signing-vectors.py` (run by
/// hand in a throwaway venv; the tests need no Python). Each vector holds a request's inputs and
/// what the SDK made of it: the canonical request, the headers it sends and the path and query
/// it sends them with.
@Suite struct OfficialSDKVectorTests {
    struct Fixture: Decodable {
        var sdk: String
        var vectors: [Vector]
    }

    struct Vector: Decodable, Sendable, CustomTestStringConvertible {
        struct Input: Decodable, Sendable {
            var method: String
            var pathSegments: [String]
            var query: [[String]]
            var headers: [[String]]
            var body: String
            var ak: String
            var sk: String
            var securityToken: String?
            var region: String
            var service: String
            var algorithm: String
            var dateIso8601: String
            var xSdkDate: String
        }

        struct SDKOutput: Decodable, Sendable {
            var uri: String
            var canonicalRequest: String
            var signedHeaders: String
            var signature: String
            var authorization: String
            var headers: [[String]]
        }

        var name: String
        var input: Input
        var sdk: SDKOutput

        var testDescription: String { name }
    }

    /// The fixture, found next to this file (the test target declares no resources).
    static let fixtureURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/sdk-signing-vectors.json")

    static func fixture() throws -> Fixture {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Fixture.self, from: Data(contentsOf: fixtureURL))
    }

    @Test func fixtureHoldsEveryVector() throws {
        let fixture = try Self.fixture()
        #expect(fixture.sdk.hasPrefix("huaweicloudsdkcore "))
        var expected: [String] = []
        for algorithm in ["sdk", "v11"] {
            for suffix in ["", "-instance", "-token", "-instance-token"] { expected.append("\(algorithm)-delete\(suffix)") }
        }
        expected += ["v11-delete-last-second-of-year", "sdk-delete-escaped-segment", "v11-get-query",
                     "sdk-list-export-tasks", "v11-list-export-tasks-marker-instance-token"]
        #expect(fixture.vectors.map(\.name) == expected)
    }

    @Test(arguments: try OfficialSDKVectorTests.fixture().vectors)
    func signerMatchesTheSDK(_ vector: Vector) throws {
        let input = vector.input
        let algorithm = try #require(SigningAlgorithm(rawValue: input.algorithm))
        let date = try Date(input.dateIso8601, strategy: .iso8601)
        let query = try Self.pairs(input.query)
        let signer = RequestSigner(
            algorithm: algorithm,
            accessKey: AccessKey(ak: input.ak, sk: input.sk, securityToken: input.securityToken),
            region: input.region, service: input.service
        )
        let sent = signer.sign(
            method: input.method, pathSegments: input.pathSegments, query: query,
            headers: try Self.pairs(input.headers), body: Array(input.body.utf8), date: date
        )

        #expect(Self.value(of: "Authorization", in: sent) == vector.sdk.authorization)
        #expect(Self.value(of: "X-Sdk-Date", in: sent) == input.xSdkDate)
        #expect(Self.value(of: "X-Security-Token", in: sent) == input.securityToken)

        // The same canonical request, the same headers (names in any case and order), and the
        // path and query sent as the SDK sends them.
        let canonical = RequestSigner.canonicalRequest(
            method: input.method, pathSegments: input.pathSegments, query: query, headers: sent,
            signedHeaders: vector.sdk.signedHeaders.split(separator: ";").map(String.init),
            body: Array(input.body.utf8)
        )
        #expect(canonical == vector.sdk.canonicalRequest)
        #expect(Self.lines(sent) == Self.lines(try Self.pairs(vector.sdk.headers)))
        let wireQuery = PercentEncoding.query(query)
        #expect(PercentEncoding.path(input.pathSegments) + (wireQuery.isEmpty ? "" : "?" + wireQuery) == vector.sdk.uri)
    }

    /// The list request the sweep sends (docs/commands.md, "sweep") has the query and the
    /// path the SDK signed for ListExportTasks, so its signature is the SDK's.
    @Test(arguments: ["sdk-list-export-tasks", "v11-list-export-tasks-marker-instance-token"])
    func listRequestIsTheSDKs(_ name: String) throws {
        let vector = try #require(try Self.fixture().vectors.first { $0.name == name })
        let input = vector.input
        let marker = input.query.first { $0.first == "marker" }?.last
        let request = ListExportTasksRequest(projectID: input.pathSegments[2], limit: 50, marker: marker)
        #expect(request.query.map { [$0.0, $0.1] } == input.query)
        #expect(["v5", "iot", request.projectID, "export-tasks"] == input.pathSegments)
        #expect(PercentEncoding.path(input.pathSegments) + "?" + PercentEncoding.query(request.query) == vector.sdk.uri)
    }

    // MARK: - Helpers

    /// JSON's `[["name", "value"], …]` as pairs.
    private static func pairs(_ arrays: [[String]]) throws -> [(String, String)] {
        try arrays.map {
            try #require($0.count == 2, "not a pair: \($0)")
            return ($0[0], $0[1])
        }
    }

    private static func value(of name: String, in headers: [(String, String)]) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// `name:value` lines, names lower-cased, sorted: a header list without its order and case.
    private static func lines(_ headers: [(String, String)]) -> [String] {
        headers.map { "\($0.0.lowercased()):\($0.1)" }.sorted()
    }
}
