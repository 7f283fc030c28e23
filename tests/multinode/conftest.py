"""A real 3-node local cluster, made by ``kubetrio up --nodes 3`` and driven with kubectl.

Each node is a network namespace on an underlay bridge running a real node agent (the
first one also the API server, controllers, scheduler and cluster DNS); pods run under
runc from the local registry's busybox. The cluster lives in a temporary HOME so it
cannot touch the user's clusters, and ``kubetrio down`` removes it afterwards — the
fixture then checks that no namespace, link or process of it is left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubetrio.cli._nodes import Topology
from kubetrio.images import free_loopback_port

pytestmark = [pytest.mark.root, pytest.mark.runc]

KUBETRIO = [sys.executable, "-m", "kubetrio"]
NODES = 3
BIRD_RUN_DIR = Path("/run/kubetrio/bird")
UNDERLAYS = {"vxlan": "172.31.210.0/24", "ipip": "172.31.211.0/24", "bgp": "172.31.212.0/24"}
"""One underlay per mode, so a cluster's leftovers could never meet the next one's."""


def needs_root() -> None:
    if os.geteuid() != 0 or not shutil.which("runc") or not shutil.which("docker-registry"):
        pytest.skip("needs root, runc and docker-registry")


@dataclass
class LocalCluster:
    """A running ``kubetrio up --nodes 3`` cluster and ways to reach into it."""

    name: str
    mode: str
    env: dict[str, str]
    kubeconfig: Path
    topology: Topology

    def run_kubectl(
        self, *args: str, timeout: float = 90, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the cluster; whatever its exit status."""
        return subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def kubectl(self, *args: str, timeout: float = 90, check: bool = True) -> str:
        """Run kubectl against the cluster; return stdout (raise with stderr on failure)."""
        result = self.run_kubectl(*args, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}{result.stdout}")
        return result.stdout

    def get(self, *args: str) -> Any:
        """``kubectl get ... -o json``, decoded."""
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def node(self, index: int) -> str:
        """The name of node ``index`` (1-based, as in the topology)."""
        return self.topology.nodes[index - 1].name

    def node_ip(self, index: int) -> str:
        return self.topology.nodes[index - 1].address

    def in_node(
        self, index: int, *command: str, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in node ``index``'s network namespace (as that machine would)."""
        netns = self.topology.nodes[index - 1].netns
        return subprocess.run(
            ["ip", "netns", "exec", netns, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def fetch_from_pod(self, pod: str, url: str, *, timeout: int = 5) -> str:
        """What ``pod`` gets for ``url`` (busybox wget inside the pod, via kubectl exec)."""
        # busybox wget's own -T option crashes (Debian's busybox 1.35): use timeout(1).
        script = f"timeout {timeout} wget -q -O /tmp/fetched {url} && cat /tmp/fetched"
        return self.kubectl("exec", pod, "--", "sh", "-c", script).strip()

    def reaches(self, pod: str, url: str, *, timeout: int = 3) -> bool:
        """Whether ``pod`` gets an answer from ``url`` within ``timeout`` seconds."""
        script = f"timeout {timeout} wget -q -O /dev/null {url}"
        result = self.run_kubectl("exec", pod, "--", "sh", "-c", script, timeout=timeout + 30)
        return result.returncode == 0

    def fetch_many(self, pod: str, url: str, count: int) -> list[str]:
        """``count`` fetches of ``url`` from ``pod``, each a new connection; the bodies."""
        script = f"for i in $(seq {count}); do timeout 5 wget -q -O - {url}; done"
        return self.kubectl("exec", pod, "--", "sh", "-c", script).split()

    def apply(self, *manifests: dict[str, Any]) -> None:
        """``kubectl apply`` the manifests."""
        listed = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
        result = self.run_kubectl("apply", "-f", "-", stdin=json.dumps(listed))
        assert result.returncode == 0, result.stderr

    def fetch_from_node(self, index: int, url: str) -> str:
        """What node ``index`` itself gets for ``url``."""
        result = self.in_node(index, "busybox", "wget", "-q", "-O", "-", url)
        assert result.returncode == 0, f"node {index} → {url}: {result.stderr}"
        return result.stdout.strip()

    def run_pods(
        self, pods: dict[str, int], *, labels: dict[str, str] | None = None
    ) -> dict[str, str]:
        """Create busybox pods serving their own name on :8080, pinned to nodes; wait for
        them to be Ready; return pod name → pod IP."""
        for name, index in pods.items():
            manifest = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels or {"app": name}},
                "spec": {
                    "nodeName": self.node(index),
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web",
                        "image": "busybox",
                        # Ready while /tmp/ready exists: a test removes it to fail the probe.
                        "command": ["sh", "-c", "echo $HOSTNAME > /tmp/index.html; "
                                    "echo ok > /tmp/ready; exec httpd -f -p 8080 -h /tmp"],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                                           "periodSeconds": 1, "failureThreshold": 1},
                    }],
                },
            }  # fmt: skip
            self.apply(manifest)
        self.kubectl("wait", "--for=condition=Ready", "--timeout=90s", *(f"pod/{p}" for p in pods))
        return {
            item["metadata"]["name"]: item["status"]["podIP"]
            for item in self.get("pods")["items"]
            if item["metadata"]["name"] in pods
        }


def _leftovers(topology: Topology) -> list[str]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found = [node.netns for node in topology.nodes if node.netns in netns]
    found += [
        name for name in [topology.bridge] + [n.veth for n in topology.nodes] if f" {name}" in links
    ]
    # BGP mode's bird keeps its config and socket here while it runs.
    found += [str(path) for n in topology.nodes if (path := BIRD_RUN_DIR / n.name).exists()]
    return found


@contextmanager
def running_cluster(mode: str, home: Path) -> Iterator[LocalCluster]:
    """``kubetrio up --nodes 3 --mode MODE`` in a HOME of its own; ``down`` afterwards,
    then check that none of its namespaces, links or bridge remain."""
    needs_root()
    name = f"mn{mode}"
    env = {**os.environ, "HOME": str(home)}
    kubeconfig = home / "kubeconfig"
    topology = Topology.plan(name, NODES, UNDERLAYS[mode])
    try:
        up = subprocess.run(
            [*KUBETRIO, "up", "--name", name, "--nodes", str(NODES), "--mode", mode,
             "--underlay", UNDERLAYS[mode], "--registry-port", str(free_loopback_port()),
             "--kubeconfig", str(kubeconfig)],
            env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        yield LocalCluster(name, mode, env, kubeconfig, topology)
    finally:
        down = subprocess.run(
            [*KUBETRIO, "down", "--name", name],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        deadline = time.monotonic() + 10
        while _leftovers(topology) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not _leftovers(topology), f"left behind: {_leftovers(topology)}"
