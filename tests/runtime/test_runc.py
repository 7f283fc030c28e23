"""The runc runtime against real runc, overlayfs, cgroups and network namespaces (root)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from kubetrio_cni_calico.veth import CalicoNetwork, host_veth_name

from kubetrio.providers import ContainerConfig, ContainerConfigError, PodNetwork, VolumeMount
from kubetrio.runtime import RuncRuntime, cgroup_exists, parse_log_record
from kubetrio.runtime._runc import make_namespaces

pytestmark = [pytest.mark.root, pytest.mark.runc]


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": spec,
    }


async def test_httpd_in_pod_netns_serves_a_mounted_dir(
    runtime: RuncRuntime, tmp_path: Path
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from the pod\n")
    p = pod("web")
    await runtime.pull_image("busybox")
    sandbox = await runtime.run_pod_sandbox(p)
    [ip] = sandbox.ips
    container = {
        "name": "httpd",
        "image": "busybox",
        "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
        "securityContext": {"runAsUser": 65534, "readOnlyRootFilesystem": True},
        "resources": {"limits": {"memory": "32Mi", "cpu": "200m"}},
    }
    log_path = tmp_path / "logs" / "httpd" / "0.log"
    cid = await runtime.create_container(
        sandbox.id,
        p,
        container,
        ContainerConfig(
            mounts=[VolumeMount(container_path="/www", host_path=str(www), read_only=True)],
            log_path=str(log_path),
        ),
    )
    await runtime.start_container(cid)
    body = b""
    with trio.fail_after(10):
        while not body:
            try:
                stream = await trio.open_tcp_stream(ip, 80)
            except OSError:
                await trio.sleep(0.05)
                continue
            async with stream:
                await stream.send_all(b"GET /index.html HTTP/1.0\r\n\r\n")
                while chunk := await stream.receive_some():
                    body += chunk
    assert body.endswith(b"hello from the pod\n")
    code, out = await runtime.exec_sync(cid, ["id", "-u"], timeout=5)
    assert (code, out.strip()) == (0, b"65534")
    code, out = await runtime.exec_sync(cid, ["touch", "/x"], timeout=5)
    assert code != 0 and b"Read-only file system" in out
    code, out = await runtime.exec_sync(cid, ["hostname"], timeout=5)
    assert out.strip() == b"web"
    cgroup = f"{runtime.cgroup_parent}/{sandbox.id}/httpd"
    limit = Path(f"/sys/fs/cgroup/memory{cgroup}/memory.limit_in_bytes").read_text()
    assert int(limit) == 32 * 1024 * 1024
    assert Path(f"/sys/fs/cgroup/cpu{cgroup}/cpu.cfs_quota_us").read_text().strip() == "20000"
    # sleep-like PID 1 without a TERM handler: the grace period ends with SIGKILL.
    with trio.fail_after(10):
        await runtime.stop_container(cid, grace_period=0.5)
    state = await runtime.container_status(cid)
    assert state.state == "exited" and state.exit_code == 137 and state.reason == "Error"
    await runtime.remove_container(cid)
    assert not cgroup_exists(cgroup)
    await runtime.stop_pod_sandbox(sandbox.id, grace_period=0)
    assert not os.path.exists(sandbox.netns_path)
    assert not cgroup_exists(f"{runtime.cgroup_parent}/{sandbox.id}")


async def _run_to_exit(
    runtime: RuncRuntime, p: dict[str, Any], container: dict[str, Any], tmp_path: Path
) -> tuple[Any, list[bytes]]:
    sandbox = await runtime.run_pod_sandbox(p)
    log_path = tmp_path / f"{container['name']}.log"
    cid = await runtime.create_container(
        sandbox.id, p, container, ContainerConfig(log_path=str(log_path), env=[("WHO", "you")])
    )
    await runtime.start_container(cid)
    with trio.fail_after(20):
        state = await runtime.wait_container(cid)
    await runtime.stop_pod_sandbox(sandbox.id, grace_period=0)
    return state, log_path.read_bytes().splitlines()


async def test_exit_codes_env_and_cri_logs(runtime: RuncRuntime, tmp_path: Path) -> None:
    await runtime.pull_image("busybox")
    ok, lines = await _run_to_exit(
        runtime,
        pod("job"),
        {
            "name": "main",
            "image": "busybox",
            "command": ["sh", "-c"],
            "args": ["echo hi $(WHO); echo oops >&2; exit 0"],
        },
        tmp_path,
    )
    assert (ok.exit_code, ok.reason) == (0, "Completed")
    records = [parse_log_record(line) for line in lines]
    # stdout and stderr are separate pipes: their relative order is not kept.
    assert sorted((r[1], r[2], r[3]) for r in records if r) == [
        ("stderr", True, b"oops"),
        ("stdout", True, b"hi you"),
    ]
    failed, _ = await _run_to_exit(
        runtime,
        pod("fail"),
        {"name": "main", "image": "busybox", "command": ["sh", "-c", "exit 3"]},
        tmp_path,
    )
    assert (failed.exit_code, failed.reason) == (3, "Error")


async def test_memory_limit_oom_kills(runtime: RuncRuntime, tmp_path: Path) -> None:
    await runtime.pull_image("busybox")
    state, _ = await _run_to_exit(
        runtime,
        pod("oom"),
        {
            "name": "hog",
            "image": "busybox",
            "command": ["sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1"],
            "resources": {"limits": {"memory": "16Mi"}},
        },
        tmp_path,
    )
    assert (state.exit_code, state.reason) == (137, "OOMKilled")


async def test_run_as_non_root_refuses_root(runtime: RuncRuntime) -> None:
    await runtime.pull_image("busybox")
    p = pod("nonroot", securityContext={"runAsNonRoot": True})
    sandbox = await runtime.run_pod_sandbox(p)
    with pytest.raises(
        ContainerConfigError, match="container has runAsNonRoot and image will run as root"
    ):
        await runtime.create_container(
            sandbox.id, p, {"name": "c", "image": "busybox"}, ContainerConfig()
        )
    with pytest.raises(ContainerConfigError, match="container's runAsUser breaks non-root policy"):
        await runtime.create_container(
            sandbox.id,
            p,
            {"name": "c", "image": "busybox", "securityContext": {"runAsUser": 0}},
            ContainerConfig(),
        )
    await runtime.stop_pod_sandbox(sandbox.id, grace_period=0)


def test_log_rotation_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    from kubetrio.runtime._logs import RotatingLog

    log = RotatingLog(tmp_path / "0.log", max_bytes=100, max_files=3)
    for i in range(20):
        log.write(f"2026-01-01T00:00:00.000000000Z stdout F line {i:02d}\n".encode())
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3 and "0.log" in files
    assert (tmp_path / "0.log").read_bytes().endswith(b"line 19\n")
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())


async def test_recovery_drops_sandboxes_whose_namespaces_are_gone(
    runtime: RuncRuntime, tmp_path: Path
) -> None:
    await runtime.pull_image("busybox")
    p = pod("survivor")
    sandbox = await runtime.run_pod_sandbox(p)
    cid = await runtime.create_container(
        sandbox.id,
        p,
        {"name": "c", "image": "busybox", "command": ["sleep", "60"]},
        ContainerConfig(log_path=str(tmp_path / "c.log")),
    )
    await runtime.start_container(cid)
    second = RuncRuntime(
        root_dir=runtime.root_dir,
        images=runtime.images,
        network=runtime.network,
        cgroup_parent=runtime.cgroup_parent,
        netns_prefix=runtime.netns_prefix,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(second.run)  # a restart: everything is found again
        assert second.list_sandboxes() == [sandbox.id]
        [found] = second.list_containers(sandbox.id)
        assert (found.id, found.state, found.name) == (cid, "running", "c")
        nursery.cancel_scope.cancel()
    # As after a reboot: the container and the namespaces are gone.
    await runtime.stop_container(cid, grace_period=0)
    subprocess.run(["ip", "netns", "del", os.path.basename(sandbox.netns_path)], check=True)
    third = RuncRuntime(
        root_dir=runtime.root_dir,
        images=runtime.images,
        network=runtime.network,
        cgroup_parent=runtime.cgroup_parent,
        netns_prefix=runtime.netns_prefix,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(third.run)
        assert third.list_sandboxes() == []
        assert not (runtime.root_dir / "containers" / cid).exists()
        nursery.cancel_scope.cancel()


def _link_flags(netns: str | None, interface: str) -> list[str]:
    """The flags ``ip`` shows for ``interface`` ([] when there is no such interface)."""
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    shown = subprocess.run([*prefix, "-j", "link", "show", interface], capture_output=True)
    if shown.returncode != 0:
        return []
    [link] = json.loads(shown.stdout)
    return list(link["flags"])


async def test_sandbox_failing_after_its_network_is_wired_leaves_nothing(
    runtime: RuncRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the netlink wiring: the veth pair, the host route, the address and
    the namespace are all gone again (the fixture checks namespaces and mounts too)."""
    network = runtime.network
    assert isinstance(network, CalicoNetwork)
    real_add = network.add
    wired: list[PodNetwork] = []

    async def add_then_fail(**kwargs: Any) -> PodNetwork:
        wired.append(await real_add(**kwargs))
        raise RuntimeError("injected failure after wiring")

    monkeypatch.setattr(network, "add", add_then_fail)
    p = pod("broken")
    uid = p["metadata"]["uid"]
    with pytest.raises(RuntimeError, match="injected failure"):
        await runtime.run_pod_sandbox(p)
    [result] = wired
    host = host_veth_name(uid)
    assert _link_flags(None, host) == []
    routes = subprocess.run(
        ["ip", "-j", "route", "show", f"{result.ips[0]}/32"], capture_output=True, check=True
    )
    assert json.loads(routes.stdout) == []
    assert network.ipam.in_use() == {}
    assert not os.path.exists(runtime.netns_path(uid))
    assert runtime.list_sandboxes() == []


async def test_sandbox_without_a_network_plugin_has_lo_up(runtime: RuncRuntime) -> None:
    """No network plugin: the runtime sets the sandbox's ``lo`` up itself (no ``ip``)."""
    bare = RuncRuntime(
        root_dir=runtime.root_dir,
        images=runtime.images,
        network=None,
        cgroup_parent=runtime.cgroup_parent,
        netns_prefix=runtime.netns_prefix,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(bare.run)
        sandbox = await bare.run_pod_sandbox(pod("bare"))
        try:
            assert sandbox.ips == []
            assert "UP" in _link_flags(os.path.basename(sandbox.netns_path), "lo")
        finally:
            await bare.stop_pod_sandbox(sandbox.id, grace_period=0)
        nursery.cancel_scope.cancel()
    assert not os.path.exists(sandbox.netns_path)


def test_make_namespaces_binds_new_ones_and_leaves_the_caller_alone(tmp_path: Path) -> None:
    """In-process ``unshare --net=F --ipc=F --uts=F hostname H``: three new namespaces
    held by their files, the hostname set in the new UTS one, the caller's untouched."""
    files = {kind: tmp_path / kind for kind in ("net", "ipc", "uts")}
    for file in files.values():
        file.touch()
    own = {kind: os.stat(f"/proc/thread-self/ns/{kind}").st_ino for kind in files}
    host_name = os.uname().nodename
    try:
        make_namespaces(files, "in-the-pod")
        made = {kind: os.stat(file).st_ino for kind, file in files.items()}
        assert all(made[kind] != own[kind] for kind in files)
        assert len(set(made.values())) == 3
        assert {kind: os.stat(f"/proc/thread-self/ns/{kind}").st_ino for kind in files} == own
        assert os.uname().nodename == host_name
        shown = subprocess.run(
            ["nsenter", f"--uts={files['uts']}", "hostname"], capture_output=True, check=True
        )
        assert shown.stdout.strip() == b"in-the-pod"
        links = subprocess.run(
            ["nsenter", f"--net={files['net']}", "ip", "-j", "link", "show"],
            capture_output=True,
            check=True,
        )
        assert [link["ifname"] for link in json.loads(links.stdout)] == ["lo"]
    finally:
        for file in files.values():
            subprocess.run(["umount", str(file)], capture_output=True)
