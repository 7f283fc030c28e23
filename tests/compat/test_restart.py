"""Clients across a server restart: the official client's informer reconnects and converges.

The session's cluster is stopped (``kubetrio down`` keeping its data) and started again on
the same port and data directory; ``conftest.py`` runs this module last
(``RESTARTS_CLUSTER``) so no other test sees the restart.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from tests.compat.kit import KUBETRIO, CompatCluster, free_port, recording_informer
from tests.kit import wait_until

RESTARTS_CLUSTER = True


def restart(cluster: CompatCluster) -> None:
    """``kubetrio down`` (data kept) then ``kubetrio up`` with the same port and data."""
    down = subprocess.run(
        [str(KUBETRIO), "down", "--name", cluster.name, "--data-dir", str(cluster.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    port = cluster.server.rsplit(":", 1)[1]
    up = subprocess.run(
        [
            str(KUBETRIO),
            "up",
            "--name",
            cluster.name,
            "--port",
            port,
            "--registry-port",
            str(free_port()),
            "--data-dir",
            str(cluster.data_dir),
            "--kubeconfig",
            str(cluster.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"


@pytest.fixture
def core(cluster: CompatCluster) -> Iterator[client.CoreV1Api]:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api_client:
        yield client.CoreV1Api(api_client)


def test_informer_converges_after_a_server_restart(
    cluster: CompatCluster, namespace: str, core: client.CoreV1Api
) -> None:
    informer, events = recording_informer(core, namespace)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "before"}})
    informer.start()
    try:
        wait_until(lambda: ("ADDED", "before") in events, timeout=30, what="the initial list")
        restart(cluster)
        # Writes once the server is back (the first ones may race its start).
        wait_until(
            lambda: core.create_namespaced_config_map(namespace, {"metadata": {"name": "after"}}),
            timeout=60,
            what="the restarted server to accept a create",
        )
        core.delete_namespaced_config_map("before", namespace)
        wait_until(
            lambda: {("ADDED", "after"), ("DELETED", "before")} <= set(events),
            timeout=60,
            what=f"the informer to see the writes after the restart (so far {events})",
        )
        wait_until(
            lambda: (
                {
                    obj.metadata.name if hasattr(obj, "metadata") else obj["metadata"]["name"]
                    for obj in informer.cache.list()
                }
                - {"kube-root-ca.crt"}
                == {"after"}
            ),
            timeout=30,
            what="the informer's cache to converge",
        )
    finally:
        informer.stop()
    assert cluster.kubectl("get", "nodes").returncode == 0
