"""The node side of volumes with real runc pods: CSI staging and publishing in order (a
recording driver), clean-up after an agent restart, fsGroup, readOnly claims, subPathExpr,
node expansion, emptyDir sizeLimit eviction and the Summary API's volume stats.

Claims are bound by hand (PV with ``claimRef``, claim with ``volumeName``, phase Bound
through the status subresource), so these tests need no PV controller.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from kubetrio.client import Client
from kubetrio.kubelet import NodeAgent

from .conftest import AgentFactory, make_pod, wait_for
from .recording_driver import NAME, RecordingDriver, RecordingPlugin, mounted

pytestmark = [pytest.mark.root, pytest.mark.runc]


@pytest.fixture
def driver(tmp_path: Path) -> RecordingDriver:
    return RecordingDriver(tmp_path / "csi-data")


@pytest.fixture
def agent_plugins(driver: RecordingDriver) -> list[tuple[str, object]]:
    return [("recording-csi", RecordingPlugin(driver))]


@pytest.fixture
def agent_options() -> dict[str, Any]:
    return {"eviction_interval": 0.5}


async def bound_claim(
    client: Client,
    claim: str,
    *,
    handle: str | None = None,
    size: str = "1Gi",
    claim_status: dict[str, Any] | None = None,
    read_only_pv: bool = False,
) -> str:
    """A PV of the recording driver bound to a new claim; returns the PV's name."""
    pv_name = f"pv-{claim}"
    csi: dict[str, Any] = {"driver": NAME, "volumeHandle": handle or f"vol-{claim}"}
    if read_only_pv:
        csi["readOnly"] = True
    await client.create(
        "v1",
        "persistentvolumes",
        {
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "csi": csi,
                "claimRef": {"namespace": "default", "name": claim},
            },
        },
    )
    await client.create(
        "v1",
        "persistentvolumeclaims",
        {
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeName": pv_name,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        namespace="default",
    )
    await client.patch(
        "v1",
        "persistentvolumeclaims",
        claim,
        {"status": {"phase": "Bound", **(claim_status or {})}},
        namespace="default",
        subresource="status",
    )
    return pv_name


def claim_pod(
    name: str, claim: str, script: str, *, read_only: bool = False, **spec: Any
) -> dict[str, Any]:
    source: dict[str, Any] = {"claimName": claim}
    if read_only:
        source["readOnly"] = True
    return make_pod(
        name,
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
        volumes=[{"name": "data", "persistentVolumeClaim": source}],
        terminationGracePeriodSeconds=1,
        **spec,
    )


def phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def running(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all("running" in s.get("state", {}) for s in statuses)


async def logs(agent: NodeAgent, name: str) -> str:
    return b"".join([c async for c in agent.read_logs("default", name)]).decode()


async def events(client: Client, name: str, reason: str) -> list[str]:
    listed = await client.list("v1", "events", namespace="default")
    return [
        e["message"]
        for e in listed["items"]
        if e["involvedObject"]["name"] == name and e["reason"] == reason
    ]


async def delete_and_wait(agent: NodeAgent, client: Client, name: str) -> None:
    await client.delete("v1", "pods", name, namespace="default")
    await wait_for(client, name, lambda p: not p, timeout=30)
    while any(w.name == name for w in agent.workers.values()):
        await trio.sleep(0.05)


async def test_staged_once_for_two_pods_and_unstaged_after_both(
    agent: NodeAgent, client: Client, driver: RecordingDriver, tmp_path: Path
) -> None:
    pv = await bound_claim(client, "shared", handle="vol-shared")
    script = "hostname > /data/$(hostname); sleep 3600"
    for name in ("first", "second"):
        await client.create("v1", "pods", claim_pod(name, "shared", script), namespace="default")
    with trio.fail_after(60):
        pods = [await wait_for(client, n, running, timeout=60) for n in ("first", "second")]
    digest = hashlib.sha256(b"vol-shared").hexdigest()
    staging = tmp_path / "agent/plugins/kubernetes.io/csi" / NAME / digest / "globalmount"
    assert driver.named("stage") == [{"volume_id": "vol-shared", "staging_path": str(staging)}]
    targets = {
        tmp_path / "agent/pods" / p["metadata"]["uid"] / "volumes/kubernetes.io~csi" / pv / "mount"
        for p in pods
    }
    assert {Path(c["target_path"]) for c in driver.named("publish")} == targets
    assert all(c["staging_path"] == str(staging) for c in driver.named("publish"))
    assert all(mounted(t) for t in targets) and mounted(staging)
    with trio.fail_after(30):
        await delete_and_wait(agent, client, "first")
    assert len(driver.named("unpublish")) == 1
    assert driver.named("unstage") == []  # "second" still uses the staged volume
    assert mounted(staging)
    with trio.fail_after(30):
        await delete_and_wait(agent, client, "second")
    assert [c["volume_id"] for c in driver.named("unpublish")] == ["vol-shared"] * 2
    assert driver.named("unstage") == [{"volume_id": "vol-shared", "staging_path": str(staging)}]
    order = [name for name, _ in driver.calls]
    assert order == ["stage", "publish", "publish", "unpublish", "unpublish", "unstage"]
    assert not mounted(staging) and not any(mounted(t) for t in targets)
    assert sorted(p.name for p in (tmp_path / "csi-data/vol-shared").iterdir()) == [
        "first",
        "second",
    ]


async def test_agent_restart_unpublishes_the_volume_of_a_pod_gone_meanwhile(
    agent_factory: AgentFactory, client: Client, driver: RecordingDriver, tmp_path: Path
) -> None:
    await bound_claim(client, "kept-data", handle="vol-restart")
    script = "sleep 3600"
    first = agent_factory()
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            for name in ("kept", "gone"):
                pod = claim_pod(name, "kept-data", script)
                await client.create("v1", "pods", pod, namespace="default")
            kept = await wait_for(client, "kept", running, timeout=60)
            gone = await wait_for(client, "gone", running, timeout=60)
            nursery.cancel_scope.cancel()  # the agent stops; containers and mounts stay
        targets = {
            name: Path(c["target_path"])
            for name, pod in (("kept", kept), ("gone", gone))
            for c in driver.named("publish")
            if pod["metadata"]["uid"] in c["target_path"]
        }
        assert all(mounted(t) for t in targets.values())
        # "gone" is removed from the API while no agent runs.
        await client.delete("v1", "pods", "gone", namespace="default", grace_period_seconds=0)
        await wait_for(client, "gone", lambda p: not p)
        second = agent_factory()
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            while (tmp_path / "agent/pods" / gone["metadata"]["uid"]).exists():
                await trio.sleep(0.05)
            assert [c["target_path"] for c in driver.named("unpublish")] == [str(targets["gone"])]
            assert not mounted(targets["gone"])
            assert driver.named("unstage") == []  # the adopted "kept" still uses it
            adopted = await wait_for(client, "kept", running)
            ids = [s["containerID"] for s in adopted["status"]["containerStatuses"]]
            assert ids == [s["containerID"] for s in kept["status"]["containerStatuses"]]
            assert mounted(targets["kept"])
            await delete_and_wait(second, client, "kept")
            assert len(driver.named("unstage")) == 1
            nursery.cancel_scope.cancel()


async def test_fs_group_owns_the_volumes_inside_the_container(
    agent: NodeAgent, client: Client, driver: RecordingDriver
) -> None:
    await bound_claim(client, "owned")
    script = (
        "stat -c '%n %g %A' /data /scratch; touch /data/new /scratch/new; "
        "ls -ln /data/new /scratch/new"
    )
    pod = claim_pod(
        "owner",
        "owned",
        script,
        restartPolicy="Never",
        securityContext={"runAsUser": 1000, "fsGroup": 2345},
    )
    pod["spec"]["volumes"].append({"name": "scratch", "emptyDir": {}})
    pod["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "scratch", "mountPath": "/scratch"}
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(60):
        done = await wait_for(
            client, "owner", lambda p: phase(p) in ("Succeeded", "Failed"), timeout=60
        )
    text = await logs(agent, "owner")
    assert phase(done) == "Succeeded", text
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["/data", "2345"] and lines[0].split()[2][6] == "s"
    assert lines[1] == "/scratch 2345 drwxrwsrwx"
    # Files made in a setgid directory by uid 1000 belong to the fsGroup.
    assert [line.split()[2:4] for line in lines[2:4]] == [["1000", "2345"], ["1000", "2345"]]


async def test_read_only_claim_refuses_writes(
    agent: NodeAgent, client: Client, driver: RecordingDriver
) -> None:
    await bound_claim(client, "frozen")
    script = "touch /data/x 2>&1; echo status=$?; cat /proc/mounts | grep ' /data '"
    pod = claim_pod("reader", "frozen", script, read_only=True, restartPolicy="Never")
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(60):
        await wait_for(client, "reader", lambda p: phase(p) == "Succeeded", timeout=60)
    text = await logs(agent, "reader")
    assert "Read-only file system" in text and "status=1" in text
    assert "ro" in text.splitlines()[-1].split()[3].split(",")  # the mount's options
    assert driver.named("publish")[0]["read_only"] is True


async def test_sub_path_expr_expands_the_pod_name(
    agent: NodeAgent, client: Client, driver: RecordingDriver, tmp_path: Path
) -> None:
    await bound_claim(client, "logs", handle="vol-logs")
    pod = claim_pod("app-7", "logs", "echo hello > /data/out.txt", restartPolicy="Never")
    container = pod["spec"]["containers"][0]
    container["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    container["volumeMounts"][0]["subPathExpr"] = "pods/$(POD_NAME)"
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(60):
        await wait_for(client, "app-7", lambda p: phase(p) == "Succeeded", timeout=60)
    assert (tmp_path / "csi-data/vol-logs/pods/app-7/out.txt").read_text() == "hello\n"


async def test_failed_publish_keeps_the_pod_creating_with_failed_mount(
    agent: NodeAgent, client: Client, driver: RecordingDriver
) -> None:
    pv = await bound_claim(client, "away", handle="broken-1")
    await client.create("v1", "pods", claim_pod("waiting", "away", "true"), namespace="default")
    with trio.fail_after(30):
        while not (messages := await events(client, "waiting", "FailedMount")):
            await trio.sleep(0.1)
    assert messages[0] == (
        f'MountVolume.SetUp failed for volume "{pv}" : '
        "UNAVAILABLE: backend of broken-1 is unreachable"
    )
    pod = await wait_for(
        client, "waiting", lambda p: bool((p.get("status") or {}).get("containerStatuses"))
    )
    assert phase(pod) == "Pending"
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ContainerCreating"
    with trio.fail_after(30):
        while len(driver.named("publish")) < 2:  # retried with back-off
            await trio.sleep(0.1)


async def test_node_expansion_finishes_a_pending_resize(
    agent: NodeAgent, client: Client, driver: RecordingDriver
) -> None:
    pending = {
        "capacity": {"storage": "1Gi"},
        "conditions": [{"type": "FileSystemResizePending", "status": "True"}],
    }
    await bound_claim(client, "grown", size="2Gi", claim_status=pending)
    await client.create(
        "v1", "pods", claim_pod("grower", "grown", "sleep 3600"), namespace="default"
    )
    with trio.fail_after(60):
        await wait_for(client, "grower", running, timeout=60)
        while True:
            claim = await client.get("v1", "persistentvolumeclaims", "grown", namespace="default")
            if claim["status"]["capacity"]["storage"] == "2Gi":
                break
            await trio.sleep(0.1)
    assert not claim["status"].get("conditions")
    [expand] = driver.named("expand")
    assert expand["bytes"] == 2 * 1024**3 and expand["volume_path"].endswith("/mount")


async def test_empty_dir_over_its_size_limit_evicts_the_pod(
    agent: NodeAgent, client: Client
) -> None:
    pod = make_pod(
        "hog",
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "dd if=/dev/zero of=/cache/fill bs=1M count=3; sleep 3600"],
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
            }
        ],
        volumes=[{"name": "cache", "emptyDir": {"sizeLimit": "1Mi"}}],
        terminationGracePeriodSeconds=30,
    )
    await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(60):
        evicted = await wait_for(client, "hog", lambda p: phase(p) == "Failed", timeout=60)
    message = 'Usage of EmptyDir volume "cache" exceeds the limit "1Mi". '
    assert (evicted["status"]["reason"], evicted["status"]["message"]) == ("Evicted", message)
    state = evicted["status"]["containerStatuses"][0]["state"]
    assert "terminated" in state
    with trio.fail_after(10):
        while not (found := await events(client, "hog", "Evicted")):
            await trio.sleep(0.1)
    assert found == [message]


async def test_stats_summary_shows_the_volume_usage(
    agent: NodeAgent, client: Client, driver: RecordingDriver
) -> None:
    await bound_claim(client, "measured")
    script = "dd if=/dev/urandom of=/data/blob bs=1k count=512; sleep 3600"
    await client.create(
        "v1", "pods", claim_pod("measured", "measured", script), namespace="default"
    )
    url = f"http://127.0.0.1:{agent.kubelet_port}/stats/summary"
    headers = {"authorization": "Bearer secret-token"}
    volume: dict[str, Any] = {}
    with trio.fail_after(60):
        await wait_for(client, "measured", running, timeout=60)
        async with httpx.AsyncClient() as http:
            while volume.get("usedBytes", 0) < 512 * 1024:
                summary = (await http.get(url, headers=headers)).json()
                [pod] = [p for p in summary["pods"] if p["podRef"]["name"] == "measured"]
                volume = next((v for v in pod["volume"] if v["name"] == "data"), {})
                await trio.sleep(0.1)
    assert summary["node"]["nodeName"] == "node-test"
    assert pod["podRef"]["namespace"] == "default"
    assert volume["pvcRef"] == {"name": "measured", "namespace": "default"}
    assert volume["capacityBytes"] >= volume["availableBytes"] > 0
    assert volume["inodesUsed"] >= 1 and volume["inodes"] > 0
    async with httpx.AsyncClient() as http:
        refused = await http.get(url)
    assert refused.status_code == 401
