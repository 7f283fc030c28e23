"""Fixtures of the client compatibility suite: one real cluster, a namespace per test.

The helpers live in ``kit.py`` (``from tests.compat.kit import ...``).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.kit import KUBETRIO, CompatCluster, free_port, needs
from tests.kit import wait_until

METRIC_RESOLUTION = HPA_SYNC_PERIOD = 5.0
"""Seconds between the cluster's metric scrapes and between its HPA reconciles."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here runs against a real runc node: mark them root and runc. Modules
    that restart the shared cluster (``RESTARTS_CLUSTER = True``) run after all others."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.root)
            item.add_marker(pytest.mark.runc)
    items.sort(key=lambda item: bool(getattr(getattr(item, "module", None), "RESTARTS_CLUSTER", 0)))


# Package scope (this folder is a package for it): the cluster is gone before the tests
# after this folder start their own real nodes.
@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatCluster]:
    """``kubetrio up`` in a temporary folder; ``kubetrio down --delete-data`` afterwards."""
    reason = needs()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("compat")
    name = f"compat-{os.getpid()}"
    port = free_port()
    running = CompatCluster(
        name=name,
        data_dir=base / "data",
        kubeconfig=base / "kubeconfig",
        server=f"https://127.0.0.1:{port}",
        cache_dir=base / "kube-cache",
    )
    running.env = {**os.environ, "KUBECONFIG": str(running.kubeconfig), "HOME": str(base)}
    up = subprocess.run(
        [
            str(KUBETRIO),
            "up",
            "--name",
            name,
            "--port",
            str(port),
            "--registry-port",
            str(free_port()),
            "--data-dir",
            str(running.data_dir),
            "--kubeconfig",
            str(running.kubeconfig),
            # kubectl top and the HPA react within seconds, not upstream's 15 s rounds
            # (what upstream's e2e clusters do too); what they show is the same.
            "--metric-resolution",
            str(METRIC_RESOLUTION),
            "--horizontal-pod-autoscaler-sync-period",
            str(HPA_SYNC_PERIOD),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if up.returncode != 0:
        raise AssertionError(f"kubetrio up failed:\n{up.stdout}\n{up.stderr}")
    try:
        wait_until(
            lambda: (
                "Ready" in running.kubectl("get", "nodes", check=False).stdout
                and " Ready" in running.kubectl("get", "nodes", check=False).stdout
            ),
            timeout=60,
            what="the node to be Ready",
        )
        wait_until(
            lambda: (
                running.kubectl("get", "serviceaccount", "default", check=False).returncode == 0
            ),
            timeout=30,
            what="the default ServiceAccount",
        )
        yield running
        _check_server_survived(running)
    finally:
        subprocess.run(
            [
                str(KUBETRIO),
                "down",
                "--name",
                name,
                "--data-dir",
                str(running.data_dir),
                "--delete-data",
            ],
            capture_output=True,
            timeout=120,
        )


def _check_server_survived(running: CompatCluster) -> None:
    """Fail the suite's teardown, with the end of the server's log, when the cluster's
    server process died during the tests (the errors it causes name only a refused
    connection)."""
    pid_file = running.data_dir / "server.pid"
    pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else 0
    if pid and Path(f"/proc/{pid}").exists():
        return
    log = running.data_dir / "server.log"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-80:]) if log.exists() else ""
    raise AssertionError(f"the cluster's server (pid {pid}) died during the tests:\n{tail}")


@pytest.fixture
def namespace(cluster: CompatCluster) -> Iterator[str]:
    """A namespace of the test's own, deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    wait_until(
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        timeout=30,
        what=f"the default ServiceAccount in {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
