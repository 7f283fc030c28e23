"""The API server on real etcd: the same Kubernetes semantics as on the embedded store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from kubetrio.apiserver import open_apiserver
from kubetrio.client import Client, ClientError
from kubetrio.store import open_store
from tests.store.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.etcd


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def test_crud_watch_and_conflicts_on_etcd(etcd: EtcdCluster) -> None:
    with trio.fail_after(60):
        async with open_store(etcd.url) as store, open_apiserver(store) as running:
            client = Client.in_process(running.api)
            deploy = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "e"},
                "spec": {
                    "selector": {"matchLabels": {"a": "b"}},
                    "template": {
                        "metadata": {"labels": {"a": "b"}},
                        "spec": {"containers": [{"name": "c", "image": "x"}]},
                    },
                },
            }
            created = await client.create("apps/v1", "deployments", deploy, namespace="default")
            assert created["spec"]["replicas"] == 1  # defaulted
            events = []
            async with client.watch(
                "apps/v1",
                "deployments",
                namespace="default",
                resource_version=created["metadata"]["resourceVersion"],
            ) as w:
                await client.patch(
                    "apps/v1", "deployments", "e", {"spec": {"replicas": 3}}, namespace="default"
                )
                stale = dict(created, spec=dict(created["spec"], replicas=5))
                with pytest.raises(ClientError) as conflict:
                    await client.update("apps/v1", "deployments", stale, namespace="default")
                assert conflict.value.conflict
                await client.delete("apps/v1", "deployments", "e", namespace="default")
                async for event in w:
                    events.append((event.type, event.object["spec"]["replicas"]))
                    if len(events) == 2:
                        break
            assert events == [("MODIFIED", 3), ("DELETED", 3)]
            listed = await client.list("v1", "namespaces")
            assert {"default", "kube-system"} <= {n["metadata"]["name"] for n in listed["items"]}
