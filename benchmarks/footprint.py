"""Start-up and footprint: `kubetrio up` to Ready, and the idle memory of server and agents.

Runs the real CLI (``python -m kubetrio up``) with a temporary data directory, kubeconfig
and registry port, real runc nodes: a single-node cluster, then ``--nodes 3`` (network
namespaces on an underlay bridge of its own). For each it measures the wall time from
starting ``up`` until every Node is Ready, lets the cluster idle, and sums the RSS of
each process tree: the server (API server, controllers, scheduler, DNS and the first
node's agent, with the nginx it runs for Ingresses) and each further agent. The local
registry ``up`` starts is reported apart (k3s has none). Then ``kubetrio down`` stops
everything; whatever survives is killed by PID, and the temporary files are removed.

The reference is k3s's published figures (docs.k3s.io, resource profiling and
requirements): server ≈ 1.6 GB, agent ≈ 275 MB, about 50 s from start to a Ready node.
Ratios are k3s / kubetrio (above 1: kubetrio is smaller or faster). RSS sums count pages
shared between processes of a tree more than once, so they are an upper bound.

Run as root, one at a time with other node tests:
``flock /tmp/kubetrio-node.lock python benchmarks/footprint.py [--settle 30]``.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubetrio.images import free_loopback_port

K3S_SERVER_MB = 1600.0
K3S_AGENT_MB = 275.0
K3S_READY_S = 50.0
UNDERLAY = "172.31.220.0/24"
"""The 3-node cluster's bridge network (not one the test suite uses)."""
KUBETRIO = [sys.executable, "-m", "kubetrio"]


def _children() -> dict[int, list[int]]:
    """Parent PID → child PIDs of every process now."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name may hold spaces and parentheses: the fields after the
            # last ')' are fixed (state, then the parent PID).
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children = _children()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss_mb(pid: int) -> float:
    """Sum of the RSS of ``pid``'s process tree, in MB."""
    return sum(rss_mb(p) for p in tree_pids(pid))


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def nodes_ready(kubeconfig: Path, count: int) -> bool:
    """Whether ``count`` Nodes exist and all are Ready (kubectl, as a user would ask)."""
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", "get", "nodes", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        return False
    items = json.loads(result.stdout).get("items") or []
    ready = [
        node
        for node in items
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (node.get("status") or {}).get("conditions") or []
        )
    ]
    return len(items) == count and len(ready) == count


def measure(nodes: int, settle: float, port: int) -> dict[str, object]:
    """Start a cluster of ``nodes``, time it to Ready, measure idle RSS, stop it."""
    name = f"footprint{nodes}"
    work = Path(tempfile.mkdtemp(prefix=f"kubetrio-{name}-"))
    home, kubeconfig = work / "cluster", work / "kubeconfig"
    env = {**os.environ, "HOME": str(work)}  # nothing of the user's is touched
    command = [
        *KUBETRIO, "up", "--name", name, "--data-dir", str(home), "--kubeconfig",
        str(kubeconfig), "--port", str(port), "--registry-port", str(free_loopback_port()),
        "--nodes", str(nodes), "--ingress-http-port", "18080", "--ingress-https-port", "18443",
    ]  # fmt: skip
    if nodes > 1:
        command += ["--underlay", UNDERLAY]
    result: dict[str, object] = {"nodes": nodes}
    pids: list[int] = []
    try:
        started = time.perf_counter()
        up = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        up_returned = time.perf_counter() - started
        if up.returncode != 0:
            raise RuntimeError(f"kubetrio up failed:\n{up.stdout}{up.stderr}")
        deadline = time.monotonic() + 300
        while not nodes_ready(kubeconfig, nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{nodes} nodes not Ready after 300 s")
            time.sleep(0.1)
        ready = time.perf_counter() - started
        result["up_returned_s"] = round(up_returned, 2)
        result["ready_s"] = round(ready, 2)
        print(f"{nodes} node(s): `kubetrio up` returned after {up_returned:.1f} s, "
              f"all Ready after {ready:.1f} s")  # fmt: skip
        time.sleep(settle)
        server = read_pid(home / "server.pid")
        agents = [p for f in sorted(home.glob("agent-*.pid")) if (p := read_pid(f))]
        registry = read_pid(home / "registry.pid")
        if server is None:
            raise RuntimeError("the server is not running")
        pids = [server, *agents, *([registry] if registry else [])]
        server_mb = tree_rss_mb(server)
        agent_mb = [round(tree_rss_mb(a), 1) for a in agents]
        registry_mb = tree_rss_mb(registry) if registry else 0.0
        result["server_rss_mb"] = round(server_mb, 1)
        result["server_processes"] = len(tree_pids(server))
        result["agent_rss_mb"] = agent_mb
        result["registry_rss_mb"] = round(registry_mb, 1)
        print(f"  idle after {settle:.0f} s: server tree {server_mb:.0f} MB "
              f"({result['server_processes']} processes, with node 1's agent), "
              f"agents {', '.join(f'{a:.0f} MB' for a in agent_mb) or 'none (in the server)'}, "
              f"registry {registry_mb:.0f} MB")  # fmt: skip
    finally:
        down = subprocess.run(
            [*KUBETRIO, "down", "--name", name, "--data-dir", str(home)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if down.returncode != 0:
            print(f"kubetrio down failed: {down.stdout}{down.stderr}", file=sys.stderr)
        for pid in pids:  # anything `down` left behind, by PID
            for p in tree_pids(pid) if Path(f"/proc/{pid}").exists() else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=30.0, help="idle seconds before RSS")
    parser.add_argument("--port", type=int, default=16443, help="the API server's port")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("footprint.py needs root (runc nodes, network namespaces)")
    print(f"k3s published: server ~{K3S_SERVER_MB:.0f} MB, agent ~{K3S_AGENT_MB:.0f} MB, "
          f"~{K3S_READY_S:.0f} s to a Ready node")  # fmt: skip
    single = measure(1, args.settle, args.port)
    multi = measure(3, args.settle, args.port)
    agents = multi["agent_rss_mb"]
    assert isinstance(agents, list)
    agent_mb = max(agents) if agents else 0.0
    summary: dict[str, object] = {
        "bench": "footprint",
        "ready_s_1_node": single["ready_s"],
        "ready_s_3_nodes": multi["ready_s"],
        "server_rss_mb_1_node": single["server_rss_mb"],
        "server_rss_mb_3_nodes": multi["server_rss_mb"],
        "agent_rss_mb_3_nodes": agents,
        "registry_rss_mb": single["registry_rss_mb"],
        "k3s_server_mb": K3S_SERVER_MB,
        "k3s_agent_mb": K3S_AGENT_MB,
        "k3s_ready_s": K3S_READY_S,
    }
    ratios = {
        "ready_ratio_1_node": K3S_READY_S / float(single["ready_s"]),  # type: ignore[arg-type]
        "ready_ratio_3_nodes": K3S_READY_S / float(multi["ready_s"]),  # type: ignore[arg-type]
        "server_ratio": K3S_SERVER_MB / float(single["server_rss_mb"]),  # type: ignore[arg-type]
        "agent_ratio": K3S_AGENT_MB / agent_mb if agent_mb else 0.0,
    }
    print(f"ratios (k3s / kubetrio): Ready {ratios['ready_ratio_1_node']:.1f}x (1 node), "
          f"{ratios['ready_ratio_3_nodes']:.1f}x (3 nodes); server memory "
          f"{ratios['server_ratio']:.1f}x; agent memory {ratios['agent_ratio']:.1f}x")  # fmt: skip
    summary.update({k: round(v, 2) for k, v in ratios.items()})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
