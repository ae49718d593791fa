#!/usr/bin/env python3
"""Known-answer vectors for the request signer, from Huawei Cloud's official Python SDK.

Run it in a throwaway virtual environment, never in CI (the Swift tests only read its output):

    python3 -m venv /tmp/sdkvenv && /tmp/sdkvenv/bin/pip install huaweicloudsdkcore
    /tmp/sdkvenv/bin/python scripts/sdk-signing-vectors.py \
        > Tests/ExportTaskCleanerTests/Fixtures/sdk-signing-vectors.json

It prints JSON to stdout (sorted keys and a fixed layout, so the output is stable). Last generated with
huaweicloudsdkcore 3.1.219 (the version used is written into the output as "sdk").

Each request is signed the way the SDK's own client does: the path parameters are put into the
path template with `quote(value, safe='')` (Client._parse_path_params), then
BasicCredentials.sign_request adds X-Project-Id and X-Security-Token and signs with `Signer`
(SDK-HMAC-SHA256) or `DerivationAKSKSigner` (V11-HMAC-SHA256, service "iotdm" as IoTDAClient
sets it), chosen by the SDK's default derived-auth predicate on the host. The time is fixed by
passing X-Sdk-Date, which the signers read instead of the clock. The canonical request and the
string to sign are captured by wrapping the signers' own methods. All keys are made up.
"""
import json
from importlib.metadata import version
from urllib.parse import quote

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import DerivationAKSKSigner, Signer

AK = "QTWAOYTTINDUT2QVKYUC"
SK = "TestOnlyNotARealSecretKey0123456789abcde"  # 40 characters, like a real SK
TOKEN = "FAKE-security-token_0123456789+/abcdefABCDEF=="
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
INSTANCE = "2b1f7c9e-3d4a-4b5c-8d6e-7f8091a2b3c4"
REGION = "cn-north-4"
SERVICE = "iotdm"  # IoTDAClient.new_builder: _with_derived_auth_service_name("iotdm")
HOSTS = {  # the default predicate signs with derived keys exactly for non-regional hosts
    "SDK-HMAC-SHA256": "iotda.cn-north-4.myhuaweicloud.com",
    "V11-HMAC-SHA256": "a1b2c3d4e5.st1.iotda-app.cn-north-4.myhuaweicloud.com",
}
DELETE_PATH = "/v5/iot/{project_id}/export-tasks/{export_task_id}"

# What the signers compute, captured as they compute it.
captured = {}


def capture(cls, method, key):
    original = getattr(cls, method)

    def wrapper(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        captured[key] = result
        return result

    setattr(cls, method, wrapper)


capture(Signer, "_process_canonical_request", "canonical_request")
capture(Signer, "_process_string_to_sign", "string_to_sign")
capture(DerivationAKSKSigner, "_process_string_to_sign", "string_to_sign")


def vector(name, algorithm, date, task_id=None, instance=False, token=False,
           method="DELETE", template=DELETE_PATH, query=()):
    """Signs one request with the SDK; returns its inputs and the SDK's outputs."""
    iso, sdk_date = date
    host = HOSTS[algorithm]
    path_params = {"project_id": PROJECT}
    if task_id is not None:
        path_params["export_task_id"] = task_id
    resource_path = template
    for key, value in path_params.items():
        resource_path = resource_path.replace("{%s}" % key, quote(value, safe=""))
    segments = [s for s in template.split("/") if s]
    segments = [path_params.get(s[1:-1], s) if s.startswith("{") else s for s in segments]

    # The headers the caller signs, in order; the SDK also sets X-Project-Id itself.
    headers = [("Host", host), ("X-Project-Id", PROJECT)]
    if instance:
        headers.append(("Instance-Id", INSTANCE))
    request = SdkRequest(method=method, schema="https", host=host, resource_path=resource_path,
                         query_params=list(query), header_params=dict(headers + [("X-Sdk-Date", sdk_date)]),
                         body=b"")
    credentials = BasicCredentials(AK, SK, PROJECT)
    if token:
        credentials.with_security_token(TOKEN)
    credentials.with_derived_predicate(BasicCredentials.get_default_derived_predicate())
    credentials._process_derived_auth_params(SERVICE, REGION)
    captured.clear()
    signed = credentials.sign_request(request)

    authorization = signed.header_params["Authorization"]
    if not authorization.startswith(algorithm + " "):
        raise SystemExit("%s: the SDK signed with %s" % (name, authorization.split(" ")[0]))
    signed_headers = authorization.split("SignedHeaders=")[1].split(",")[0]
    return {
        "name": name,
        "input": {
            "method": method,
            "path_segments": segments,
            "query": [list(pair) for pair in query],
            "headers": [list(pair) for pair in headers],
            "body": "",
            "ak": AK,
            "sk": SK,
            "security_token": TOKEN if token else None,
            "region": REGION,
            "service": SERVICE,
            "algorithm": algorithm,
            "date_iso8601": iso,
            "x_sdk_date": sdk_date,
        },
        "sdk": {
            "uri": signed.uri,
            "canonical_request": captured["canonical_request"],
            "string_to_sign": captured["string_to_sign"],
            "signed_headers": signed_headers,
            "signature": authorization.rsplit("Signature=", 1)[1],
            "authorization": authorization,
            "headers": [[k, v] for k, v in signed.header_params.items()],
        },
    }


def main():
    day = ("2024-03-09T08:07:06Z", "20240309T080706Z")
    midnight = ("2024-12-31T23:59:59Z", "20241231T235959Z")
    vectors = []
    for algorithm, short in (("SDK-HMAC-SHA256", "sdk"), ("V11-HMAC-SHA256", "v11")):
        for instance, token in ((False, False), (True, False), (False, True), (True, True)):
            name = "%s-delete%s%s" % (short, "-instance" if instance else "", "-token" if token else "")
            vectors.append(vector(name, algorithm, day, "task_0001-abc_DEF-9", instance, token))
    # The derived key's scope is the day of X-Sdk-Date (UTC), here the last second of a year.
    vectors.append(vector("v11-delete-last-second-of-year", "V11-HMAC-SHA256", midnight,
                          "66f1a2b3c4d5e6f7a8b9c0d1_export-task-2", instance=True))
    # Not a valid export task ID: pins the escaping of a path segment.
    vectors.append(vector("sdk-delete-escaped-segment", "SDK-HMAC-SHA256", day,
                          "a b~c*d(e)+f'g!h:é%", instance=True))
    # A GET with a query, for later list requests: keys and values sorted, a key repeated.
    vectors.append(vector("v11-get-query", "V11-HMAC-SHA256", day, instance=True, token=True,
                          method="GET", template="/v5/iot/{project_id}/export-tasks",
                          query=(("marker", "a b"), ("limit", "10"), ("app_id", "app_1~*"),
                                 ("limit", "5"), ("name", "é/&="))))
    # ListExportTasks as the cleaner sends it (docs/commands.md, "sweep"): the first page, and a
    # later one after a marker, with the query in the order the SDK's list_export_tasks adds it.
    list_path = "/v5/iot/{project_id}/export-tasks"
    vectors.append(vector("sdk-list-export-tasks", "SDK-HMAC-SHA256", day, method="GET", template=list_path,
                          query=(("limit", "50"),)))
    vectors.append(vector("v11-list-export-tasks-marker-instance-token", "V11-HMAC-SHA256", day, instance=True,
                          token=True, method="GET", template=list_path,
                          query=(("limit", "50"), ("marker", "66f1a2b3c4d5e6f7a8b9c0d1"))))
    document = {
        "generator": "scripts/sdk-signing-vectors.py",
        "sdk": "huaweicloudsdkcore %s" % version("huaweicloudsdkcore"),
        "vectors": vectors,
    }
    print(dump(document))


def dump(value, level=0):
    """JSON with sorted keys, indented by object; lists without objects on one line."""
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, dict):
        items = [inner + json.dumps(k) + ": " + dump(value[k], level + 1) for k in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return "[\n" + ",\n".join(inner + dump(item, level + 1) for item in value) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False)


if __name__ == "__main__":
    main()
