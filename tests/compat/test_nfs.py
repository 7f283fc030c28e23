"""``nfs:`` volumes on a real node as kubectl 1.27/1.33 see them: a static PersistentVolume
with ``spec.nfs`` binds to a claim through the PV controller, a pod writes into the share
through an inline ``nfs:`` volume and another reads it through the claim; a share that
cannot be mounted shows as ``ContainerCreating`` with kubelet's ``FailedMount`` event in
``kubectl describe``. The server is nfs-ganesha on a loopback address of its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.kit import CompatCluster
from tests.kit import wait_until
from tests.kit.nfs import free_loopback, ganesha, ganesha_missing


@pytest.fixture
def nfs_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    if missing := ganesha_missing():
        pytest.skip(missing)
    with ganesha(tmp_path / "nfs") as served:
        yield served


def pod_yaml(name: str, command: str, volume: str) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", {json.dumps(command)}]
    volumeMounts:
    - name: share
      mountPath: /data
  volumes:
  - name: share
{volume}
"""


def phase(cluster: CompatCluster, namespace: str, kind: str, name: str) -> str:
    ns = ["-n", namespace] if kind != "pv" else []
    got = cluster.kubectl("get", kind, name, *ns, "-o", "jsonpath={.status.phase}", check=False)
    return got.stdout if got.returncode == 0 else ""


def finished(cluster: CompatCluster, namespace: str, name: str) -> None:
    wait_until(
        lambda: phase(cluster, namespace, "pod", name) in ("Succeeded", "Failed"),
        timeout=90,
        what=f"pod {name} to finish",
    )
    assert phase(cluster, namespace, "pod", name) == "Succeeded", cluster.kubectl(
        "describe", "pod", name, "-n", namespace
    ).stdout


def test_nfs_share_through_an_inline_volume_and_a_bound_pv(
    nfs_server: tuple[str, Path], cluster: CompatCluster, namespace: str
) -> None:
    address, export = nfs_server
    n = ["-n", namespace]
    pv = f"nfs-{namespace}"
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: v1
kind: PersistentVolume
metadata:
  name: {pv}
spec:
  capacity:
    storage: 1Gi
  accessModes: [ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  nfs:
    server: {address}
    path: /export
""",
    )
    try:
        cluster.kubectl(
            "apply",
            *n,
            "-f",
            "-",
            input=f"""
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: shared
spec:
  accessModes: [ReadWriteMany]
  storageClassName: ""
  volumeName: {pv}
  resources:
    requests:
      storage: 1Gi
""",
        )
        wait_until(
            lambda: phase(cluster, namespace, "pvc", "shared") == "Bound",
            timeout=60,
            what="the nfs claim to be Bound",
        )
        row = cluster.kubectl("get", "pv", pv, version="1.33").stdout.splitlines()[1].split()
        assert row[1:6] == ["1Gi", "RWX", "Retain", "Bound", f"{namespace}/shared"]

        inline = f"    nfs:\n      server: {address}\n      path: /export\n"
        cluster.kubectl(
            "apply",
            *n,
            "-f",
            "-",
            input=pod_yaml("writer", "echo from-the-writer > /data/msg", inline),
        )
        finished(cluster, namespace, "writer")
        assert (export / "msg").read_text() == "from-the-writer\n"

        claim = "    persistentVolumeClaim:\n      claimName: shared\n"
        cluster.kubectl("apply", *n, "-f", "-", input=pod_yaml("reader", "cat /data/msg", claim))
        finished(cluster, namespace, "reader")
        for version in ("1.27", "1.33"):
            logs = cluster.kubectl("logs", "reader", *n, version=version).stdout
            assert logs.strip() == "from-the-writer"
        cluster.kubectl("delete", "pod", "writer", "reader", *n)
        cluster.kubectl("delete", "pvc", "shared", *n)
    finally:
        cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)


def test_unreachable_nfs_server_shows_failed_mount_in_describe(
    cluster: CompatCluster, namespace: str
) -> None:
    if missing := ganesha_missing():
        pytest.skip(missing)
    n = ["-n", namespace]
    server = free_loopback()
    inline = f"    nfs:\n      server: {server}\n      path: /export\n"
    cluster.kubectl("apply", *n, "-f", "-", input=pod_yaml("stuck", "true", inline))

    def described() -> str:
        return cluster.kubectl("describe", "pod", "stuck", *n, version="1.33").stdout

    wait_until(lambda: "FailedMount" in described(), timeout=60, what="a FailedMount event")
    text = described()
    assert 'MountVolume.SetUp failed for volume "share" : mount failed: exit status 32' in text
    assert f"connecting to {server}:2049: Connection refused" in text
    table = cluster.kubectl("get", "pod", "stuck", *n).stdout.splitlines()
    assert table[1].split()[1:3] == ["0/1", "ContainerCreating"]
    cluster.kubectl("delete", "pod", "stuck", *n)
