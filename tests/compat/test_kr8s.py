"""kr8s (sync ``kr8s.objects`` API and the asyncio API), unmodified, against the cluster.

Version check, get/create/delete/patch/label/annotate, ``wait`` for conditions,
``Deployment.scale``, watches, ``api_resources``, ``Pod.logs``, exec (one smoke test),
generic classes from ``new_class``.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator

import kr8s
import pytest
from kr8s.objects import ConfigMap, Deployment, Pod, new_class

from tests.compat.kit import CompatCluster
from tests.kit import wait_until


@pytest.fixture
def api(cluster: CompatCluster) -> Iterator[kr8s.Api]:
    """A kr8s API from the cluster's kubeconfig (kr8s checks the server version on use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unsupported-version warning fails the test
        client = kr8s.api(kubeconfig=str(cluster.kubeconfig))
        client.version()
    yield client


def _pod(api: kr8s.Api, namespace: str, name: str, command: str) -> Pod:
    return Pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {"name": "main", "image": "busybox", "command": ["sh", "-c", command]}
                ],
            },
        },
        api=api,
    )


def test_whoami(api: kr8s.Api) -> None:
    """SelfSubjectReview: the kubeconfig's user as the server authenticated it."""
    assert api.whoami() == "kubernetes-admin"  # the admin client certificate's CN


def test_version_is_supported(api: kr8s.Api) -> None:
    version = api.version()
    minor = int(str(version["minor"]).rstrip("+"))
    low = int(kr8s.KUBERNETES_MINIMUM_SUPPORTED_VERSION.minor)
    high = int(kr8s.KUBERNETES_MAXIMUM_SUPPORTED_VERSION.minor)
    assert low <= minor <= high, version


def test_configmap_crud_label_annotate_patch(api: kr8s.Api, namespace: str) -> None:
    cm = ConfigMap(
        {"metadata": {"name": "cfg", "namespace": namespace}, "data": {"a": "1"}}, api=api
    )
    cm.create()
    assert cm.exists() and cm.metadata.uid
    cm.label(tier="db")
    cm.annotate({"owner": "alice"})
    cm.patch({"data": {"b": "2"}})
    fetched = ConfigMap.get("cfg", namespace=namespace, api=api)
    assert fetched.labels == {"tier": "db"} and fetched.annotations["owner"] == "alice"
    assert fetched.raw["data"] == {"a": "1", "b": "2"}
    cm.patch([{"op": "remove", "path": "/data/a"}], type="json")
    cm.refresh()
    assert cm.raw["data"] == {"b": "2"}
    found = list(api.get("configmaps", namespace=namespace, label_selector={"tier": "db"}))
    assert [c.name for c in found] == ["cfg"]
    cm.delete()
    wait_until(lambda: not cm.exists(), timeout=30, what="the ConfigMap to go")
    with pytest.raises(kr8s.NotFoundError):
        ConfigMap.get("cfg", namespace=namespace, api=api)


def test_pod_wait_ready_logs_and_exec(api: kr8s.Api, namespace: str) -> None:
    pod = _pod(api, namespace, "talker", "echo one; echo two; sleep 3600")
    pod.create()
    pod.wait("condition=Ready", timeout=60)
    assert pod.ready()
    lines = wait_until(
        lambda: (got := list(pod.logs())) and len(got) >= 2 and got,
        timeout=30,
        what="the pod's log",
    )
    assert lines[:2] == ["one", "two"]
    assert list(pod.logs(tail_lines=1)) == ["two"]
    done = pod.exec(["sh", "-c", "echo out; echo err >&2"])
    assert done.stdout == b"out\n" and done.stderr == b"err\n" and done.returncode == 0
    pod.delete()
    pod.wait("delete", timeout=60)


def test_deployment_scale_and_wait(api: kr8s.Api, namespace: str) -> None:
    deployment = Deployment(
        {
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {"name": "main", "image": "busybox", "command": ["sleep", "3600"]}
                        ],
                    },
                },
            },
        },
        api=api,
    )
    deployment.create()
    deployment.wait("condition=Available", timeout=60)
    deployment.scale(2)
    wait_until(
        lambda: deployment.refresh() or deployment.raw["status"].get("readyReplicas") == 2,
        timeout=60,
        what="two ready replicas",
    )
    pods = list(deployment.pods())
    assert len(pods) == 2
    deployment.scale(0)
    wait_until(lambda: not list(deployment.pods()), timeout=60, what="the pods to go")


def test_watch(api: kr8s.Api, namespace: str) -> None:
    seen: list[tuple[str, str]] = []
    ConfigMap(
        {"metadata": {"name": "w", "namespace": namespace, "labels": {"w": "y"}}}, api=api
    ).create()
    for event, obj in api.watch("configmaps", namespace=namespace, label_selector={"w": "y"}):
        seen.append((event, obj.name))
        if event == "ADDED":
            obj.patch({"data": {"k": "v"}})
        elif event == "MODIFIED":
            obj.delete()
        elif event == "DELETED":
            break
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_api_resources(api: kr8s.Api) -> None:
    resources = {(r["name"], r.get("version", "")): r for r in api.api_resources()}
    names = {r["name"] for r in api.api_resources()}
    assert {"pods", "deployments", "configmaps", "jobs", "namespaces"} <= names
    assert any(r["kind"] == "Deployment" and r["namespaced"] for r in resources.values())


def test_new_class_generic_objects(api: kr8s.Api, namespace: str) -> None:
    Lease = new_class("Lease", version="coordination.k8s.io/v1", namespaced=True)
    lease = Lease(
        {
            "metadata": {"name": "lock", "namespace": namespace},
            "spec": {"holderIdentity": "me", "leaseDurationSeconds": 10},
        },
        api=api,
    )
    lease.create()
    got = Lease.get("lock", namespace=namespace, api=api)
    assert got.spec.holderIdentity == "me"
    got.patch({"spec": {"holderIdentity": "you"}})
    assert Lease.get("lock", namespace=namespace, api=api).spec.holderIdentity == "you"
    got.delete()


def test_async_api(cluster: CompatCluster, namespace: str) -> None:
    """kr8s.asyncio on asyncio (the test owns the loop)."""
    import kr8s.asyncio
    from kr8s.asyncio.objects import ConfigMap as AsyncConfigMap

    async def scenario() -> dict[str, str]:
        client = await kr8s.asyncio.api(kubeconfig=str(cluster.kubeconfig))
        cm = await AsyncConfigMap(
            {"metadata": {"name": "a", "namespace": namespace}, "data": {"k": "v"}}, api=client
        )
        await cm.create()
        await cm.patch({"data": {"k": "w"}})
        found = [c async for c in client.get("configmaps", "a", namespace=namespace)]
        await cm.delete()
        data: dict[str, str] = found[0].raw["data"]
        return data

    assert asyncio.run(scenario()) == {"k": "w"}


def test_job_completes_and_role_binding(api: kr8s.Api, namespace: str) -> None:
    from kr8s.objects import Job, Role, RoleBinding

    job = Job(
        {
            "metadata": {"name": "once", "namespace": namespace},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "main", "image": "busybox", "command": ["echo", "done"]}
                        ],
                    }
                }
            },
        },
        api=api,
    )
    job.create()
    job.wait("condition=Complete", timeout=60)
    pods = list(api.get("pods", namespace=namespace, label_selector={"job-name": "once"}))
    assert len(pods) == 1 and list(pods[0].logs()) == ["done"]
    role = Role(
        {
            "metadata": {"name": "reader", "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
        api=api,
    )
    role.create()
    binding = RoleBinding(
        {
            "metadata": {"name": "reader", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        },
        api=api,
    )
    binding.create()
    assert RoleBinding.get("reader", namespace=namespace, api=api).raw["roleRef"]["name"] == (
        "reader"
    )
    binding.delete()
    role.delete()
