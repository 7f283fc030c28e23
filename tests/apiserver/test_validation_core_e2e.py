"""Issue 17's hostile-input probes of core kinds, through clients we did not write.

Each probe must be refused with upstream's code (422 Invalid naming the field, or 400
for bytes that are not base64) and must leave nothing stored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetrio.apiserver import RunningApiServer

from .test_kubectl import kubectl_binary
from .test_python_client import api_client


def pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def container(**extra: Any) -> dict[str, Any]:
    return {"name": "app", "image": "busybox:1.36", **extra}


def config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


# name, kind, body, expected HTTP code, expected cause fields (422) or message fragment
PROBES: list[tuple[str, str, dict[str, Any], int, list[str]]] = [
    ("no-containers", "pod", pod("no-containers", {"containers": []}), 422, ["spec.containers"]),
    (
        "port-70000",
        "pod",
        pod("port-70000", {"containers": [container(ports=[{"containerPort": 70000}])]}),
        422,
        ["spec.containers[0].ports[0].containerPort"],
    ),
    (
        "cpu-minus-one",
        "pod",
        pod("cpu-minus-one", {"containers": [container(resources={"requests": {"cpu": "-1"}})]}),
        422,
        ["spec.containers[0].resources.requests[cpu]"],
    ),
    (
        "bad-base64",
        "secret",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bad-base64"},
            "data": {"password": "not base64!"},
        },
        400,
        ["illegal base64 data at input byte 3"],
    ),
    (
        "bad-keys",
        "configmap",
        config_map("bad-keys", {"..": "x", "a/b": "y"}),
        422,
        ["data[..]", "data[a/b]"],
    ),
    (
        "too-big",
        "configmap",
        config_map("too-big", {"big": "x" * int(1.4 * 1024 * 1024)}),
        422,
        [""],
    ),
]


def create(core: Any, kind: str, body: dict[str, Any]) -> Any:
    if kind == "pod":
        return core.create_namespaced_pod("default", body)
    if kind == "secret":
        return core.create_namespaced_secret("default", body)
    return core.create_namespaced_config_map("default", body)


def read(core: Any, kind: str, name: str) -> Any:
    if kind == "pod":
        return core.read_namespaced_pod(name, "default")
    if kind == "secret":
        return core.read_namespaced_secret(name, "default")
    return core.read_namespaced_config_map(name, "default")


def probe(url: str, kind: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], int]:
    """(status code, Status body, status code of reading the object back)."""
    with api_client(url) as api:
        core: Any = client.CoreV1Api(api)  # bodies are dicts, as the client allows
        try:
            create(core, kind, body)
        except ApiException as exc:
            code, status = exc.status, json.loads(exc.body or "{}")
        else:
            raise AssertionError(f"{body['metadata']['name']} was accepted")
        try:
            read(core, kind, body["metadata"]["name"])
        except ApiException as exc:
            return code, status, exc.status
        return code, status, 200


@pytest.mark.parametrize(
    ("name", "kind", "body", "code", "expected"), PROBES, ids=[p[0] for p in PROBES]
)
async def test_probe_refused_and_nothing_stored(
    apiserver: RunningApiServer,
    name: str,
    kind: str,
    body: dict[str, Any],
    code: int,
    expected: list[str],
) -> None:
    got, status, read_back = await trio.to_thread.run_sync(probe, apiserver.url, kind, body)
    assert got == code, status
    assert status["kind"] == "Status" and status["code"] == code
    if code == 422:
        assert status["reason"] == "Invalid"
        fields = [cause["field"] for cause in status["details"]["causes"]]
        assert fields == expected, status
        assert f'"{name}" is invalid' in status["message"]
    else:
        assert status["reason"] == "BadRequest"
        assert all(fragment in status["message"] for fragment in expected), status
    assert read_back == 404


async def test_too_big_config_map_says_how_big(apiserver: RunningApiServer) -> None:
    body = config_map("big", {"big": "x" * int(1.4 * 1024 * 1024)})
    _, status, _ = await trio.to_thread.run_sync(probe, apiserver.url, "configmap", body)
    assert status["details"]["causes"][0]["message"] == "Too long: must have at most 1048576 bytes"


async def test_valid_objects_still_accepted(apiserver: RunningApiServer) -> None:
    """The boundaries: port 65535, cpu 0, a 1 MiB ConfigMap, base64 data are fine."""

    def run(url: str) -> list[str]:
        with api_client(url) as api:
            core: Any = client.CoreV1Api(api)  # bodies are dicts, as the client allows
            core.create_namespaced_pod(
                "default",
                pod(
                    "edge",
                    {
                        "containers": [
                            container(
                                ports=[{"containerPort": 65535}],
                                resources={"requests": {"cpu": "0"}},
                            )
                        ]
                    },
                ),
            )
            core.create_namespaced_config_map(
                "default", config_map("full", {"big": "x" * (1024 * 1024 - 10)})
            )
            core.create_namespaced_secret(
                "default",
                {"metadata": {"name": "ok"}, "data": {"password": "aHVudGVyMg=="}},
            )
            return [
                core.read_namespaced_pod("edge", "default").metadata.name,
                core.read_namespaced_config_map("full", "default").metadata.name,
                core.read_namespaced_secret("ok", "default").data["password"],
            ]

    assert await trio.to_thread.run_sync(run, apiserver.url) == ["edge", "full", "aHVudGVyMg=="]


MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {name: broken}
spec:
  containers:
  - name: app
    image: busybox:1.36
    ports: [{containerPort: 70000}]
    resources: {requests: {cpu: "-1"}}
"""


@pytest.mark.parametrize("minor", [27, 33])
async def test_kubectl_shows_every_cause(minor: int, kubeconfig: Path, tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
    with trio.fail_after(60):
        result = await trio.run_process(
            [kubectl_binary(minor), "create", "-f", "-"],
            stdin=MANIFEST.encode(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
        missing = await trio.run_process(
            [kubectl_binary(minor), "get", "pod", "broken"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )
    err = result.stderr.decode()
    assert result.returncode != 0
    assert 'The Pod "broken" is invalid' in err, err
    assert (
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 "
        "and 65535, inclusive" in err
    ), err
    assert (
        'spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater '
        "than or equal to 0" in err
    ), err
    assert missing.returncode != 0 and b"NotFound" in missing.stderr


async def test_service_type_change_drops_node_port_fields(apiserver: RunningApiServer) -> None:
    """NodePort -> ClusterIP passes validation: the node ports and the external traffic
    policy go with the type, as upstream's strategy drops them."""

    def run(url: str) -> tuple[Any, Any, bool]:
        with api_client(url) as api:
            core: Any = client.CoreV1Api(api)
            core.create_namespaced_service(
                "default",
                {
                    "metadata": {"name": "np"},
                    "spec": {"type": "NodePort", "ports": [{"port": 80}]},
                },
            )
            changed = core.patch_namespaced_service(
                "np", "default", {"spec": {"type": "ClusterIP"}}
            )
            spec = changed.spec
            return spec.ports[0].node_port, spec.external_traffic_policy, bool(spec.cluster_ip)

    assert await trio.to_thread.run_sync(run, apiserver.url) == (None, None, True)
