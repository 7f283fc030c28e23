"""Bad input gets a clear Status with the right code, loses nothing, and the server lives on."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetrio.apiserver import MAX_BODY_BYTES, RunningApiServer

CM = "/api/v1/namespaces/default/configmaps"


def assert_status(response: httpx.Response, code: int, reason: str, *needles: str) -> None:
    assert response.status_code == code, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == code and body["reason"] == reason, body
    for needle in needles:
        assert needle in body["message"], body["message"]


async def test_malformed_json_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post(
        CM, content=b'{"metadata": {', headers={"content-type": "application/json"}
    )
    assert_status(response, 400, "BadRequest", "not valid application/json")


async def test_non_object_body_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post(CM, content=b"[1,2]", headers={"content-type": "application/json"})
    assert_status(response, 400, "BadRequest", "must be an object")


async def test_wrong_type_names_the_field(http: httpx.AsyncClient) -> None:
    body = {"metadata": {"name": "x"}, "data": {"a": 1}}
    assert_status(await http.post(CM, json=body), 400, "BadRequest", "data")
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": "three", "selector": {}, "template": {}},
    }
    response = await http.post("/apis/apps/v1/namespaces/default/deployments", json=deploy)
    assert_status(response, 400, "BadRequest", "spec.replicas")


async def test_unknown_fields_follow_field_validation(http: httpx.AsyncClient) -> None:
    body = {"metadata": {"name": "u"}, "data": {}, "bogus": 1}
    strict = await http.post(f"{CM}?fieldValidation=Strict", json=body)
    assert_status(strict, 400, "BadRequest", 'unknown field "bogus"')
    assert (await http.get(f"{CM}/u")).status_code == 404  # nothing written
    warned = await http.post(f"{CM}?fieldValidation=Warn", json=body)
    assert warned.status_code == 201
    assert "unknown field" in warned.headers["warning"]
    assert "bogus" not in (await http.get(f"{CM}/u")).json()  # dropped, never stored


async def test_invalid_name_is_422_with_field(http: httpx.AsyncClient) -> None:
    response = await http.post(CM, json={"metadata": {"name": "Not_Valid"}})
    assert_status(response, 422, "Invalid", "metadata.name")
    assert response.json()["details"]["causes"][0]["field"] == "metadata.name"
    missing = await http.post(CM, json={"metadata": {}})
    assert_status(missing, 422, "Invalid", "name or generateName is required")


async def test_kind_mismatch_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post(
        CM, json={"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "x"}}
    )
    assert_status(response, 400, "BadRequest", "Secret")


async def test_oversized_body_is_413(http: httpx.AsyncClient) -> None:
    huge = b'{"metadata":{"name":"big"},"data":{"a":"' + b"x" * (MAX_BODY_BYTES + 10) + b'"}}'
    response = await http.post(CM, content=huge, headers={"content-type": "application/json"})
    assert_status(response, 413, "RequestEntityTooLarge", f"limit is {MAX_BODY_BYTES}")
    assert (await http.get(f"{CM}/big")).status_code == 404


async def test_deeply_nested_body_is_400(http: httpx.AsyncClient) -> None:
    nested = b'{"metadata":{"name":"n"},"data":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001
    response = await http.post(CM, content=nested, headers={"content-type": "application/json"})
    assert response.status_code == 400
    yaml_nested = b"a: " + b"[" * 50_000 + b"]" * 50_000
    response = await http.patch(
        f"{CM}/n?fieldManager=x",
        content=yaml_nested,
        headers={"content-type": "application/apply-patch+yaml"},
    )
    assert response.status_code == 400


async def test_unsupported_media_type_is_415(http: httpx.AsyncClient) -> None:
    response = await http.post(CM, content=b"x", headers={"content-type": "text/csv"})
    assert_status(response, 415, "UnsupportedMediaType")


async def test_bad_query_parameters_are_400(http: httpx.AsyncClient) -> None:
    assert_status(await http.get(CM, params={"limit": "many"}), 400, "BadRequest", "limit")
    assert_status(
        await http.get(CM, params={"continue": "garbage!"}), 400, "BadRequest", "continue"
    )
    assert_status(await http.get(CM, params={"resourceVersion": "abc"}), 400, "BadRequest")


async def test_unknown_paths_and_methods(http: httpx.AsyncClient) -> None:
    assert_status(await http.get("/api/v1/widgets"), 404, "NotFound")
    assert_status(await http.get("/apis/nope/v1/things"), 404, "NotFound")
    assert_status(await http.put(CM, json={}), 405, "MethodNotAllowed")


async def test_malformed_http_keeps_server_alive(
    apiserver: RunningApiServer, http: httpx.AsyncClient
) -> None:
    host, port = apiserver.url.removeprefix("http://").split(":")
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        reply = await stream.receive_some(4096)
        await stream.aclose()
    assert b"400" in reply.split(b"\r\n", 1)[0]
    assert (await http.get("/healthz")).text == "ok"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)

_paths = st.sampled_from(
    [
        CM,
        f"{CM}/fuzz",
        "/apis/apps/v1/namespaces/default/deployments",
        "/apis/apps/v1/namespaces/default/deployments/fuzz",
        "/api/v1/namespaces",
        "/apis/apps/v1/namespaces/default/deployments/fuzz/scale",
        "/api/v1/nodes/fuzz/status",
    ]
)
_content_types = st.sampled_from(
    [
        "application/json",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "application/yaml",
    ]
)
_methods = st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET"])
_queries = st.dictionaries(
    st.sampled_from(
        [
            "labelSelector",
            "fieldSelector",
            "limit",
            "continue",
            "resourceVersion",
            "dryRun",
            "fieldValidation",
            "fieldManager",
            "watch",
            "timeoutSeconds",
        ]
    ),
    st.text(max_size=12),
    max_size=3,
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=_methods,
    path=_paths,
    body=_json_values | st.binary(max_size=64),
    content_type=_content_types,
    query=_queries,
)
def _fuzz_never_5xx(
    method: str, path: str, body: Any, content_type: str, query: dict[str, str]
) -> None:
    """Random bodies and parameters on every verb: always a 2xx/4xx answer, never a 5xx."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    query = {k: v for k, v in query.items() if k != "watch"} | (
        {"timeoutSeconds": "1"} if "watch" in query else {}
    )
    response = _FUZZ_CLIENT.request(
        method, path, content=raw, params=query, headers={"content-type": content_type}
    )
    assert response.status_code < 500, (method, path, raw[:200], query, response.text)
    if response.status_code >= 400:
        assert response.json()["kind"] == "Status"


_FUZZ_CLIENT: httpx.Client


async def test_fuzz_against_live_server(
    apiserver: RunningApiServer, http: httpx.AsyncClient
) -> None:
    """Run the hypothesis fuzz above in a worker thread against this live server."""
    global _FUZZ_CLIENT
    await http.post(CM, json={"metadata": {"name": "fuzz"}, "data": {"a": "b"}})
    with httpx.Client(base_url=apiserver.url, timeout=10) as client:
        _FUZZ_CLIENT = client
        await trio.to_thread.run_sync(_fuzz_never_5xx)
    # Still serving, and the object the fuzz could not legitimately change is intact.
    assert (await http.get("/healthz")).text == "ok"
