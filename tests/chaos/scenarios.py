"""The chaos scenarios as functions returning their figures: the tests assert on one run
of each, ``benchmarks/chaos.py`` repeats them."""

from __future__ import annotations

import datetime
import errno
import itertools
import json
import os
import sqlite3
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from kubetrio.client import ClientError
from tests.chaos.kit import (
    NAMESPACE,
    WATCHED,
    Agent,
    Load,
    Server,
    Watcher,
    configmap,
    final_reads,
    linearizable,
    lost_creates,
    prepare,
    retry,
    run_load,
)


async def server_kill(
    workdir: Path,
    *store_args: str,
    watchers: int = 100,
    rate: float = 200,
    before: float = 2.0,
    after: float = 1.0,
) -> dict[str, Any]:
    """kill -9 of the server during a write load at ``rate`` with ``watchers`` watches of
    one worker's creates open; restarted at once on the same data and port.

    Figures: acknowledged writes lost (creates missing after the restart, and keys whose
    history — final reads included — is not linearizable), time from the restart's start
    to the first acknowledged write, and per watcher: duplicate, missing and unexplained
    events, against the writes the load made.
    """
    server = Server(workdir, *store_args)
    server.start()
    await trio.to_thread.run_sync(server.wait_ready)
    try:
        async with server.client() as client, server.client() as wa, server.client() as wb:
            load = await prepare(client, keys=8)
            listed = await client.list("v1", "configmaps", namespace=NAMESPACE)
            start = str(listed["metadata"]["resourceVersion"])
            watching = [Watcher(start) for _ in range(watchers)]
            async with trio.open_nursery() as watches:
                for i, watcher in enumerate(watching):
                    watches.start_soon(watcher.run, wa if i % 2 else wb)
                with trio.fail_after(60):
                    for watcher in watching:
                        await watcher.established.wait()
                stop = trio.Event()
                async with trio.open_nursery() as loading:
                    loading.start_soon(partial(run_load, load, client, stop, rate=rate))
                    await trio.sleep(before)
                    acked_before = load.acked
                    killed_at = trio.current_time()
                    server.kill()
                    restarted_at = trio.current_time()
                    server.start()
                    with trio.fail_after(60):
                        while load.first_ack_after(restarted_at) is None:
                            assert server.alive(), server.log_tail()
                            await trio.sleep(0.02)
                    await trio.sleep(after)
                    stop.set()
                await retry(partial(final_reads, load, client))
                lost = await retry(partial(lost_creates, load, client))
                bad_keys = linearizable(load.history, load.init)
                newest = await _newest_revision(client)
                with trio.move_on_after(30):
                    while any(w.last < newest and not w.expired for w in watching):
                        await trio.sleep(0.05)
                watches.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(server.stop)
    first_ack = load.first_ack_after(restarted_at)
    assert first_ack is not None
    return {
        "store": "etcd" if store_args else "sqlite",
        "write_rate_before_kill": round(acked_before / before, 1),
        "acked_before_kill": acked_before,
        "acked_writes": load.acked,
        "unknown_outcome_writes": load.unknown_writes,
        "refused_writes": load.failed_writes,
        "acked_writes_lost": len(lost) + len(bad_keys),
        "lost_creates": lost[:20],
        "non_linearizable_keys": bad_keys,
        "ops_checked": sum(len(ops) for ops in load.history.values()),
        "recover_s": round(first_ack - restarted_at, 3),
        "unavailable_s": round(first_ack - killed_at, 3),
        **_watch_figures(watching, load, newest),
    }


async def _newest_revision(client: Any) -> int:
    """The revision of the newest ConfigMap the watchers follow."""
    listed = await client.list(
        "v1", "configmaps", namespace=NAMESPACE, label_selector=f"{WATCHED}=yes"
    )
    return max((int(o["metadata"]["resourceVersion"]) for o in listed["items"]), default=0)


def _watch_figures(watching: list[Watcher], load: Load, newest: int) -> dict[str, Any]:
    """Per watcher: events seen twice, acknowledged writes never seen, events no write
    explains (more than the writes of unknown outcome could), and whether all agree."""
    duplicates = missing = unexplained = disordered = behind = 0
    sets = set()
    for watcher in watching:
        revs = watcher.revisions()
        seen = set(revs)
        duplicates += len(revs) - len(seen)
        missing += len(load.watched_revisions - seen)
        unexplained += max(0, len(seen - load.watched_revisions) - load.watched_unknown)
        disordered += sum(1 for a, b in itertools.pairwise(revs) if a >= b)
        behind += watcher.last < newest
        sets.add(frozenset(seen))
    return {
        "watchers": len(watching),
        "watch_events_per_watcher": max((len(w.events) for w in watching), default=0),
        "watch_duplicate_events": duplicates,
        "watch_missing_events": missing,
        "watch_unexplained_events": unexplained,
        "watch_out_of_order": disordered,
        "watchers_agree": len(sets) == 1,
        "watchers_behind": behind,
        "watchers_expired": sum(w.expired for w in watching),
        "watch_reconnects": sum(w.reconnects for w in watching),
    }


async def disk_full(workdir: Path, *, size_mb: int = 48, value_kib: int = 512) -> dict[str, Any]:
    """The SQLite store's data directory on a small tmpfs, filled up while the server runs.

    Figures: how the writes that hit the full disk were answered (status codes, first
    message), whether reads went on, SQLite's integrity check during and after, and
    whether writes worked again once space returned. Needs root (the mount).
    """
    mount = workdir / "small"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)], check=True
    )
    server = Server(workdir, data_dir=mount / "data")
    statuses: dict[str, int] = {}
    message = ""
    acked: list[str] = []
    try:
        server.start()
        await trio.to_thread.run_sync(server.wait_ready)
        async with server.client() as client:
            await prepare(client, keys=1)
            big = "x" * (value_kib * 1024)
            filler = mount / "filler"
            await trio.to_thread.run_sync(_fill, filler)
            # Big writes until the store refuses a few (the WAL was preallocated, so the
            # first ones may still fit).
            refused = 0
            with trio.fail_after(120):
                for i in range(400):
                    name = f"big-{i}"
                    try:
                        await client.create(
                            "v1", "configmaps", configmap(name, big), namespace=NAMESPACE
                        )
                    except ClientError as exc:
                        statuses[str(exc.code)] = statuses.get(str(exc.code), 0) + 1
                        message = message or exc.message
                        refused += 1
                        if refused >= 3:
                            break
                    else:
                        acked.append(name)
            alive_when_full = server.alive()
            read_ok = await _reads_work(client)
            integrity_full = _integrity(server.data / "state.db")
            filler.unlink()
            recovered_at = trio.current_time()
            with trio.fail_after(30):
                while True:
                    try:
                        await client.create(
                            "v1", "configmaps", configmap("after", "space"), namespace=NAMESPACE
                        )
                        break
                    except (ClientError, httpx.HTTPError):
                        assert server.alive(), server.log_tail()
                        await trio.sleep(0.2)
            recover_s = trio.current_time() - recovered_at
            listed = await client.list("v1", "configmaps", namespace=NAMESPACE)
            names = {o["metadata"]["name"] for o in listed["items"]}
        await trio.to_thread.run_sync(server.stop)
        integrity_after = _integrity(server.data / "state.db")
    finally:
        await trio.to_thread.run_sync(server.stop)
        subprocess.run(["umount", "-l", str(mount)], check=False)
    return {
        "acked_before_full": len(acked),
        "refused_statuses": statuses,
        "refused_message": message,
        "server_alive_when_full": alive_when_full,
        "reads_work_when_full": read_ok,
        "integrity_when_full": integrity_full,
        "integrity_after": integrity_after,
        "writes_after_space_returns_s": round(recover_s, 3),
        "acked_writes_lost": len(set(acked) - names),
    }


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system has not a page left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 4096):
            chunk = b"\0" * size
            try:
                while os.write(fd, chunk) == size:
                    pass
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)


async def _reads_work(client: Any) -> bool:
    try:
        await client.list("v1", "configmaps", namespace=NAMESPACE)
        await client.get("v1", "configmaps", "lin-0", namespace=NAMESPACE)
        await client.list("v1", "namespaces")
    except (ClientError, httpx.HTTPError):
        return False
    return True


def _integrity(db: Path) -> str:
    """SQLite's ``PRAGMA integrity_check`` of the database (a reader beside the server)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "steady"},
    "spec": {
        "nodeName": "chaos-node",
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "main",
            "image": "busybox",
            "command": ["sh", "-c", "touch /tmp/ready; exec sleep 3600"],
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1},
        }],
    },
}  # fmt: skip


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def agent_kill(
    workdir: Path, *, down: float = 2.0, watch_after: float = 3.0
) -> dict[str, Any]:
    """kill -9 of a node agent while its pod runs, then a restart of it.

    Figures: whether the container kept running through it (same runc container, same
    pid), how many containers and pods there are afterwards, restarts counted, how often
    the pod was seen not Ready, and the time from the restart to the adoption.
    """
    from kubetrio.images import busybox_registry

    async with busybox_registry(workdir / "registry") as mirrors:
        registries = workdir / "registries.yaml"
        registries.write_text(json.dumps(mirrors))
        server = Server(workdir)
        agent = Agent(server, workdir, "chaos-node", registries)
        try:
            server.start()
            await trio.to_thread.run_sync(server.wait_ready)
            agent.start()
            async with server.client() as client:
                with trio.fail_after(30):
                    while True:  # until the controllers made the default ServiceAccount
                        try:
                            await client.create("v1", "pods", POD, namespace="default")
                            break
                        except ClientError:
                            await trio.sleep(0.2)
                with trio.fail_after(90):
                    while not _ready(
                        pod := await client.get("v1", "pods", "steady", namespace="default")
                    ):
                        assert agent.alive(), agent.log_text()[-3000:]
                        await trio.sleep(0.2)
                [status] = pod["status"]["containerStatuses"]
                container = status["containerID"].removeprefix("runc://")
                before = json.loads(agent.runc("state", container))
                not_ready = 0
                stop = trio.Event()

                async def observe() -> None:
                    nonlocal not_ready
                    while not stop.is_set():
                        seen = await client.get("v1", "pods", "steady", namespace="default")
                        not_ready += not _ready(seen)
                        await trio.sleep(0.2)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(observe)
                    agent.kill()
                    await trio.sleep(down)
                    alive_while_down = _pid_alive(before["pid"])
                    restarted_at = trio.current_time()
                    agent.start()
                    with trio.fail_after(60):
                        while f"adopting container {container}" not in agent.log_text():
                            assert agent.alive(), agent.log_text()[-3000:]
                            await trio.sleep(0.1)
                    adopt_s = trio.current_time() - restarted_at
                    await trio.sleep(watch_after)  # probes and status syncs of the new agent
                    stop.set()
                after = json.loads(agent.runc("state", container) or "{}")
                pod = await client.get("v1", "pods", "steady", namespace="default")
                pods = await client.list("v1", "pods", namespace="default")
                [status] = pod["status"]["containerStatuses"]
                containers = agent.runc("list", "-q").split()
                figures = {
                    "container_alive_while_agent_down": alive_while_down,
                    "same_container": status["containerID"] == f"runc://{container}",
                    "same_pid": after.get("pid") == before["pid"],
                    "container_status": after.get("status"),
                    "restart_count": status["restartCount"],
                    "runc_containers": len(containers),
                    "pods": len(pods["items"]),
                    "not_ready_observations": not_ready,
                    "ready_at_end": _ready(pod),
                    "adopt_s": round(adopt_s, 3),
                }
                await client.delete("v1", "pods", "steady", namespace="default")
                with trio.move_on_after(30):
                    while agent.runc("list", "-q").split():
                        await trio.sleep(0.2)
        finally:
            await trio.to_thread.run_sync(agent.stop)
            await trio.to_thread.run_sync(server.stop)
    return figures


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
"""Debian's libfaketime: preloaded into the server only, its wall clock moves by what a
file says, while the host's clock and the monotonic clock (trio's) stay. (With
``FAKETIME_DONT_FAKE_MONOTONIC`` its 0.9.10 fails an absolute ``clock_nanosleep`` on the
monotonic clock with EINVAL — Python's ``time.sleep`` — which the server never calls;
the node agent does, so the agent's clock cannot be jumped this way.)"""


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


async def _controllers_act(client: Any, name: str) -> float:
    """Create a Deployment; the seconds until its ReplicaSet made both pods."""
    started = trio.current_time()
    await client.create("apps/v1", "deployments", _deployment(name), namespace=NAMESPACE)
    with trio.fail_after(30):
        while True:
            pods = await client.list(
                "v1", "pods", namespace=NAMESPACE, label_selector=f"app={name}"
            )
            if len(pods["items"]) == 2:
                return trio.current_time() - started
            await trio.sleep(0.1)


async def _heartbeat(client: Any, node: str, stop: trio.Event) -> None:
    """Be a node whose machine's clock is right: renew its Lease every second."""
    lease = await client.get("coordination.k8s.io/v1", "leases", node, namespace="kube-node-lease")
    while not stop.is_set():
        lease["spec"]["renewTime"] = datetime.datetime.now(datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        )
        lease = await client.update(
            "coordination.k8s.io/v1", "leases", lease, namespace="kube-node-lease"
        )
        await trio.sleep(1)


async def _node_with_lease(client: Any, node: str) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    made = await client.create("v1", "nodes", {"metadata": {"name": node}})
    made["status"] = {
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
    }  # fmt: skip
    await client.update("v1", "nodes", made, subresource="status")
    await client.create(
        "coordination.k8s.io/v1",
        "leases",
        {"metadata": {"name": node}, "spec": {"holderIdentity": node, "leaseDurationSeconds": 40}},
        namespace="kube-node-lease",
    )


async def clock_jump(
    workdir: Path, *, jump: str = "+1d", settle: float = 2.0, rate: float = 10
) -> dict[str, Any]:
    """The server's wall clock jumps forward by ``jump``, then back to the true time,
    under a write load, with a node heartbeating by the true clock.

    Figures: acknowledged writes lost and linearizability across both jumps, the seconds
    the controllers took to act after each jump, and whether the node stayed Ready.
    """
    offset = workdir / "faketime"
    offset.write_text("+0\n")
    server = Server(
        workdir,
        env={
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(offset),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        },
    )
    server.start()
    try:
        await trio.to_thread.run_sync(server.wait_ready)
        async with server.client() as client:
            load = await prepare(client, keys=4)
            await _node_with_lease(client, "clock-node")
            stop = trio.Event()
            act: dict[str, float] = {}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(run_load, load, client, stop, rate=rate, workers=2))
                nursery.start_soon(_heartbeat, client, "clock-node", stop)
                act["before"] = await _controllers_act(client, "before")
                server_time = await _server_time(client)
                offset.write_text(f"{jump}\n")
                jumped = await _server_time_after(client, lambda t: abs(t - server_time) > 3600)
                act["forward"] = await _controllers_act(client, "forward")
                await trio.sleep(settle)
                offset.write_text("+0\n")
                back = await _server_time_after(client, lambda t: abs(t - jumped) > 3600)
                act["back"] = await _controllers_act(client, "back")
                await trio.sleep(settle)
                stop.set()
            await final_reads(load, client)
            lost = await lost_creates(load, client)
            node = await client.get("v1", "nodes", "clock-node")
            alive = server.alive()
    finally:
        await trio.to_thread.run_sync(server.stop)
    return {
        "jump": jump,
        "server_clock_moved_s": round(jumped - server_time),
        "server_clock_back_s": round(back - jumped),
        "acked_writes": load.acked,
        "acked_writes_lost": len(lost),
        "non_linearizable_keys": linearizable(load.history, load.init),
        "controllers_act_s": {k: round(v, 3) for k, v in act.items()},
        "node_ready": _node_ready(node),
        "node_taints": [t["key"] for t in (node.get("spec") or {}).get("taints") or []],
        "server_alive": alive,
    }


async def _server_time(client: Any) -> float:
    """The server's wall clock, as it stamps a new object's creationTimestamp."""
    made = await client.create(
        "v1", "configmaps", {"metadata": {"generateName": "clock-"}}, namespace=NAMESPACE
    )
    stamp = made["metadata"]["creationTimestamp"]
    return (
        datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=datetime.UTC)
        .timestamp()
    )


async def _server_time_after(client: Any, moved: Callable[[float], bool]) -> float:
    """The server's clock once ``moved(it)`` holds, or after 15 s whatever it is.

    libfaketime re-reads its file when a cached reading is more than
    ``FAKETIME_CACHE_DURATION`` whole seconds old, so a jump shows after 1 to 3 s; a fixed
    1.5 s wait missed it under load. The caller asserts on the value returned.
    """
    with trio.move_on_after(15):
        while not moved(now := await _server_time(client)):
            await trio.sleep(0.25)
        return now
    return await _server_time(client)


def _node_ready(node: dict[str, Any]) -> bool:
    return _ready(node)
