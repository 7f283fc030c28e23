"""The HA chaos scenarios: a real ``kubetrio up --servers 3 --nodes 0`` (three etcd
members over TLS, three servers, the balancer as the one API address) under the write
load and the watchers of :mod:`tests.chaos.kit`, with one piece killed.

Each scenario returns its figures; the tests assert on one run, ``benchmarks/ha.py``
repeats them. Pieces killed are started again by ``kubetrio up`` (it starts what of the
cluster is not running), as an operator would.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from kubetrio.client import Client, ClientError
from kubetrio.images import free_loopback_port
from kubetrio.pki import ClusterPKI, client_context
from tests.chaos import kit
from tests.chaos.scenarios import _newest_revision, _watch_figures

LEASES = ("kube-controller-manager", "kube-scheduler")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


class HACluster:
    """``kubetrio up --servers N --nodes 0`` in ``workdir``, on a free API port."""

    def __init__(self, workdir: Path, servers: int = 3) -> None:
        self.workdir = workdir
        self.home = workdir / "home"
        self.kubeconfig = workdir / "kubeconfig"
        self.servers = servers
        self.port = free_loopback_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.env = {**os.environ}
        self.env.pop("KUBETRIO_PLUGINS", None)

    def _kubetrio(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kubetrio", *args, "--data-dir", str(self.home)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, "COLUMNS": "200"},
        )

    def up(self) -> str:
        """Start the cluster, or what of it is not running; its output."""
        done = self._kubetrio(
            "up", "--servers", str(self.servers), "--nodes", "0",
            "--port", str(self.port), "--kubeconfig", str(self.kubeconfig),
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr + self.logs()
        return done.stdout

    def down(self) -> str:
        done = self._kubetrio("down", timeout=120)
        return done.stdout + done.stderr

    def logs(self) -> str:
        return "".join(
            f"\n--- {log.name}\n" + log.read_text(errors="replace")[-1500:]
            for log in sorted(self.home.glob("*.log"))
        )

    def pid(self, what: str) -> int:
        """The pid of ``server-s0``, ``etcd-s1``, ``balancer`` ..."""
        return int((self.home / f"{what}.pid").read_text())

    def names(self) -> list[str]:
        return [f"s{i}" for i in range(self.servers)]

    def kill(self, what: str) -> None:
        """kill -9 ``what`` (not our child: ``up`` started it detached) and wait it out."""
        pid = self.pid(what)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def processes(self) -> list[int]:
        """The pids of the cluster's pid files still running."""
        pids = [int(path.read_text()) for path in self.home.glob("*.pid")]
        return [pid for pid in pids if _alive(pid)]

    def pki(self) -> ClusterPKI:
        return ClusterPKI(self.home / "servers" / "s0" / "pki")

    def context(self) -> ssl.SSLContext:
        pki = self.pki()
        return client_context(pki.ca.files.cert_file, pki.admin.cert_file, pki.admin.key_file)

    def client(self, url: str | None = None) -> Client:
        """The admin's client through the API address (or ``url``)."""
        return Client.connect(url or self.url, verify=self.context())

    def etcd_context(self) -> ssl.SSLContext:
        pki = self.pki()
        client = pki.etcd_client
        return client_context(pki.etcd_ca.files.cert_file, client.cert_file, client.key_file)

    def plan(self) -> dict[str, Any]:
        """``ha.json``: the members' and servers' ports."""
        import json

        return dict(json.loads((self.home / "ha.json").read_text()))

    def server_url(self, name: str) -> str:
        """Server ``name``'s own API URL (not the API address)."""
        plan = self.plan()
        return f"https://127.0.0.1:{plan['server_ports'][plan['servers'].index(name)]}"

    def etcd_url(self, member: str) -> str:
        plan = self.plan()
        return f"https://127.0.0.1:{plan['client_ports'][plan['servers'].index(member)]}"

    def etcd_leader(self) -> str:
        """The member etcd's raft elected."""
        for member in self.names():
            try:
                status = httpx.post(
                    self.etcd_url(member) + "/v3/maintenance/status",
                    json={},
                    verify=self.etcd_context(),
                    timeout=2,
                ).json()
            except (httpx.HTTPError, ValueError):
                continue
            if status.get("leader") == status["header"]["member_id"]:
                return member
        raise AssertionError("etcd has no leader")

    def etcd_revision(self, member: str) -> int:
        answer = httpx.post(
            self.etcd_url(member) + "/v3/kv/range",
            json={"key": "AA==", "serializable": True},
            verify=self.etcd_context(),
            timeout=2,
        ).json()
        return int(answer["header"]["revision"])


async def lease_holders(client: Client) -> dict[str, str]:
    """Each leader Lease's holder identity (``<host>-<pid>``)."""
    held = {}
    for name in LEASES:
        lease = await client.get("coordination.k8s.io/v1", "leases", name, namespace="kube-system")
        held[name] = str((lease.get("spec") or {}).get("holderIdentity") or "")
    return held


async def leader_server(cluster: HACluster, client: Client) -> str:
    """The server whose process holds the controller manager's Lease."""
    holder = (await lease_holders(client))["kube-controller-manager"]
    for name in cluster.names():
        if holder == f"{socket.gethostname()}-{cluster.pid(f'server-{name}')}":
            return name
    raise AssertionError(f"no server holds the Lease: {holder!r}")


async def _loaded(
    cluster: HACluster,
    kill: Any,
    *,
    watchers: int,
    rate: float,
    before: float,
    after: float,
    until: Any = None,
) -> dict[str, Any]:
    """Run the write load and ``watchers`` watches through the API address; after
    ``before`` s call ``kill()`` (in a thread), then keep loading until ``until()`` (if
    given) is true and ``after`` s more; check what the load saw."""
    async with cluster.client() as client, cluster.client() as wa, cluster.client() as wb:
        load = await kit.prepare(client, keys=8)
        listed = await client.list("v1", "configmaps", namespace=kit.NAMESPACE)
        start = str(listed["metadata"]["resourceVersion"])
        watching = [kit.Watcher(start) for _ in range(watchers)]
        figures: dict[str, Any] = {}
        async with trio.open_nursery() as watches:
            for i, watcher in enumerate(watching):
                watches.start_soon(watcher.run, wa if i % 2 else wb)
            with trio.fail_after(60):
                for watcher in watching:
                    await watcher.established.wait()
            stop = trio.Event()
            async with trio.open_nursery() as loading:
                loading.start_soon(partial(kit.run_load, load, client, stop, rate=rate))
                await trio.sleep(before)
                acked_before = load.acked
                killed_at = trio.current_time()
                await trio.to_thread.run_sync(kill)
                with trio.fail_after(60):
                    while load.first_ack_after(killed_at) is None:
                        await trio.sleep(0.02)
                if until is not None:
                    figures.update(await until(client, killed_at))
                await trio.sleep(after)
                stop.set()
            await kit.retry(partial(kit.final_reads, load, client))
            lost = await kit.retry(partial(kit.lost_creates, load, client))
            bad_keys = kit.linearizable(load.history, load.init)
            newest = await _newest_revision(client)
            with trio.move_on_after(30):
                while any(w.last < newest and not w.expired for w in watching):
                    await trio.sleep(0.05)
            watches.cancel_scope.cancel()
    first_ack = load.first_ack_after(killed_at)
    assert first_ack is not None
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(load.acked_at)]
    return {
        "write_rate_before_kill": round(acked_before / before, 1),
        "acked_before_kill": acked_before,
        "acked_writes": load.acked,
        "unknown_outcome_writes": load.unknown_writes,
        "refused_writes": load.failed_writes,
        "acked_writes_lost": len(lost) + len(bad_keys),
        "lost_creates": lost[:20],
        "non_linearizable_keys": bad_keys,
        "ops_checked": sum(len(ops) for ops in load.history.values()),
        "api_recover_s": round(first_ack - killed_at, 3),
        "longest_ack_gap_s": round(max(gaps, default=0.0), 3),
        **figures,
        **(_watch_figures(watching, load, newest) if watchers else {}),
    }


async def _leases_taken(dead: str, client: Client, killed_at: float) -> dict[str, Any]:
    """Wait until each leader Lease has a holder other than ``dead``; how long it took."""
    taken: dict[str, float] = {}
    with trio.fail_after(60):
        while len(taken) < len(LEASES):
            try:
                held = await lease_holders(client)
            except (httpx.HTTPError, ClientError):
                held = {}
            for name, holder in held.items():
                if holder and holder != dead and name not in taken:
                    taken[name] = trio.current_time() - killed_at
            await trio.sleep(0.05)
    return {
        "controllers_failover_s": round(taken["kube-controller-manager"], 3),
        "scheduler_failover_s": round(taken["kube-scheduler"], 3),
        "failover_s": round(max(taken.values()), 3),
    }


async def leader_kill(
    cluster: HACluster,
    *,
    watchers: int = 0,
    rate: float = 200,
    before: float = 2.0,
    after: float = 1.0,
) -> dict[str, Any]:
    """kill -9 of the server holding the controllers' and scheduler's Leases during the
    write load. Figures: the load's, the time until each Lease has a live holder again
    (``failover_s``: the later of the two) and which server took over."""
    async with cluster.client() as client:
        victim = await leader_server(cluster, client)
    dead = f"{socket.gethostname()}-{cluster.pid(f'server-{victim}')}"
    figures = await _loaded(
        cluster,
        partial(cluster.kill, f"server-{victim}"),
        watchers=watchers,
        rate=rate,
        before=before,
        after=after,
        until=partial(_leases_taken, dead),
    )
    async with cluster.client() as client:
        figures["new_leader"] = await leader_server(cluster, client)
    figures["killed"] = victim
    return figures


async def server_moved(
    cluster: HACluster, *, watchers: int = 100, rate: float = 100, before: float = 2.0
) -> dict[str, Any]:
    """kill -9 of a server that is not the leader — the API address moves the
    connections it held to the others — with ``watchers`` watches open: each must
    resume without a gap, a duplicate or a reordering."""
    async with cluster.client() as client:
        leader = await leader_server(cluster, client)
    victim = next(name for name in cluster.names() if name != leader)
    figures = await _loaded(
        cluster,
        partial(cluster.kill, f"server-{victim}"),
        watchers=watchers,
        rate=rate,
        before=before,
        after=1.0,
    )
    figures["killed"] = victim
    return figures


async def etcd_member_kill(
    cluster: HACluster, *, rate: float = 200, before: float = 2.0
) -> dict[str, Any]:
    """kill -9 of etcd's raft leader during the write load; then ``kubetrio up`` starts
    it again and it catches up. Figures: the load's, and the member's return time."""
    member = await trio.to_thread.run_sync(cluster.etcd_leader)

    async def back(client: Client, killed_at: float) -> dict[str, Any]:
        await trio.sleep(2.0)  # writes go on with two members meanwhile
        restarted = trio.current_time()
        await trio.to_thread.run_sync(cluster.up)
        others = [name for name in cluster.names() if name != member]
        with trio.fail_after(60):
            while True:  # caught up: its revision reached the others' (serializable reads)
                try:
                    mine = await trio.to_thread.run_sync(cluster.etcd_revision, member)
                    theirs = await trio.to_thread.run_sync(cluster.etcd_revision, others[0])
                except (httpx.HTTPError, KeyError, ValueError):
                    mine, theirs = -1, 0
                if mine >= theirs > 0:
                    break
                await trio.sleep(0.05)
        return {"member_rejoin_s": round(trio.current_time() - restarted, 3)}

    figures = await _loaded(
        cluster,
        partial(cluster.kill, f"etcd-{member}"),
        watchers=0,
        rate=rate,
        before=before,
        after=1.0,
        until=back,
    )
    figures["killed_member"] = member
    figures["new_etcd_leader"] = await trio.to_thread.run_sync(cluster.etcd_leader)
    return figures


# -- partition ---------------------------------------------------------------------------


def _cgroup2_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup/unified`` on a v1 + v2
    hybrid host, ``/sys/fs/cgroup`` on a pure v2 one)."""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[2] == "cgroup2":
                return Path(fields[1])
    raise AssertionError("no cgroup v2 hierarchy mounted")


def _tcp_sockets(pid: int) -> list[tuple[str, int, str, int]]:
    """(local address, local port, remote address, remote port) of each IPv4 TCP socket
    ``pid`` holds: its fds' socket inodes looked up in its ``/proc/PID/net/tcp``."""
    inodes = set()
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])

    def address(text: str) -> tuple[str, int]:
        host, port = text.split(":")
        return socket.inet_ntoa(struct.pack("<I", int(host, 16))), int(port, 16)

    found = []
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            found.append((*address(fields[1]), *address(fields[2])))
    return found


class Partition:
    """Cut one server and its etcd member off from everything else, on the loopback of
    the one network namespace the whole cluster shares, with nftables — then heal.

    An nft table of this process's own (``inet kubetrio-chaos-<pid>``) drops, in the
    output hook (which on loopback sees each packet once, from its sender):

    * packets to or from the member's client and peer ports, the server's API port and
      any other port the two processes listen on (so nobody reaches them);
    * packets of sockets the two processes create from now on: both are moved into a
      cgroup v2 directory of our own, matched by ``socket cgroupv2 level 1``;
    * packets of the connections they already hold (e.g. the server's to the other
      members, the member's to its peers), by their exact address and port 4-tuple.

    :meth:`heal` deletes the table, moves the processes back to their cgroup and
    removes the directory; it is safe to call twice and after a partial :meth:`cut`.
    """

    def __init__(self, cluster: HACluster, member: str) -> None:
        self.cluster = cluster
        self.member = member
        self.table = f"kubetrio-chaos-{os.getpid()}"
        self.cgroup = _cgroup2_root() / self.table
        self.pids = [cluster.pid(f"server-{member}"), cluster.pid(f"etcd-{member}")]
        plan = cluster.plan()
        index = plan["servers"].index(member)
        self.ports = {plan[key][index] for key in ("client_ports", "peer_ports", "server_ports")}
        self.origins: dict[int, str] = {}

    def _nft(self, script: str) -> None:
        subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)

    def cut(self) -> None:
        """Start the partition."""
        self.cgroup.mkdir()
        # nft resolves the cgroup's path under /sys/fs/cgroup, whatever the v2 mount.
        path = os.path.relpath(self.cgroup, "/sys/fs/cgroup")
        listening = {
            lport for pid in self.pids for _, lport, _, rport in _tcp_sockets(pid) if rport == 0
        }
        ports = ", ".join(str(port) for port in sorted(self.ports | listening))
        self._nft(
            f"table inet {self.table} {{\n"
            "  set flows { type ipv4_addr . inet_service . ipv4_addr . inet_service; }\n"
            "  chain out {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    tcp dport {{ {ports} }} drop\n"
            f"    tcp sport {{ {ports} }} drop\n"
            f'    socket cgroupv2 level 1 "{path}" drop\n'
            "    ip saddr . tcp sport . ip daddr . tcp dport @flows drop\n"
            "  }\n"
            "}\n"
        )
        for pid in self.pids:
            origin = Path(f"/proc/{pid}/cgroup").read_text()
            self.origins[pid] = next(
                line[3:] for line in origin.splitlines() if line.startswith("0::")
            )
            (self.cgroup / "cgroup.procs").write_text(str(pid))
        # Listed after the move: a socket made in between is matched by its cgroup.
        flows = set()
        for pid in self.pids:
            for laddr, lport, raddr, rport in _tcp_sockets(pid):
                if rport:
                    flows.add(f"{laddr} . {lport} . {raddr} . {rport}")
                    flows.add(f"{raddr} . {rport} . {laddr} . {lport}")
        if flows:
            self._nft(f"add element inet {self.table} flows {{ {', '.join(sorted(flows))} }}\n")

    def heal(self) -> None:
        """End the partition (and undo whatever part of it was made)."""
        subprocess.run(["nft", "delete", "table", "inet", self.table], capture_output=True)
        root = _cgroup2_root()
        for pid, origin in self.origins.items():
            with contextlib.suppress(OSError):  # it ended meanwhile
                (root / origin.lstrip("/") / "cgroup.procs").write_text(str(pid))
        self.origins.clear()
        if self.cgroup.exists():
            self.cgroup.rmdir()

    def leftovers(self) -> list[str]:
        """What of the partition is still there (nothing, after :meth:`heal`)."""
        tables = subprocess.run(
            ["nft", "list", "tables"], capture_output=True, text=True, check=True
        ).stdout
        left = [f"nft table {self.table}"] if f"inet {self.table}\n" in tables + "\n" else []
        return left + ([str(self.cgroup)] if self.cgroup.exists() else [])


MARKER = "partition-marker"


async def _caught_up(cluster: HACluster, name: str, version: str) -> None:
    """Wait until server ``name``, asked directly, is ready and serves the marker
    ConfigMap at ``version`` (the write made while it was cut off)."""
    async with (
        httpx.AsyncClient(verify=cluster.context(), timeout=2) as http,
        cluster.client(cluster.server_url(name)) as direct,
    ):
        with trio.fail_after(120):
            while True:
                try:
                    ready = await http.get(cluster.server_url(name) + "/readyz")
                    if ready.status_code == 200:
                        with trio.fail_after(5):
                            got = await direct.get(
                                "v1", "configmaps", MARKER, namespace=kit.NAMESPACE
                            )
                        if got["metadata"]["resourceVersion"] == version:
                            return
                except (httpx.HTTPError, ClientError, trio.TooSlowError):
                    pass
                await trio.sleep(0.1)


async def partition(
    cluster: HACluster, *, seconds: float = 30.0, rate: float = 100, before: float = 2.0
) -> dict[str, Any]:
    """Cut the leader server and its etcd member off (:class:`Partition`) for ``seconds``
    during the write load, then heal. Figures: the load's (``api_recover_s``: the first
    write acknowledged after the cut), the Leases' failover, whether the cut-off server
    logged losing each Lease it held (its renew deadline passed without a renewal, so its
    controllers' guarded client refuses writes), and ``recover_s``: from the heal until
    it is ready and serves, asked directly, the newest write made while it was cut off."""
    async with cluster.client() as client:
        victim = await leader_server(cluster, client)
        dead = f"{socket.gethostname()}-{cluster.pid(f'server-{victim}')}"
        # The two Leases may be held by different servers (after earlier failovers).
        held = [lease for lease, holder in (await lease_holders(client)).items() if holder == dead]
    log = cluster.home / f"server-{victim}.log"
    logged = log.stat().st_size
    cut = Partition(cluster, victim)

    async def hold_then_heal(client: Client, cut_at: float) -> dict[str, Any]:
        # The Leases are read from another server directly: the load's pooled connections
        # through the API address include some to the cut-off server, which stall.
        other = next(name for name in cluster.names() if name != victim)
        async with cluster.client(cluster.server_url(other)) as direct:
            figures = await _leases_taken(dead, direct, cut_at)
        await trio.sleep_until(cut_at + seconds)
        marker = kit.configmap(MARKER, str(cut_at))
        try:
            await client.delete("v1", "configmaps", MARKER, namespace=kit.NAMESPACE)
        except ClientError as exc:
            if exc.code != 404:
                raise
        made = await client.create("v1", "configmaps", marker, namespace=kit.NAMESPACE)
        await trio.to_thread.run_sync(cut.heal)
        healed = trio.current_time()
        await _caught_up(cluster, victim, str(made["metadata"]["resourceVersion"]))
        figures["recover_s"] = round(trio.current_time() - healed, 3)
        figures["partitioned_s"] = round(healed - cut_at, 3)
        return figures

    try:
        figures = await _loaded(
            cluster, cut.cut, watchers=0, rate=rate, before=before, after=1.0, until=hold_then_heal
        )
    finally:
        cut.heal()
    figures["leftovers"] = cut.leftovers()
    figures["held"] = held
    with log.open(errors="replace") as text:
        text.seek(logged)
        since = text.read()
    figures["stepped_down"] = [
        lease for lease in LEASES if f"{dead} lost leadership of kube-system/{lease}" in since
    ]
    async with cluster.client() as client:
        figures["new_leader"] = await leader_server(cluster, client)
    figures["partitioned"] = victim
    return figures
