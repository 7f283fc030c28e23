"""``pods/ephemeralcontainers``: debug containers are only ever added to a pod, through
their own subresource, as upstream's ``podEphemeralContainersStrategy`` and
``ValidatePodEphemeralContainersUpdate`` say. No node runs here: this is the API alone
(the containers running on a node are in tests/compat/test_debug.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from kubernetes import client

from kubetrio.apiserver import RunningApiServer
from kubetrio.client import Client
from kubetrio.simnode import SimulatedNodes

from .test_kubectl import Kubectl
from .test_python_client import api_client

NS = "/api/v1/namespaces/default"
EPHEMERAL = f"{NS}/pods/p/ephemeralcontainers"
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


def debugger(name: str = "debugger", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "stdin": True, "tty": True, **fields}


async def _pod(http: httpx.AsyncClient) -> dict[str, Any]:
    created = await http.post(
        f"{NS}/pods",
        json={
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "setup", "image": "busybox"}],
                "containers": [{"name": "c", "image": "busybox"}],
            },
        },
    )
    assert created.status_code == 201, created.text
    pod: dict[str, Any] = created.json()
    return pod


async def _add(http: httpx.AsyncClient, *containers: dict[str, Any]) -> httpx.Response:
    body = {"spec": {"ephemeralContainers": list(containers)}}
    return await http.patch(EPHEMERAL, content=json.dumps(body), headers=STRATEGIC)


def _causes(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    status = response.json()
    assert status["reason"] == "Invalid" and status["details"]["kind"] == "Pod"
    return [f"{c['field']}: {c['message']}" for c in status["details"]["causes"]]


async def test_adding_by_strategic_patch_returns_the_defaulted_pod(
    http: httpx.AsyncClient,
) -> None:
    await _pod(http)
    added = await _add(http, debugger(targetContainerName="c", command=["sh"]))
    assert added.status_code == 200, added.text
    pod = added.json()
    assert pod["kind"] == "Pod"
    [container] = pod["spec"]["ephemeralContainers"]
    assert container["targetContainerName"] == "c"
    # A container's defaults, as upstream's SetDefaults_EphemeralContainer.
    assert container["terminationMessagePolicy"] == "File"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["imagePullPolicy"] == "Always"
    # GET of the subresource is the pod, and the pod shows the container too.
    got = (await http.get(EPHEMERAL)).json()
    assert got["spec"]["ephemeralContainers"] == pod["spec"]["ephemeralContainers"]
    assert (await http.get(f"{NS}/pods/p")).json()["spec"]["ephemeralContainers"] == [container]
    # A second one is added beside the first (the list merges by name).
    second = await _add(http, debugger("two"))
    assert [c["name"] for c in second.json()["spec"]["ephemeralContainers"]] == [
        "debugger",
        "two",
    ]
    # managedFields record the write against the subresource.
    entries = second.json()["metadata"]["managedFields"]
    assert any(e.get("subresource") == "ephemeralcontainers" for e in entries)


async def test_only_ephemeral_containers_change_through_the_subresource(
    http: httpx.AsyncClient,
) -> None:
    await _pod(http)
    body = {
        "metadata": {"labels": {"sneaky": "yes"}},
        "spec": {"activeDeadlineSeconds": 5, "ephemeralContainers": [debugger()]},
    }
    patched = await http.patch(EPHEMERAL, content=json.dumps(body), headers=STRATEGIC)
    assert patched.status_code == 200, patched.text
    pod = patched.json()
    assert "activeDeadlineSeconds" not in pod["spec"]
    assert "sneaky" not in (pod["metadata"].get("labels") or {})
    assert [c["name"] for c in pod["spec"]["ephemeralContainers"]] == ["debugger"]


async def test_changing_or_removing_one_is_invalid(http: httpx.AsyncClient) -> None:
    await _pod(http)
    assert (await _add(http, debugger())).status_code == 200
    changed = await _add(http, debugger(image="alpine"))
    [cause] = _causes(changed)
    assert cause.startswith(
        'spec.ephemeralContainers[debugger]: Forbidden: existing ephemeral containers "debugger"'
        " may not be changed\n"
    )
    assert '"alpine"' in cause
    assert changed.json()["message"].startswith('Pod "p" is invalid: ')
    # PUT of the pod without it: removal.
    pod = (await http.get(EPHEMERAL)).json()
    pod["spec"]["ephemeralContainers"] = []
    removed = await http.put(EPHEMERAL, json=pod)
    assert _causes(removed) == [
        'spec.ephemeralContainers: Forbidden: existing ephemeral containers "debugger" '
        "may not be removed\n"
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"ports": [{"containerPort": 80}]},
            ["spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral "
             "Container"],
        ),
        (
            {
                "resources": {"limits": {"cpu": "1"}},
                "readinessProbe": {"exec": {"command": ["true"]}},
                "lifecycle": {"postStart": {"exec": {"command": ["true"]}}},
            },
            [
                "spec.ephemeralContainers[0].resources: Forbidden: cannot be set for an "
                "Ephemeral Container",
                "spec.ephemeralContainers[0].readinessProbe: Forbidden: cannot be set for an "
                "Ephemeral Container",
                "spec.ephemeralContainers[0].lifecycle: Forbidden: cannot be set for an "
                "Ephemeral Container",
            ],
        ),
        (
            {"targetContainerName": "nope"},
            ['spec.ephemeralContainers[0].targetContainerName: Not found: "nope"'],
        ),
        (
            {"name": "c"},
            ['spec.ephemeralContainers[0].name: Duplicate value: "c"'],
        ),
        (
            {"name": "setup"},
            ['spec.ephemeralContainers[0].name: Duplicate value: "setup"'],
        ),
        (
            {"image": ""},
            ["spec.ephemeralContainers[0].image: Required value"],
        ),
    ],
)  # fmt: skip
async def test_fields_an_ephemeral_container_may_not_have(
    http: httpx.AsyncClient, fields: dict[str, Any], expected: list[str]
) -> None:
    await _pod(http)
    refused = await _add(http, debugger(**fields))
    assert _causes(refused) == expected
    assert "ephemeralContainers" not in (await http.get(f"{NS}/pods/p")).json()["spec"]


async def test_the_target_may_not_be_another_ephemeral_container(
    http: httpx.AsyncClient,
) -> None:
    await _pod(http)
    assert (await _add(http, debugger())).status_code == 200
    refused = await _add(http, debugger(), debugger("two", targetContainerName="debugger"))
    assert _causes(refused) == [
        'spec.ephemeralContainers[1].targetContainerName: Not found: "debugger"'
    ]


async def test_the_pod_itself_cannot_add_or_carry_them(http: httpx.AsyncClient) -> None:
    created = await http.post(
        f"{NS}/pods",
        json={
            "metadata": {"name": "q"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                     "ephemeralContainers": [debugger()]},
        },
    )  # fmt: skip
    assert _causes(created) == ["spec.ephemeralContainers: Forbidden: cannot be set on create"]
    await _pod(http)
    updated = await http.patch(
        f"{NS}/pods/p",
        content=json.dumps({"spec": {"ephemeralContainers": [debugger()]}}),
        headers=STRATEGIC,
    )
    assert updated.status_code == 422
    assert "pod updates may not change fields other than" in updated.json()["message"]


async def test_static_pods_have_none(http: httpx.AsyncClient) -> None:
    created = await http.post(
        f"{NS}/pods",
        json={
            "metadata": {"name": "p", "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    assert created.status_code == 201, created.text
    assert _causes(await _add(http, debugger())) == [
        ": Forbidden: static pods do not support ephemeral containers"
    ]


async def test_discovery_lists_the_subresource(http: httpx.AsyncClient) -> None:
    resources = (await http.get("/api/v1")).json()["resources"]
    [entry] = [r for r in resources if r["name"] == "pods/ephemeralcontainers"]
    assert entry["kind"] == "Pod" and set(entry["verbs"]) == {"get", "patch", "update"}


async def test_the_official_client_adds_one(apiserver: RunningApiServer) -> None:
    def drive() -> list[str]:
        with api_client(apiserver.url) as api:
            core = client.CoreV1Api(api)
            core.create_namespaced_pod(
                "default",
                client.V1Pod(
                    metadata=client.V1ObjectMeta(name="py"),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="b")]),
                ),
            )
            core.patch_namespaced_pod_ephemeralcontainers(
                "py",
                "default",
                {"spec": {"ephemeralContainers": [debugger(targetContainerName="c")]}},
            )
            read = core.read_namespaced_pod_ephemeralcontainers("py", "default")
            return [str(c.target_container_name) for c in read.spec.ephemeral_containers]

    assert await trio.to_thread.run_sync(drive) == ["c"]


@pytest.mark.parametrize("minor", [27, 33])
async def test_kubectl_debug_adds_a_container_targeting_another(
    http: httpx.AsyncClient, kubeconfig: Path, tmp_path: Path, minor: int
) -> None:
    await _pod(http)
    kubectl = Kubectl(minor, kubeconfig, tmp_path)
    out = await kubectl.run(
        "debug", "p", "--image=busybox", "--target=c", "--container=dbg", "--", "sleep", "1"
    )
    assert 'Targeting container "c"' in out
    pod = (await http.get(f"{NS}/pods/p")).json()
    [container] = pod["spec"]["ephemeralContainers"]
    assert (container["name"], container["targetContainerName"]) == ("dbg", "c")
    assert container["command"] == ["sleep", "1"]
    # The same name again: kubectl's patch lists "dbg" twice, the old one last, so the
    # merge leaves the existing container as it was (nothing is changed, nor refused).
    await kubectl.run("debug", "p", "--image=alpine", "--container=dbg", "--", "true")
    pod = (await http.get(f"{NS}/pods/p")).json()
    assert pod["spec"]["ephemeralContainers"] == [container]


async def test_a_simulated_node_reports_it_cannot_start_one(apiserver: RunningApiServer) -> None:
    """A KWOK-style node runs no processes: the container ends at once with a reason, so
    ``kubectl debug`` does not wait for it forever."""
    api = Client.in_process(apiserver.api)
    async with trio.open_nursery() as nursery:
        await nursery.start(SimulatedNodes(api, count=1, bind_unscheduled=True).run)
        body = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "b"}]}}
        await api.create("v1", "pods", body, namespace="default")
        with trio.fail_after(10):
            while (await api.get("v1", "pods", "p", namespace="default")).get("status", {}).get(
                "phase"
            ) != "Running":
                await trio.sleep(0.05)
        await api.patch(
            "v1",
            "pods",
            "p",
            {"spec": {"ephemeralContainers": [debugger()]}},
            namespace="default",
            patch_type="strategic",
            subresource="ephemeralcontainers",
        )
        with trio.fail_after(10):
            while not (
                statuses := (await api.get("v1", "pods", "p", namespace="default"))["status"].get(
                    "ephemeralContainerStatuses"
                )
            ):
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    [status] = statuses
    terminated = status["state"]["terminated"]
    assert (status["name"], terminated["reason"]) == ("debugger", "StartError")
    assert "is simulated and runs no containers" in terminated["message"]
