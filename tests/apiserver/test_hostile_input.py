"""Hostile bodies and parameters (issue 17's probes): refused with a clear Status, nothing
stored, and the event loop keeps answering while they are handled."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml
from kubernetes import client

from kubetrio.apiserver import MAX_BODY_BYTES, RunningApiServer, _limits, _managed, _validation
from tests.apiserver.test_bad_input import assert_status
from tests.apiserver.test_kubectl import kubectl_binary
from tests.apiserver.test_python_client import api_client
from tests.kit.manifests import crd

CM = "/api/v1/namespaces/default/configmaps"
SECRETS = "/api/v1/namespaces/default/secrets"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
YAML = {"content-type": "application/yaml"}
APPLY = {"content-type": "application/apply-patch+yaml"}


def laughs(levels: int, fanout: int = 9) -> bytes:
    """A "billion laughs" document: each level lists the previous one ``fanout`` times."""
    lines = ["apiVersion: example.com/v1", "kind: Widget", "metadata: {name: bomb}"]
    lines.append(f"l0: &l0 [{', '.join(['lol'] * fanout)}]")
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * fanout)}]")
    return ("\n".join(lines) + "\n").encode()


def nested(depth: int) -> Any:
    """``depth`` objects, one inside the other."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def yaml_configmap(name: str, keys: int) -> bytes:
    """A ConfigMap of ``keys`` 80-byte values as block YAML (2.9 MiB at 30 000 keys)."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", f"  name: {name}", "data:"]
    lines += [f"  key-{i:06d}: " + "v" * 80 for i in range(keys)]
    return ("\n".join(lines) + "\n").encode()


async def serve_widgets(http: httpx.AsyncClient) -> None:
    """A CRD whose objects keep any field (x-kubernetes-preserve-unknown-fields)."""
    response = await http.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        json=crd("example.com", "widgets", "Widget"),
    )
    assert response.status_code == 201, response.text
    with trio.fail_after(10):
        while (await http.get(WIDGETS)).status_code != 200:
            await trio.sleep(0.05)


# --- YAML aliases and nesting ---------------------------------------------------------------


def test_alias_expansion_is_bounded_as_go_yaml_bounds_it() -> None:
    # go-yaml decodes 9^3 laughs (99% of decodes from aliases, under 1000 decodes in all is
    # allowed) and refuses 9^4 and more, before anything is expanded.
    small = _limits.load_yaml(laughs(2), max_json_bytes=1 << 20)
    assert len(small["l2"]) == 9 and small["l2"][8] == small["l1"]
    with pytest.raises(yaml.YAMLError, match="yaml: document contains excessive aliasing"):
        _limits.load_yaml(laughs(4), max_json_bytes=1 << 20)
    with pytest.raises(yaml.YAMLError, match="excessive aliasing"):
        _limits.load_yaml(laughs(9), max_json_bytes=1 << 30)


def test_an_anchor_that_holds_itself_is_refused() -> None:
    with pytest.raises(yaml.YAMLError, match="anchor 'x' value contains itself"):
        _limits.load_yaml(b"a: &x {b: *x}\n", max_json_bytes=1 << 20)


async def test_alias_bomb_to_a_crd_is_400_and_nothing_stored(http: httpx.AsyncClient) -> None:
    await serve_widgets(http)
    bomb = laughs(8)
    assert len(bomb) < 600  # the probe sent 443 bytes that expanded to a 173 MB object
    response = await http.post(WIDGETS, content=bomb, headers=YAML)
    assert_status(response, 400, "BadRequest", "yaml: document contains excessive aliasing")
    applied = await http.patch(f"{WIDGETS}/bomb?fieldManager=x", content=bomb, headers=APPLY)
    assert_status(applied, 400, "BadRequest", "excessive aliasing")
    assert (await http.get(f"{WIDGETS}/bomb")).status_code == 404
    assert (await http.get(WIDGETS)).json()["items"] == []


async def test_aliases_that_expand_past_the_body_limit_are_413(http: httpx.AsyncClient) -> None:
    # Few aliases (go-yaml's ratio allows them) of one large value: 4 MiB once expanded.
    await serve_widgets(http)
    big = b"apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: wide}\n"
    big += b"a: &a " + b"x" * (1 << 20) + b"\nb: [*a, *a, *a]\n"
    response = await http.post(WIDGETS, content=big, headers=YAML)
    assert_status(response, 413, "RequestEntityTooLarge", "YAML aliases expanded", "3145728")
    assert (await http.get(f"{WIDGETS}/wide")).status_code == 404


async def test_a_few_aliases_are_expanded_and_stored(http: httpx.AsyncClient) -> None:
    body = b"metadata: {name: anchored, labels: &l {app: web}, annotations: *l}\ndata: {}\n"
    response = await http.post(CM, content=body, headers=YAML)
    assert response.status_code == 201, response.text
    metadata = (await http.get(f"{CM}/anchored")).json()["metadata"]
    assert metadata["labels"] == metadata["annotations"] == {"app": "web"}


@pytest.mark.parametrize("content_type", ["application/json", "application/yaml"])
async def test_nesting_past_the_limit_is_400_at_it_is_accepted(
    http: httpx.AsyncClient, content_type: str
) -> None:
    await serve_widgets(http)

    def widget(name: str, depth: int) -> bytes:
        # The object itself is one level: ``x`` holds the rest.
        body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}}
        body["x"] = nested(depth - 1)
        return json.dumps(body).encode()  # JSON is YAML too

    headers = {"content-type": content_type}
    limit = _limits.MAX_DEPTH
    accepted = await http.post(WIDGETS, content=widget("at", limit), headers=headers)
    assert accepted.status_code == 201, accepted.text
    refused = await http.post(WIDGETS, content=widget("past", limit + 1), headers=headers)
    assert_status(refused, 400, "BadRequest", f"exceeded max depth of {limit}")
    assert (await http.get(f"{WIDGETS}/past")).status_code == 404


async def test_a_patch_cannot_nest_a_stored_object_past_the_limit(
    http: httpx.AsyncClient,
) -> None:
    # A JSON patch adds a deep value at the end of a deep path: each within the body limit.
    await serve_widgets(http)
    deep = _limits.MAX_DEPTH - 3
    body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    body["x"] = nested(deep)
    assert (await http.post(WIDGETS, json=body)).status_code == 201
    path = "/x" + "/a" * (deep - 1)
    patch = [{"op": "replace", "path": path, "value": nested(deep)}]
    response = await http.patch(
        f"{WIDGETS}/w", json=patch, headers={"content-type": "application/json-patch+json"}
    )
    assert_status(response, 400, "BadRequest", 'widgets.example.com "w" is nested too deeply')
    assert (await http.get(f"{WIDGETS}/w")).json()["x"] == nested(deep)


# --- sizes ----------------------------------------------------------------------------------


async def test_a_2_9_mib_yaml_configmap_is_refused_and_not_stored(
    http: httpx.AsyncClient,
) -> None:
    body = yaml_configmap("big", 30000)
    assert 2.7 * 2**20 < len(body) < MAX_BODY_BYTES
    response = await http.post(CM, content=body, headers=YAML)
    # 413 here for its stored size; per-kind validation may refuse it first (422, data
    # over 1 MiB): either way it is refused and not stored.
    assert response.status_code in (413, 422), response.text
    assert (await http.get(f"{CM}/big")).status_code == 404


async def test_objects_are_capped_at_1_5_mib_once_encoded(http: httpx.AsyncClient) -> None:
    await serve_widgets(http)
    limit = _limits.MAX_OBJECT_BYTES
    assert limit == 1536 * 1024
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "big"}}
    response = await http.post(WIDGETS, json={**widget, "blob": "x" * (2 << 20)})
    assert_status(
        response, 413, "RequestEntityTooLarge", 'widgets.example.com "big" is', f"{limit} bytes"
    )
    assert (await http.get(f"{WIDGETS}/big")).status_code == 404
    # Growing a stored object past the limit is refused on every write path.
    assert (await http.post(WIDGETS, json={**widget, "blob": "small"})).status_code == 201
    grown = {"blob": "x" * (limit - 100)}
    writes = [
        http.patch(
            f"{WIDGETS}/big", json=grown, headers={"content-type": "application/merge-patch+json"}
        ),
        http.put(f"{WIDGETS}/big", json={**widget, **grown}),
        http.patch(
            f"{WIDGETS}/big?fieldManager=x&force=true", json={**widget, **grown}, headers=APPLY
        ),
    ]
    for write in writes:
        assert_status(await write, 413, "RequestEntityTooLarge", str(limit))
    assert (await http.get(f"{WIDGETS}/big")).json()["blob"] == "small"


async def test_an_object_stored_over_the_limit_can_still_be_deleted(
    apiserver: RunningApiServer, http: httpx.AsyncClient
) -> None:
    # As if stored before the limit: it must not become undeletable.
    body = {"metadata": {"name": "legacy", "finalizers": ["example.com/hold"]}, "data": {}}
    assert (await http.post(CM, json=body)).status_code == 201
    registry = apiserver.api.registry
    info = apiserver.api.scheme.resource("", "v1", "configmaps")
    assert info is not None
    stored = await registry.get(info, "default", "legacy")
    huge = json.loads(stored.value)
    huge["data"] = {"blob": "x" * (2 << 20)}
    await registry.store.update(
        stored.key, json.dumps(huge).encode(), expected_revision=stored.mod_revision
    )
    assert (await http.delete(f"{CM}/legacy")).status_code == 200  # marked for deletion
    unblocked = await http.patch(
        f"{CM}/legacy",
        json={"metadata": {"finalizers": None}},
        headers={"content-type": "application/merge-patch+json"},
    )
    assert unblocked.status_code == 200, unblocked.text
    assert (await http.get(f"{CM}/legacy")).status_code == 404


# --- query parameters -----------------------------------------------------------------------


async def test_field_validation_values_are_checked_on_every_write(
    http: httpx.AsyncClient,
) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fv"}, "data": {}}
    assert (await http.post(CM, json=cm)).status_code == 201
    bogus = {"fieldValidation": "Bogus"}
    merge = {"content-type": "application/merge-patch+json"}
    writes = {
        "CreateOptions": http.post(CM, params=bogus, json={**cm, "metadata": {"name": "fv2"}}),
        "UpdateOptions": http.put(f"{CM}/fv", params=bogus, json=cm),
        "PatchOptions": http.patch(
            f"{CM}/fv", params=bogus, json={"data": {"a": "1"}}, headers=merge
        ),
    }
    for kind, write in writes.items():
        response = await write
        assert_status(
            response,
            422,
            "Invalid",
            f'{kind}.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Bogus": '
            'supported values: "", "Ignore", "Strict", "Warn"',
        )
        assert response.json()["details"]["causes"][0]["field"] == "fieldValidation"
    applied = await http.patch(
        f"{CM}/fv", params={**bogus, "fieldManager": "x"}, json=cm, headers=APPLY
    )
    assert_status(applied, 422, "Invalid", "PatchOptions.meta.k8s.io", '"Bogus"')
    status = await http.put(f"{CM}/fv/status", params={"fieldValidation": "strict"}, json=cm)
    assert status.status_code in (404, 422)  # configmaps have no status; never a 2xx
    assert (await http.get(f"{CM}/fv2")).status_code == 404
    assert (await http.get(f"{CM}/fv")).json()["data"] == {}


def _python_client_field_validation(url: str) -> int:
    with api_client(url) as api:
        core = client.CoreV1Api(api)
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="pyfv"))
        try:
            core.create_namespaced_config_map("default", body, field_validation="Bogus")
        except client.ApiException as exc:
            return int(exc.status)
    return 201


async def test_field_validation_bogus_through_the_python_client(
    apiserver: RunningApiServer,
) -> None:
    status = await trio.to_thread.run_sync(_python_client_field_validation, apiserver.url)
    assert status == 422


@pytest.mark.parametrize(
    "query",
    [
        "watch=1&timeoutSeconds=100000000000000000000",
        "timeoutSeconds=100000000000000000000",
        "watch=1&timeoutSeconds=-1",
        "limit=-1",
        "limit=1_000",
        "limit=99999999999999999999",
    ],
)
async def test_out_of_range_query_parameters_are_400(http: httpx.AsyncClient, query: str) -> None:
    name = query.split("&")[-1].split("=")[0]
    assert_status(await http.get(f"{CM}?{query}"), 400, "BadRequest", name)


async def test_grace_period_must_be_an_int64(http: httpx.AsyncClient) -> None:
    assert (await http.post(CM, json={"metadata": {"name": "g"}})).status_code == 201
    for value in ("soon", "100000000000000000000"):
        response = await http.delete(f"{CM}/g", params={"gracePeriodSeconds": value})
        assert_status(response, 400, "BadRequest", "gracePeriodSeconds")
    assert (await http.get(f"{CM}/g")).status_code == 200
    assert (await http.delete(f"{CM}/g", params={"gracePeriodSeconds": "0"})).status_code == 200


async def test_kubectl_raw_watch_with_a_huge_timeout_is_refused(
    kubeconfig: Path, tmp_path: Path
) -> None:
    result = await trio.run_process(
        [
            kubectl_binary(33),
            f"--kubeconfig={kubeconfig}",
            f"--cache-dir={tmp_path}/cache",
            "get",
            "--raw",
            "/api/v1/configmaps?watch=1&timeoutSeconds=100000000000000000000",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode != 0
    assert b"BadRequest" in result.stderr or b"timeoutSeconds" in result.stderr, result.stderr


# --- the event loop -------------------------------------------------------------------------


def gated(original: Callable[..., Any], readyz: threading.Event, seen: list[bool]) -> Any:
    """``original``, first waiting until a ``/readyz`` answer arrived (or giving up).

    On a worker thread the wait lets the loop answer ``/readyz`` meanwhile; on the loop
    it blocks the loop, no answer can arrive, and ``seen`` records that.
    """

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen.append(readyz.wait(timeout=5))
        return original(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    ("step", "method", "path", "headers"),
    [
        ("decode", "POST", CM, YAML),
        ("record", "POST", CM, {}),
        ("apply", "PATCH", f"{CM}/heavy?fieldManager=x", APPLY),
    ],
)
async def test_readyz_is_answered_while_a_large_body_is_handled(
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    readyz = threading.Event()
    seen: list[bool] = []
    module, name = {
        "decode": (_validation, "_decode"),
        "record": (_managed, "record"),
        "apply": (_managed, "apply"),
    }[step]
    monkeypatch.setattr(module, name, gated(getattr(module, name), readyz, seen))
    data = {f"key-{i:05d}": "v" * 80 for i in range(2000)}  # 200 KiB: a heavy request
    body = json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "heavy"}, "data": data}
    ).encode()
    assert len(body) >= _limits.OFFLOAD_BYTES
    answers: list[str] = []

    async def probe(done: trio.Event) -> None:
        async with httpx.AsyncClient(base_url=str(http.base_url), timeout=10) as other:
            while not done.is_set():
                response = await other.get("/readyz")
                answers.append(response.text)
                readyz.set()
                await trio.sleep(0.01)

    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe, done)
        response = await http.request(method, path, content=body, headers=headers)
        answers.append("heavy answered")
        done.set()
    assert response.status_code == 201, response.text
    assert seen and all(seen), f"/readyz waited for the {step} step: {seen}"
    assert answers.index("heavy answered") > answers.index("ok")


async def test_worst_bodies_at_once_are_refused_while_readyz_answers(
    http: httpx.AsyncClient,
) -> None:
    await serve_widgets(http)
    secret = {"metadata": {"name": "s"}, "data": {"blob": "eHh4" * (350 * 1024)}}  # 1.4 MiB
    deep = b'{"metadata":{"name":"deep"},"data":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001
    worst = [
        ("big", http.post(CM, content=yaml_configmap("big", 30000), headers=YAML), {413, 422}),
        ("bomb", http.post(WIDGETS, content=laughs(8), headers=YAML), {400}),
        ("deep", http.post(CM, content=deep), {400}),
        ("s", http.post(SECRETS, json=secret), {201, 422}),
    ]
    statuses: dict[str, int] = {}
    readyz: list[str] = []

    async def send(name: str, request: Any) -> None:
        statuses[name] = (await request).status_code

    async def probe(done: trio.Event) -> None:
        async with httpx.AsyncClient(base_url=str(http.base_url), timeout=10) as other:
            while not done.is_set():
                readyz.append((await other.get("/readyz")).text)
                await trio.sleep(0.01)

    done = trio.Event()
    async with trio.open_nursery() as outer:
        outer.start_soon(probe, done)
        async with trio.open_nursery() as nursery:
            for name, request, _ in worst:
                nursery.start_soon(send, name, request)
        done.set()
    for name, _, allowed in worst:
        assert statuses[name] in allowed, (name, statuses[name])
    assert readyz and set(readyz) == {"ok"}
    assert (await http.get(f"{CM}/big")).status_code == 404
    assert (await http.get(f"{WIDGETS}/bomb")).status_code == 404


# --- integers -------------------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [2**31, 10_000_000_000_000, 10**30])
async def test_an_int32_field_out_of_range_is_400_naming_it(
    http: httpx.AsyncClient, replicas: int
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "huge"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "huge"}},
            "template": {
                "metadata": {"labels": {"app": "huge"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }
    url = "/apis/apps/v1/namespaces/default/deployments"
    response = await http.post(url, json=deployment)
    assert_status(response, 400, "BadRequest", "spec.replicas", "2147483647")
    assert (await http.get(f"{url}/huge")).status_code == 404


async def test_an_int64_field_out_of_range_is_400(http: httpx.AsyncClient) -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "activeDeadlineSeconds": 2**63,
            "containers": [{"name": "c", "image": "nginx"}],
        },
    }
    response = await http.post("/api/v1/namespaces/default/pods", json=pod)
    assert_status(response, 400, "BadRequest", "spec.activeDeadlineSeconds")
