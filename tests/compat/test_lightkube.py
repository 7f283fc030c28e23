"""lightkube (sync ``Client`` and ``AsyncClient`` over httpx), unmodified, against the cluster.

get/list/create/replace/patch (every patch type)/delete/deletecollection, watches from a
resourceVersion through labels, ``codecs.load_all_yaml`` then create, ``wait`` for a
Deployment's Available condition, logs (followed), namespaced and global resources, list
chunking, generic resources.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import ApiError, AsyncClient, Client, KubeConfig, codecs
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import (
    ConfigMapVolumeSource,
    Container,
    PodSpec,
    PodTemplateSpec,
    Volume,
    VolumeMount,
)
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Namespace, Node, Pod
from lightkube.resources.rbac_authorization_v1 import ClusterRole
from lightkube.types import PatchType

from tests.compat.kit import CompatCluster
from tests.kit import wait_until


@pytest.fixture
def kube(cluster: CompatCluster) -> Iterator[Client]:
    """A lightkube client from the cluster's kubeconfig."""
    client = Client(config=KubeConfig.from_file(cluster.kubeconfig), field_manager="compat")
    yield client
    client.close()


def _deployment(name: str, replicas: int = 1) -> Deployment:
    labels = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, labels=labels),
        spec=DeploymentSpec(
            replicas=replicas,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(
                metadata=ObjectMeta(labels=labels),
                spec=PodSpec(
                    terminationGracePeriodSeconds=1,
                    containers=[Container(name="main", image="busybox", command=["sleep", "3600"])],
                ),
            ),
        ),
    )


def test_crud_and_every_patch_type(kube: Client, namespace: str) -> None:
    created = kube.create(
        ConfigMap(metadata=ObjectMeta(name="cm", labels={"a": "1"}), data={"k": "v"}),
        namespace=namespace,
    )
    assert created.metadata is not None and created.metadata.uid
    got = kube.get(ConfigMap, "cm", namespace=namespace)
    assert got.data == {"k": "v"}
    got.data = {"k": "replaced"}
    replaced = kube.replace(got)
    assert replaced.data == {"k": "replaced"}
    # A replace carrying an old resourceVersion is a conflict.
    with pytest.raises(ApiError) as stale:
        kube.replace(got)
    assert stale.value.status.code == 409 and stale.value.status.reason == "Conflict"

    kube.patch(ConfigMap, "cm", {"data": {"s": "1"}}, namespace=namespace)  # strategic
    kube.patch(
        ConfigMap, "cm", {"data": {"m": "2"}}, namespace=namespace, patch_type=PatchType.MERGE
    )
    kube.patch(
        ConfigMap,
        "cm",
        [{"op": "remove", "path": "/data/k"}],
        namespace=namespace,
        patch_type=PatchType.JSON,
    )
    applied = kube.patch(
        ConfigMap,
        "cm",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "3"}},
        namespace=namespace,
        patch_type=PatchType.APPLY,
        force=True,
    )
    assert applied.data is not None and applied.data["a"] == "3"
    assert {"s": "1", "m": "2"}.items() <= applied.data.items() and "k" not in applied.data

    listed = list(kube.list(ConfigMap, namespace=namespace, labels={"a": "1"}))
    assert [cm.metadata.name for cm in listed if cm.metadata] == ["cm"]
    kube.delete(ConfigMap, "cm", namespace=namespace)
    with pytest.raises(ApiError) as missing:
        kube.get(ConfigMap, "cm", namespace=namespace)
    assert missing.value.status.code == 404 and missing.value.status.reason == "NotFound"


def test_deletecollection_and_chunked_list(kube: Client, namespace: str) -> None:
    for index in range(7):
        kube.create(ConfigMap(metadata=ObjectMeta(name=f"c{index}")), namespace=namespace)
    names = [cm.metadata.name for cm in kube.list(ConfigMap, namespace=namespace, chunk_size=2)]
    assert sorted(n for n in names if n and n.startswith("c")) == [f"c{i}" for i in range(7)]
    assert len(names) == len(set(names))
    kube.deletecollection(ConfigMap, namespace=namespace)
    left = [cm.metadata.name for cm in kube.list(ConfigMap, namespace=namespace)]
    assert not [n for n in left if n and n.startswith("c")]


def test_global_resources(kube: Client, namespace: str) -> None:
    nodes = list(kube.list(Node))
    assert nodes and nodes[0].status is not None
    assert kube.get(Namespace, namespace).status.phase == "Active"
    name = f"{namespace}-role"
    kube.create(ClusterRole(metadata=ObjectMeta(name=name), rules=[]))
    kube.patch(ClusterRole, name, {"metadata": {"labels": {"x": "y"}}})
    assert [r.metadata.name for r in kube.list(ClusterRole, labels={"x": "y"})] == [name]
    kube.delete(ClusterRole, name)


def test_watch_with_labels_and_resource_version(kube: Client, namespace: str) -> None:
    listing = kube.list(ConfigMap, namespace=namespace)
    list(listing)
    start = listing.resourceVersion
    kube.create(ConfigMap(metadata=ObjectMeta(name="w", labels={"w": "y"})), namespace=namespace)
    kube.create(ConfigMap(metadata=ObjectMeta(name="n", labels={"w": "n"})), namespace=namespace)
    kube.patch(ConfigMap, "w", {"data": {"k": "v"}}, namespace=namespace)
    kube.delete(ConfigMap, "w", namespace=namespace)
    seen: list[tuple[str, str | None]] = []
    for kind, obj in kube.watch(
        ConfigMap,
        namespace=namespace,
        labels={"w": "y"},
        resource_version=start,
        server_timeout=10,
    ):
        seen.append((kind, obj.metadata.name if obj.metadata else None))
        if kind == "DELETED":
            break
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
"""


def test_load_all_yaml_create_and_wait_available(
    kube: Client, namespace: str, tmp_path: Path
) -> None:
    for obj in codecs.load_all_yaml(MANIFEST):
        kube.create(obj, namespace=namespace)
    assert kube.get(ConfigMap, "settings", namespace=namespace).data == {"mode": "fast"}
    service = kube.get(codecs.resource_registry.get("v1", "Service"), "web", namespace=namespace)
    assert service.spec.clusterIP
    kube.create(_deployment("web"), namespace=namespace)
    done = kube.wait(Deployment, "web", for_conditions=["Available"], namespace=namespace)
    assert done.status is not None and done.status.availableReplicas == 1


def test_logs_follow(kube: Client, namespace: str) -> None:
    kube.create(
        Pod(
            metadata=ObjectMeta(name="talker"),
            spec=PodSpec(
                terminationGracePeriodSeconds=1,
                containers=[
                    Container(
                        name="main",
                        image="busybox",
                        command=["sh", "-c", "echo one; echo two; sleep 3600"],
                    )
                ],
            ),
        ),
        namespace=namespace,
    )
    wait_until(
        lambda: "two" in "".join(kube.log("talker", namespace=namespace)),
        timeout=60,
        what="the pod's log",
    )
    lines: list[str] = []
    for line in kube.log("talker", namespace=namespace, follow=True):
        lines.append(line)
        if len(lines) == 2:
            break
    assert lines == ["one\n", "two\n"]
    assert list(kube.log("talker", namespace=namespace, tail_lines=1)) == ["two\n"]


WIDGETS = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.compat.kubetrio.io}
spec:
  group: compat.kubetrio.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def test_generic_resource(cluster: CompatCluster, kube: Client, namespace: str) -> None:
    """Generic classes for kinds lightkube has no model of: a custom resource."""
    cluster.kubectl("apply", "-f", "-", input=WIDGETS)
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.compat.kubetrio.io", "--timeout=30s"
    )
    Widget = create_namespaced_resource("compat.kubetrio.io", "v1", "Widget", "widgets")
    wait_until(
        lambda: list(kube.list(Widget, namespace=namespace)) is not None,
        timeout=30,
        what="widgets to be served",
    )
    kube.create(Widget(metadata=ObjectMeta(name="w"), spec={"size": 3}), namespace=namespace)
    got = kube.get(Widget, "w", namespace=namespace)
    assert got["spec"] == {"size": 3} and got.metadata.name == "w"
    kube.patch(Widget, "w", {"spec": {"size": 4}}, namespace=namespace, patch_type=PatchType.MERGE)
    assert [w["spec"]["size"] for w in kube.list(Widget, namespace=namespace)] == [4]
    kube.delete(Widget, "w", namespace=namespace)


def test_async_client(cluster: CompatCluster, namespace: str) -> None:
    """AsyncClient on asyncio (lightkube is anyio/httpx; the test owns its event loop)."""

    async def scenario() -> list[str]:
        client = AsyncClient(config=KubeConfig.from_file(cluster.kubeconfig))
        try:
            created = await client.create(
                ConfigMap(metadata=ObjectMeta(name="a", labels={"x": "y"})), namespace=namespace
            )
            assert created.metadata is not None
            await client.patch(ConfigMap, "a", {"data": {"k": "v"}}, namespace=namespace)
            got = await client.get(ConfigMap, "a", namespace=namespace)
            assert got.data == {"k": "v"}
            names = [cm.metadata.name async for cm in client.list(ConfigMap, namespace=namespace)]
            assert "a" in names
            await client.delete(ConfigMap, "a", namespace=namespace)
            seen = []
            async for kind, _obj in client.watch(
                ConfigMap,
                namespace=namespace,
                labels={"x": "y"},
                resource_version=created.metadata.resourceVersion,
                server_timeout=10,
            ):
                seen.append(kind)
                if kind == "DELETED":
                    break
            return seen
        finally:
            await client.close()

    assert asyncio.run(scenario()) == ["MODIFIED", "DELETED"]


def test_configmap_volume_pod_runs(kube: Client, namespace: str) -> None:
    """A model-built pod with a ConfigMap volume: lightkube's serialisation is accepted."""
    kube.create(ConfigMap(metadata=ObjectMeta(name="conf"), data={"x": "42"}), namespace=namespace)
    kube.create(
        Pod(
            metadata=ObjectMeta(name="reader"),
            spec=PodSpec(
                restartPolicy="Never",
                containers=[
                    Container(
                        name="main",
                        image="busybox",
                        command=["cat", "/conf/x"],
                        volumeMounts=[VolumeMount(name="conf", mountPath="/conf")],
                    )
                ],
                volumes=[Volume(name="conf", configMap=ConfigMapVolumeSource(name="conf"))],
            ),
        ),
        namespace=namespace,
    )
    phase = wait_until(
        lambda: (
            kube.get(Pod, "reader", namespace=namespace).status.phase in ("Succeeded", "Failed")
            and kube.get(Pod, "reader", namespace=namespace).status.phase
        ),
        timeout=60,
        what="the reader pod to finish",
    )
    assert phase == "Succeeded", "".join(kube.log("reader", namespace=namespace))
    assert "".join(kube.log("reader", namespace=namespace)).strip() == "42"


def test_batch_kinds(kube: Client, namespace: str) -> None:
    from lightkube.models.batch_v1 import CronJobSpec, JobSpec, JobTemplateSpec
    from lightkube.resources.batch_v1 import CronJob, Job

    template = PodTemplateSpec(
        spec=PodSpec(
            restartPolicy="Never",
            containers=[Container(name="main", image="busybox", command=["echo", "done"])],
        )
    )
    kube.create(
        CronJob(
            metadata=ObjectMeta(name="tick"),
            spec=CronJobSpec(
                schedule="0 0 1 1 *", jobTemplate=JobTemplateSpec(spec=JobSpec(template=template))
            ),
        ),
        namespace=namespace,
    )
    kube.patch(CronJob, "tick", {"spec": {"suspend": True}}, namespace=namespace)
    assert kube.get(CronJob, "tick", namespace=namespace).spec.suspend is True
    kube.create(
        Job(metadata=ObjectMeta(name="once"), spec=JobSpec(template=template)), namespace=namespace
    )
    done = kube.wait(Job, "once", for_conditions=["Complete"], namespace=namespace)
    assert done.status is not None and done.status.succeeded == 1
