"""StatefulSets: ordered scale up and down, claims, partitioned rolling update, kubectl."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from kubetrio.client import Client, ClientError
from tests.kit import wait_for

from .conftest import Cluster


def statefulset(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "db", "image": "db:1"}]},
            },
            **spec,
        },
    }


async def _ready(client: Client, name: str, replicas: int) -> bool:
    sts = await client.get("apps/v1", "statefulsets", name, namespace="default")
    status = sts.get("status") or {}
    return (
        status.get("observedGeneration") == sts["metadata"]["generation"]
        and status.get("readyReplicas") == replicas
        and status.get("replicas") == replicas
        and status.get("currentRevision") == status.get("updateRevision")
    )


async def test_ordered_scale_up_and_down(cluster: Cluster) -> None:
    client = cluster.client
    events: list[tuple[str, str]] = []
    claims = [
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    ]
    with trio.fail_after(40):
        start = await client.create(
            "apps/v1",
            "statefulsets",
            statefulset("db", 0, volumeClaimTemplates=claims),
            namespace="default",
        )

        async def watch() -> None:
            async with client.watch(
                "v1",
                "pods",
                namespace="default",
                label_selector="app=db",
                resource_version=start["metadata"]["resourceVersion"],
            ) as stream:
                async for event in stream:
                    pod = event.object
                    if event.type == "ADDED":
                        # Every lower ordinal must be up when a pod is created.
                        events.append(("create", pod["metadata"]["name"]))
                    elif event.type == "DELETED":
                        events.append(("delete", pod["metadata"]["name"]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await client.patch(
                "apps/v1",
                "statefulsets",
                "db",
                {"spec": {"replicas": 3}},
                namespace="default",
                subresource="scale",
            )
            await wait_for(lambda: _ready(client, "db", 3))
            pvcs = (await client.list("v1", "persistentvolumeclaims", namespace="default"))["items"]
            assert sorted(p["metadata"]["name"] for p in pvcs) == [
                "data-db-0",
                "data-db-1",
                "data-db-2",
            ]
            pod = await client.get("v1", "pods", "db-1", namespace="default")
            assert pod["spec"]["hostname"] == "db-1" and pod["spec"]["subdomain"] == "db"
            assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}} in pod[
                "spec"
            ]["volumes"]
            await client.patch(
                "apps/v1",
                "statefulsets",
                "db",
                {"spec": {"replicas": 1}},
                namespace="default",
                subresource="scale",
            )
            await wait_for(lambda: _ready(client, "db", 1))
            await trio.sleep(0.3)
            nursery.cancel_scope.cancel()
        assert events == [
            ("create", "db-0"),
            ("create", "db-1"),
            ("create", "db-2"),
            ("delete", "db-2"),
            ("delete", "db-1"),
        ]
        pvcs = (await client.list("v1", "persistentvolumeclaims", namespace="default"))["items"]
        assert len(pvcs) == 3  # claims are retained


async def test_pods_created_only_after_predecessor_ready(cluster: Cluster) -> None:
    """Stop the node heartbeat path: with db-0 never Ready, db-1 is never created."""
    client = cluster.client
    with trio.fail_after(20):
        manifest = statefulset("slow", 3)
        manifest["spec"]["template"]["spec"]["nodeName"] = "nowhere"  # never starts
        await client.create("apps/v1", "statefulsets", manifest, namespace="default")
        await trio.sleep(1.5)
        pods = (await client.list("v1", "pods", namespace="default", label_selector="app=slow"))[
            "items"
        ]
        assert [p["metadata"]["name"] for p in pods] == ["slow-0"]
        # The policy is fixed at creation, as upstream: only a new StatefulSet changes it.
        with pytest.raises(ClientError) as refused:
            await client.patch(
                "apps/v1",
                "statefulsets",
                "slow",
                {"spec": {"podManagementPolicy": "Parallel"}},
                namespace="default",
            )
        assert refused.value.code == 422


async def test_parallel_policy(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(20):
        manifest = statefulset("par", 3, podManagementPolicy="Parallel")
        manifest["spec"]["template"]["spec"]["nodeName"] = "nowhere"
        await client.create("apps/v1", "statefulsets", manifest, namespace="default")

        async def three() -> bool:
            pods = (await client.list("v1", "pods", namespace="default", label_selector="app=par"))[
                "items"
            ]
            return len(pods) == 3

        await wait_for(three)


async def test_partitioned_rolling_update(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(40):
        await client.create(
            "apps/v1",
            "statefulsets",
            statefulset(
                "web",
                3,
                updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            ),
            namespace="default",
        )
        await wait_for(lambda: _ready(client, "web", 3))
        await client.patch(
            "apps/v1",
            "statefulsets",
            "web",
            {"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "db:2"}]}}}},
            namespace="default",
        )

        async def images() -> dict[str, str]:
            pods = (await client.list("v1", "pods", namespace="default", label_selector="app=web"))[
                "items"
            ]
            return {
                p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
                for p in pods
                if p["status"].get("phase") == "Running"
                and not p["metadata"].get("deletionTimestamp")
            }

        async def partitioned() -> bool:
            return await images() == {"web-0": "db:1", "web-1": "db:2", "web-2": "db:2"}

        await wait_for(partitioned)
        sts = await client.get("apps/v1", "statefulsets", "web", namespace="default")
        assert sts["status"]["updatedReplicas"] == 2
        assert sts["status"]["currentRevision"] != sts["status"]["updateRevision"]
        # web-0 is below the partition: recreated with the *current* template.
        await client.delete("v1", "pods", "web-0", namespace="default")
        await trio.sleep(0.5)
        await wait_for(partitioned)
        await client.patch(
            "apps/v1",
            "statefulsets",
            "web",
            {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}},
            namespace="default",
        )
        await wait_for(lambda: _ready(client, "web", 3))
        assert set((await images()).values()) == {"db:2"}
        revisions = (await client.list("apps/v1", "controllerrevisions", namespace="default"))[
            "items"
        ]
        assert sorted(r["revision"] for r in revisions) == [1, 2]
