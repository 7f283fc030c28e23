"""kubectl 1.33 end to end: rollout status/history/undo, scale, pause/resume, describe, delete."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio

from kubetrio.apiserver import merge_kubeconfig

from .conftest import Cluster

KUBECTL = Path(os.path.realpath(shutil.which("kubectl") or "kubectl")).parent / "kubectl.1.33"

pytestmark = pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl.1.33 not installed")

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: nginx:1.25
"""


class Kubectl:
    def __init__(self, kubeconfig: Path, home: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}
        self.home = home

    async def __call__(self, *args: str, stdin: bytes = b"", check: bool = True) -> str:
        with trio.fail_after(60):
            result = await trio.run_process(
                [str(KUBECTL), f"--cache-dir={self.home}/cache", *args],
                stdin=stdin,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=self.env,
            )
        out = result.stdout.decode() + result.stderr.decode()
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{out}"
        return out


@pytest.fixture
def kubectl(cluster: Cluster, tmp_path: Path) -> Kubectl:
    path = tmp_path / "kubeconfig"
    merge_kubeconfig(path, name="test", server=cluster.server.url, token="test-token")
    return Kubectl(path, tmp_path)


async def test_rollout_status_history_undo(cluster: Cluster, kubectl: Kubectl) -> None:
    with trio.fail_after(120):
        assert "deployment.apps/web created" in await kubectl(
            "apply", "-f", "-", stdin=MANIFEST.encode()
        )
        out = await kubectl("rollout", "status", "deployment/web", "--timeout=60s")
        assert 'deployment "web" successfully rolled out' in out
        await kubectl("annotate", "deployment/web", "kubernetes.io/change-cause=to 1.26")
        await kubectl("set", "image", "deployment/web", "main=nginx:1.26")
        out = await kubectl("rollout", "status", "deployment/web", "--timeout=60s")
        assert "successfully rolled out" in out
        history = await kubectl("rollout", "history", "deployment/web")
        rows = [line.split() for line in history.splitlines() if line[:1].isdigit()]
        assert [r[0] for r in rows] == ["1", "2"]
        assert "to 1.26" in history
        detail = await kubectl("rollout", "history", "deployment/web", "--revision=1")
        assert "nginx:1.25" in detail

        out = await kubectl("rollout", "undo", "deployment/web")
        assert "rolled back" in out
        out = await kubectl("rollout", "status", "deployment/web", "--timeout=60s")
        assert "successfully rolled out" in out
        image = await kubectl(
            "get", "deployment/web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"
        )
        assert image == "nginx:1.25"
        history = await kubectl("rollout", "history", "deployment/web")
        assert [line.split()[0] for line in history.splitlines() if line[:1].isdigit()] == [
            "2",
            "3",
        ]
        pods = await kubectl(
            "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}"
        )
        assert pods.split() == ["nginx:1.25"] * 3

        await kubectl("scale", "deployment/web", "--replicas=5")
        await kubectl("rollout", "status", "deployment/web", "--timeout=60s")
        ready = await kubectl("get", "deployment/web", "-o", "jsonpath={.status.readyReplicas}")
        assert ready == "5"

        await kubectl("rollout", "pause", "deployment/web")
        await kubectl("set", "image", "deployment/web", "main=nginx:1.27")
        await trio.sleep(1)
        rs_count = await kubectl("get", "rs", "-o", "name")
        assert len(rs_count.split()) == 2  # paused: no new ReplicaSet
        await kubectl("rollout", "resume", "deployment/web")
        out = await kubectl("rollout", "status", "deployment/web", "--timeout=60s")
        assert "successfully rolled out" in out

        described = await kubectl("describe", "deployment/web")
        assert "ScalingReplicaSet" in described
        assert "NewReplicaSetAvailable" in described

        out = await kubectl("delete", "deployment/web", "--cascade=foreground", "--timeout=60s")
        assert 'deployment.apps "web" deleted' in out
        left = await kubectl("get", "rs,pods", "-o", "name")
        assert left.strip() == "" or "No resources found" in left


async def test_rollout_status_reports_deadline_exceeded(cluster: Cluster, kubectl: Kubectl) -> None:
    """Pods that never become ready: the progress deadline fails `rollout status`."""
    stuck = MANIFEST.replace("name: web", "name: stuck").replace("app: web", "app: stuck")
    stuck = stuck.replace("replicas: 3", "replicas: 2\n  progressDeadlineSeconds: 2")
    stuck = stuck.replace("image: nginx:1.25", "image: nginx:1.25\n      nodeName: no-such-node")
    with trio.fail_after(60):
        await kubectl("apply", "-f", "-", stdin=stuck.encode())
        out = await kubectl("rollout", "status", "deployment/stuck", "--timeout=30s", check=False)
        assert "exceeded its progress deadline" in out


SETS = """\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  replicas: 2
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: db:1
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: agent:1
"""


async def test_rollout_of_statefulset_and_daemonset(cluster: Cluster, kubectl: Kubectl) -> None:
    with trio.fail_after(120):
        await kubectl("apply", "-f", "-", stdin=SETS.encode())
        for target in ("statefulset/db", "daemonset/agent"):
            out = await kubectl("rollout", "status", target, "--timeout=60s")
            assert "complete" in out or "successfully" in out, out
        await kubectl("set", "image", "statefulset/db", "db=db:2")
        await kubectl("set", "image", "daemonset/agent", "agent=agent:2")
        for target in ("statefulset/db", "daemonset/agent"):
            out = await kubectl("rollout", "status", target, "--timeout=60s")
            assert "complete" in out or "successfully" in out, out
        history = await kubectl("rollout", "history", "statefulset/db")
        assert [line.split()[0] for line in history.splitlines() if line[:1].isdigit()] == [
            "1",
            "2",
        ]
        images = await kubectl(
            "get", "pods", "-l", "app=db", "-o", "jsonpath={.items[*].spec.containers[0].image}"
        )
        assert images.split() == ["db:2", "db:2"]
