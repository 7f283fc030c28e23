"""``nfs:`` volumes with real runc pods, against a real NFS server (nfs-ganesha, VFS FSAL,
NFSv4 on a loopback address of its own) through the kubelet's userspace FUSE client.

A pod writes into the share and the file shows in the server's exported directory; a
second pod reads it through a PersistentVolume with ``spec.nfs`` (read-only); deleting the
pods unmounts the share and stops the FUSE clients. An unreachable server or a missing
export keeps the pod in ContainerCreating with kubelet's ``FailedMount`` wording, retried,
and never leaves an empty directory to start on.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio.client import Client
from kubetrio.kubelet import NodeAgent, _nfs_fuse
from kubetrio.kubelet._nfs import NFS_DIR, fuse_mounted, record_path, unmount_pod
from kubetrio.kubelet._nfs import mount as mount_nfs
from tests.kit.nfs import free_loopback, ganesha, ganesha_missing

from .conftest import AgentFactory, make_pod, wait_for

pytestmark = [pytest.mark.root, pytest.mark.runc]


@pytest.fixture
def nfs_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nfs-ganesha serving a temporary directory as ``/export``: (address, directory).
    Tests ask for it before the agent, so it stops after the agent unmounted its shares."""
    if missing := ganesha_missing():
        pytest.skip(missing)
    with ganesha(tmp_path / "nfs") as served:
        yield served


def nfs_pod(name: str, script: str, volume: dict[str, Any]) -> dict[str, Any]:
    return make_pod(
        name,
        [
            {
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "share", "mountPath": "/data"}],
            }
        ],
        volumes=[{"name": "share", **volume}],
        terminationGracePeriodSeconds=1,
    )


def running(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all("running" in s.get("state", {}) for s in statuses)


async def logs(agent: NodeAgent, name: str) -> str:
    return b"".join([c async for c in agent.read_logs("default", name)]).decode()


async def failed_mounts(client: Client, name: str) -> list[dict[str, Any]]:
    listed = await client.list("v1", "events", namespace="default")
    return [
        e
        for e in listed["items"]
        if e["involvedObject"]["name"] == name and e["reason"] == "FailedMount"
    ]


async def delete_and_wait(agent: NodeAgent, client: Client, name: str) -> None:
    await client.delete("v1", "pods", name, namespace="default")
    await wait_for(client, name, lambda p: not p, timeout=30)
    while any(w.name == name for w in agent.workers.values()):
        await trio.sleep(0.05)


def fuse_pid(pod_dir: Path) -> int:
    """The pid of the FUSE client of a pod's volume "share", from the agent's record."""
    return int(json.loads(record_path(pod_dir, "share").read_text())["pid"])


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def bound_nfs_claim(client: Client, claim: str, server: str, *, read_only: bool) -> str:
    """A PersistentVolume with ``spec.nfs``, bound by hand to a new claim; its name."""
    pv_name = f"pv-{claim}"
    await client.create(
        "v1",
        "persistentvolumes",
        {
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "nfs": {"server": server, "path": "/export", "readOnly": read_only},
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
                "accessModes": ["ReadWriteMany"],
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
        {"status": {"phase": "Bound"}},
        namespace="default",
        subresource="status",
    )
    return pv_name


async def test_a_pod_writes_into_the_share_and_a_second_pod_reads_it_through_a_pv(
    nfs_server: tuple[str, Path], agent: NodeAgent, client: Client, tmp_path: Path
) -> None:
    address, export = nfs_server
    (export / "from-server").write_text("served\n")
    writer = nfs_pod(
        "writer",
        "cat /data/from-server && echo written-in-a-pod > /data/note && sleep 3600",
        {"nfs": {"server": address, "path": "/export"}},
    )
    with trio.fail_after(120):
        created = await client.create("v1", "pods", writer, namespace="default")
        await wait_for(client, "writer", running, timeout=60)
        while not (export / "note").exists() or not (export / "note").read_text():
            await trio.sleep(0.1)
        assert (export / "note").read_text() == "written-in-a-pod\n"
        assert "served" in await logs(agent, "writer")
        pod_dir = tmp_path / "agent/pods" / created["metadata"]["uid"]
        target = pod_dir / "volumes" / NFS_DIR / "share"
        assert fuse_mounted(target)
        writer_pid = fuse_pid(pod_dir)
        assert pid_alive(writer_pid)

        pv = await bound_nfs_claim(client, "shared", address, read_only=True)
        reader = nfs_pod(
            "reader",
            "cat /data/note; echo x > /data/refused || echo write-refused; sleep 3600",
            {"persistentVolumeClaim": {"claimName": "shared"}},
        )
        reader_pod = await client.create("v1", "pods", reader, namespace="default")
        await wait_for(client, "reader", running, timeout=60)
        while "write-refused" not in (text := await logs(agent, "reader")):
            await trio.sleep(0.1)
        assert "written-in-a-pod" in text
        assert not (export / "refused").exists()
        reader_dir = tmp_path / "agent/pods" / reader_pod["metadata"]["uid"]
        assert fuse_mounted(reader_dir / "volumes" / NFS_DIR / pv)

        await delete_and_wait(agent, client, "writer")
        assert not fuse_mounted(target)
        assert not pid_alive(writer_pid)
        assert not pod_dir.exists()
        # The share's data stays on the server; the other pod's mount is untouched.
        assert (export / "note").read_text() == "written-in-a-pod\n"
        assert fuse_mounted(reader_dir / "volumes" / NFS_DIR / pv)
        await delete_and_wait(agent, client, "reader")
        assert not reader_dir.exists()


@pytest.mark.parametrize("case", ["unreachable", "missing-export"])
async def test_a_share_that_cannot_be_mounted_keeps_the_pod_creating_with_failed_mount(
    nfs_server: tuple[str, Path], agent: NodeAgent, client: Client, tmp_path: Path, case: str
) -> None:
    address, _export = nfs_server
    if case == "unreachable":
        source = {"server": free_loopback(), "path": "/export"}
        why = "Connection refused"
    else:
        source = {"server": address, "path": "/nothing-here"}
        why = "NFS4ERR_NOENT"
    pod = nfs_pod("waiting", "echo started; sleep 3600", {"nfs": source})
    created = await client.create("v1", "pods", pod, namespace="default")
    with trio.fail_after(60):
        while not (events := await failed_mounts(client, "waiting")):
            await trio.sleep(0.1)
        message = events[0]["message"]
        assert message.startswith(
            'MountVolume.SetUp failed for volume "share" : mount failed: exit status 32\n'
        ), message
        assert f"{source['server']} {source['path']}" in message
        assert "Output: mount.nfs: " in message and why in message
        while (await failed_mounts(client, "waiting"))[0].get("count", 1) < 2:
            await trio.sleep(0.1)  # retried with back-off
    got = await wait_for(
        client, "waiting", lambda p: bool((p.get("status") or {}).get("containerStatuses"))
    )
    assert got["status"]["phase"] == "Pending"
    assert got["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == (
        "ContainerCreating"
    )
    # Nothing mounted, and no container started on an empty directory instead.
    target = tmp_path / "agent/pods" / created["metadata"]["uid"] / "volumes" / NFS_DIR / "share"
    assert not fuse_mounted(target)
    assert agent.runtime.list_containers(created["metadata"]["uid"]) == []
    await delete_and_wait(agent, client, "waiting")


async def test_agent_restart_adopts_a_live_mount_and_unmounts_one_whose_pod_went(
    nfs_server: tuple[str, Path], agent_factory: AgentFactory, client: Client, tmp_path: Path
) -> None:
    address, export = nfs_server
    volume = {"nfs": {"server": address, "path": "/export"}}
    first = agent_factory()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            kept = await client.create(
                "v1", "pods", nfs_pod("kept", "sleep 3600", volume), namespace="default"
            )
            gone = await client.create(
                "v1", "pods", nfs_pod("gone", "sleep 3600", volume), namespace="default"
            )
            await wait_for(client, "kept", running, timeout=60)
            await wait_for(client, "gone", running, timeout=60)
            nursery.cancel_scope.cancel()  # the agent stops; containers and mounts stay
        dirs = {
            name: tmp_path / "agent/pods" / pod["metadata"]["uid"]
            for name, pod in (("kept", kept), ("gone", gone))
        }
        pids = {name: fuse_pid(d) for name, d in dirs.items()}
        assert all(fuse_mounted(d / "volumes" / NFS_DIR / "share") for d in dirs.values())
        await client.delete("v1", "pods", "gone", namespace="default", grace_period_seconds=0)
        await wait_for(client, "gone", lambda p: not p)
        second = agent_factory()
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            while dirs["gone"].exists():
                await trio.sleep(0.05)
            assert not pid_alive(pids["gone"])
            await wait_for(client, "kept", running)
            # The same FUSE client still serves the kept pod, which still reaches the share.
            assert pid_alive(pids["kept"])
            assert fuse_mounted(dirs["kept"] / "volumes" / NFS_DIR / "share")
            (export / "late").write_text("after restart\n")
            late = dirs["kept"] / "volumes" / NFS_DIR / "share" / "late"
            assert late.read_text() == "after restart\n"
            await delete_and_wait(second, client, "kept")
            assert not pid_alive(pids["kept"])
            nursery.cancel_scope.cancel()


def test_no_fuse_device_fails_the_mount_naming_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os.path, "exists", lambda path: path != "/dev/fuse")
    assert _nfs_fuse.main(["127.0.0.1", "/export", "/nonexistent"]) == _nfs_fuse.MOUNT_FAILURE
    assert capsys.readouterr().err == (
        "mount.nfs: /dev/fuse is missing: this node cannot mount FUSE file systems\n"
    )


async def test_the_fuse_client_behaves_like_a_file_system(
    nfs_server: tuple[str, Path], tmp_path: Path
) -> None:
    """File operations through the mount land on the server as the kernel would do them,
    including those libnfs 4.0 needs worked around (writes over 4 KiB, the mode of a new
    file, a chmod while the file is open, appends)."""
    address, export = nfs_server
    pod_dir = tmp_path / "pod"
    share = await mount_nfs(
        pod_dir, "share", {"server": address, "path": "/export"}, read_only=False
    )
    try:
        payload = os.urandom(300_000)
        (share / "big").write_bytes(payload)
        assert (export / "big").read_bytes() == payload
        assert (share / "big").read_bytes() == payload

        with open(share / "log", "w") as log:
            log.write("one\n")
            log.flush()
            os.chmod(share / "log", 0o640)
            log.write("two\n")
        with open(share / "log", "a") as log:
            log.write("three\n")
        assert (export / "log").read_text() == "one\ntwo\nthree\n"
        assert stat.S_IMODE((export / "log").stat().st_mode) == 0o640

        old = os.umask(0o022)
        try:
            (share / "fresh").write_text("x")
        finally:
            os.umask(old)
        assert stat.S_IMODE((export / "fresh").stat().st_mode) == 0o644

        (share / "dir").mkdir()
        (share / "log").rename(share / "dir" / "moved")
        (share / "link").symlink_to("dir/moved")
        assert (export / "dir" / "moved").exists() and not (export / "log").exists()
        assert os.readlink(export / "link") == "dir/moved"
        assert (share / "link").read_text().startswith("one")
        os.truncate(share / "big", 10)
        assert (export / "big").stat().st_size == 10
        os.utime(share / "fresh", ns=(1_577_836_800_000_000_000, 1_577_836_800_000_000_000))
        assert (export / "fresh").stat().st_mtime == 1_577_836_800
        assert sorted(os.listdir(share)) == sorted(os.listdir(export))
        os.unlink(share / "link")
        os.unlink(share / "dir" / "moved")
        os.rmdir(share / "dir")
        assert not (export / "dir").exists()
        assert os.statvfs(share).f_blocks > 0
    finally:
        await trio.to_thread.run_sync(unmount_pod, pod_dir)
    assert not fuse_mounted(share)
    assert not share.exists()
