"""Garbage collection as clients drive it: kubectl ``--cascade`` and the Python client's
``propagation_policy``, with owners of built-in kinds and of a CRD's kind.

Upstream semantics checked here: Background (the owner goes at once, its dependents
after it), Foreground (the owner stays visible with a deletionTimestamp and the
``foregroundDeletion`` finalizer until its blocking dependents are gone), Orphan (the
dependents stay, without the reference), dangling references (an owner that never
existed, or exists with another uid).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from tests.compat.kit import CompatCluster
from tests.kit import crd as crd_manifest
from tests.kit import wait_until

GROUP = "gc.compat.kubetrio.io"
HOLD = "compat.kubetrio.io/hold"


@pytest.fixture
def api(cluster: CompatCluster) -> Iterator[k8s.ApiClient]:
    """The official Python client, configured from the cluster's kubeconfig."""
    client = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="module")
def crd(cluster: CompatCluster) -> Iterator[str]:
    """A namespaced CRD ``owners.<GROUP>`` (kind Owner), created after the cluster started."""
    plural = f"owners{uuid.uuid4().hex[:6]}"
    name = f"{plural}.{GROUP}"
    manifest = crd_manifest(GROUP, plural, "Owner", singular=plural[:-1])
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    cluster.kubectl("wait", "--for=condition=established", f"crd/{name}", "--timeout=30s")
    yield plural
    cluster.kubectl("delete", "crd", name, "--wait=false", check=False)


def _get(cluster: CompatCluster, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def _configmap(
    cluster: CompatCluster,
    namespace: str,
    name: str,
    owner: dict[str, Any] | None = None,
    *,
    block: bool = False,
    hold: bool = False,
) -> dict[str, Any]:
    """Create a ConfigMap (owned by ``owner``; ``hold``: with a finalizer of ours)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "blockOwnerDeletion": block,
            }
        ]
    if hold:
        metadata["finalizers"] = [HOLD]
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"k": "v"}}
    out = cluster.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(manifest)).stdout
    created: dict[str, Any] = json.loads(out)
    return created


def _release(cluster: CompatCluster, namespace: str, name: str) -> None:
    cluster.kubectl(
        "patch", "configmap", name, "-n", namespace, "--type=merge", "-p",
        '{"metadata":{"finalizers":null}}',
    )  # fmt: skip


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_kubectl_cascade_background(cluster: CompatCluster, namespace: str, version: str) -> None:
    owner = _configmap(cluster, namespace, "owner")
    _configmap(cluster, namespace, "dep", owner)
    _configmap(cluster, namespace, "dep-blocking", owner, block=True)
    cluster.kubectl(
        "delete", "configmap", "owner", "-n", namespace, "--cascade=background", version=version
    )
    assert _get(cluster, namespace, "configmap", "owner") is None  # gone at once
    for name in ("dep", "dep-blocking"):
        wait_until(
            lambda name=name: _get(cluster, namespace, "configmap", name) is None,
            what=f"{name} to be collected",
        )


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_kubectl_cascade_foreground(cluster: CompatCluster, namespace: str, version: str) -> None:
    owner = _configmap(cluster, namespace, "owner")
    _configmap(cluster, namespace, "held", owner, block=True, hold=True)
    _configmap(cluster, namespace, "free", owner)
    cluster.kubectl(
        "delete", "configmap", "owner", "-n", namespace, "--cascade=foreground", "--wait=false",
        version=version,
    )  # fmt: skip

    def held_marked() -> bool:
        held = _get(cluster, namespace, "configmap", "held")
        return bool(held and held["metadata"].get("deletionTimestamp"))

    wait_until(held_marked, what="the blocking dependent to be deleted")
    wait_until(
        lambda: _get(cluster, namespace, "configmap", "free") is None,
        what="the non-blocking dependent to be collected",
    )
    # The blocking dependent stays (our finalizer): the owner stays visible, deleting.
    waiting = _get(cluster, namespace, "configmap", "owner")
    assert waiting is not None
    assert waiting["metadata"].get("deletionTimestamp")
    assert "foregroundDeletion" in waiting["metadata"]["finalizers"]
    _release(cluster, namespace, "held")
    wait_until(
        lambda: _get(cluster, namespace, "configmap", "owner") is None,
        what="the owner to go once its blocking dependent went",
    )
    # Waiting kubectl: returns once the owner, hence every blocking dependent, is gone.
    owner = _configmap(cluster, namespace, "owner2")
    _configmap(cluster, namespace, "dep2", owner, block=True)
    cluster.kubectl(
        "delete", "configmap", "owner2", "-n", namespace, "--cascade=foreground",
        "--timeout=60s", version=version,
    )  # fmt: skip
    assert _get(cluster, namespace, "configmap", "dep2") is None


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_kubectl_cascade_orphan(cluster: CompatCluster, namespace: str, version: str) -> None:
    owner = _configmap(cluster, namespace, "owner")
    other = _configmap(cluster, namespace, "other")
    dep = _configmap(cluster, namespace, "dep", owner, block=True)
    refs = [*dep["metadata"]["ownerReferences"]]
    refs.append({**refs[0], "name": "other", "uid": other["metadata"]["uid"]})
    cluster.kubectl(
        "patch", "configmap", "dep", "-n", namespace, "--type=merge", "-p",
        json.dumps({"metadata": {"ownerReferences": refs}}),
    )  # fmt: skip
    _configmap(cluster, namespace, "only", owner)
    cluster.kubectl(
        "delete", "configmap", "owner", "-n", namespace, "--cascade=orphan", version=version
    )
    assert _get(cluster, namespace, "configmap", "owner") is None
    only = _get(cluster, namespace, "configmap", "only")
    dep_now = _get(cluster, namespace, "configmap", "dep")
    assert only is not None and not only["metadata"].get("ownerReferences")
    assert dep_now is not None
    assert [r["name"] for r in dep_now["metadata"]["ownerReferences"]] == ["other"]


def test_python_client_propagation_policies(
    cluster: CompatCluster, namespace: str, api: k8s.ApiClient
) -> None:
    core = k8s.CoreV1Api(api)
    owner = _configmap(cluster, namespace, "fg-owner")
    _configmap(cluster, namespace, "fg-held", owner, block=True, hold=True)
    # The answer is the object marked for deletion (typed V1Status by the client: a dict).
    deleted = core.delete_namespaced_config_map(
        "fg-owner", namespace, propagation_policy="Foreground"
    )
    assert deleted["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in deleted["metadata"]["finalizers"]
    wait_until(
        lambda: core.read_namespaced_config_map("fg-held", namespace).metadata.deletion_timestamp,
        what="the dependent to be deleted",
    )
    visible = core.read_namespaced_config_map("fg-owner", namespace)
    assert visible.metadata.deletion_timestamp is not None
    _release(cluster, namespace, "fg-held")
    wait_until(
        lambda: _get(cluster, namespace, "configmap", "fg-owner") is None,
        what="the owner to go after its dependent",
    )

    owner = _configmap(cluster, namespace, "or-owner")
    _configmap(cluster, namespace, "or-dep", owner, block=True)
    core.delete_namespaced_config_map(
        "or-owner", namespace, body=k8s.V1DeleteOptions(propagation_policy="Orphan")
    )
    wait_until(
        lambda: _get(cluster, namespace, "configmap", "or-owner") is None,
        what="the orphaning owner to go",
    )
    kept = core.read_namespaced_config_map("or-dep", namespace)
    assert not kept.metadata.owner_references

    owner = _configmap(cluster, namespace, "bg-owner")
    _configmap(cluster, namespace, "bg-dep", owner)
    core.delete_namespaced_config_map("bg-owner", namespace, propagation_policy="Background")
    wait_until(
        lambda: _get(cluster, namespace, "configmap", "bg-dep") is None,
        what="the dependent of a background deletion",
    )


def test_dangling_references_are_collected(
    cluster: CompatCluster, namespace: str, crd: str
) -> None:
    real = _configmap(cluster, namespace, "real")
    never = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "never-existed", "uid": str(uuid.uuid4())},
    }
    wrong_uid = {**real, "metadata": {**real["metadata"], "uid": str(uuid.uuid4())}}
    custom_never = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Owner",
        "metadata": {"name": "nobody", "uid": str(uuid.uuid4())},
    }
    _configmap(cluster, namespace, "of-never", never)
    _configmap(cluster, namespace, "of-wrong-uid", wrong_uid)
    _configmap(cluster, namespace, "of-custom-never", custom_never)
    _configmap(cluster, namespace, "of-real", real)
    for name in ("of-never", "of-wrong-uid", "of-custom-never"):
        wait_until(
            lambda name=name: _get(cluster, namespace, "configmap", name) is None,
            what=f"{name} to be collected",
        )
    assert _get(cluster, namespace, "configmap", "of-real") is not None


def test_cluster_scoped_owner(cluster: CompatCluster, namespace: str) -> None:
    name = f"gc-owner-{namespace}"
    out = cluster.kubectl(
        "create", "clusterrole", name, "--verb=get", "--resource=pods", "-o", "json"
    )
    owner = json.loads(out.stdout)
    _configmap(cluster, namespace, "of-clusterrole", owner)
    cluster.kubectl("delete", "clusterrole", name)
    wait_until(
        lambda: _get(cluster, namespace, "configmap", "of-clusterrole") is None,
        what="the dependent of a cluster-scoped owner",
    )


def _custom(api: k8s.ApiClient, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, "v1", namespace, plural, name
        )
    except ApiException as exc:
        assert exc.status == 404, exc
        return None
    return found


def test_crd_owner_with_configmap_and_pod_dependents(
    cluster: CompatCluster, namespace: str, api: k8s.ApiClient, crd: str
) -> None:
    """Foreground deletion of a custom object owning a ConfigMap and a running Pod."""
    custom = k8s.CustomObjectsApi(api)
    core = k8s.CoreV1Api(api)
    owner = custom.create_namespaced_custom_object(
        GROUP,
        "v1",
        namespace,
        crd,
        {"apiVersion": f"{GROUP}/v1", "kind": "Owner", "metadata": {"name": "app"}},
    )
    ref = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Owner",
        "name": "app",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": "app-config", "ownerReferences": [ref]}, "data": {"a": "b"}},
    )
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "app-pod", "ownerReferences": [ref]},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
            },
        },
    )
    wait_until(
        lambda: core.read_namespaced_pod("app-pod", namespace).status.phase == "Running",
        timeout=90,
        what="the dependent pod to run",
    )
    # Both dependents survive while their owner lives.
    assert core.read_namespaced_config_map("app-config", namespace).metadata.uid
    custom.delete_namespaced_custom_object(
        GROUP, "v1", namespace, crd, "app", propagation_policy="Foreground"
    )
    seen: list[str] = []

    def all_gone() -> bool:
        # kubectl's read of the pod comes after the owner's: an owner seen gone with its
        # pod still there breaks Foreground's promise.
        got = _custom(api, namespace, crd, "app")
        pod = _get(cluster, namespace, "pod", "app-pod")
        if got is not None:
            deleting = got["metadata"].get("deletionTimestamp")
            waits = "foregroundDeletion" in got["metadata"].get("finalizers", [])
            seen.append("owner waiting" if deleting and waits else "owner not waiting")
            if pod is not None and pod["metadata"].get("deletionTimestamp"):
                seen.append("pod deleting")
        elif pod is not None:
            seen.append("owner gone before its pod")
        return got is None and pod is None

    wait_until(all_gone, timeout=90, interval=0.1, what="the owner and its pod to go")
    assert "owner waiting" in seen and "pod deleting" in seen, seen
    assert "owner not waiting" not in seen and "owner gone before its pod" not in seen, seen
    assert _get(cluster, namespace, "configmap", "app-config") is None


def _deployment(cluster: CompatCluster, namespace: str, name: str) -> None:
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {"name": "main", "image": "busybox", "command": ["sleep", "3600"]}
                    ],
                },
            },
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def two_pods() -> bool:
        out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"app={name}", "-o", "json")
        return len(json.loads(out.stdout)["items"]) == 2

    wait_until(two_pods, timeout=60, what=f"the pods of {name}")


def _items(cluster: CompatCluster, namespace: str, kind: str, app: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", kind, "-n", namespace, "-l", f"app={app}", "-o", "json")
    items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return items


def test_kubectl_deployment_cascades(cluster: CompatCluster, namespace: str) -> None:
    """Deployments with real pods: foreground (kubectl 1.27 waits) and orphan (1.33)."""
    _deployment(cluster, namespace, "fg")
    cluster.kubectl(
        "delete", "deployment", "fg", "-n", namespace, "--cascade=foreground", "--timeout=90s",
        version="1.27",
    )  # fmt: skip
    # kubectl returned once the Deployment was gone: its ReplicaSet (blocking) was before.
    assert _items(cluster, namespace, "replicasets", "fg") == []
    wait_until(
        lambda: _items(cluster, namespace, "pods", "fg") == [],
        timeout=60,
        what="the pods of a foreground-deleted Deployment",
    )

    _deployment(cluster, namespace, "orph")
    cluster.kubectl(
        "delete", "deployment", "orph", "-n", namespace, "--cascade=orphan", version="1.33"
    )
    (replicaset,) = _items(cluster, namespace, "replicasets", "orph")
    assert not replicaset["metadata"].get("ownerReferences")
    pods = _items(cluster, namespace, "pods", "orph")
    assert len(pods) == 2
    assert all(not p["metadata"].get("deletionTimestamp") for p in pods)
    assert all(
        p["metadata"]["ownerReferences"][0]["uid"] == replicaset["metadata"]["uid"] for p in pods
    )
