"""Default ServiceAccounts, Endpoints and EndpointSlices."""

from __future__ import annotations

from typing import Any

import trio

from kubetrio.client import Client, ClientError
from tests.kit import deployment, wait_for

from .conftest import Cluster


async def test_default_service_account(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(20):
        await client.create(
            "v1",
            "namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t1"}},
        )

        async def exists() -> bool:
            try:
                await client.get("v1", "serviceaccounts", "default", namespace="t1")
            except ClientError:
                return False
            return True

        await wait_for(exists)
        await client.delete("v1", "serviceaccounts", "default", namespace="t1")
        await trio.sleep(0.05)
        await wait_for(exists)


async def _endpoints(client: Client, name: str) -> dict[str, Any]:
    try:
        return await client.get("v1", "endpoints", name, namespace="default")
    except ClientError:
        return {}


async def test_endpoints_follow_ready_pods(cluster: Cluster) -> None:
    client = cluster.client
    with trio.fail_after(30):
        d = deployment("api", replicas=3)
        d["spec"]["template"]["spec"]["containers"][0]["ports"] = [
            {"name": "http", "containerPort": 8080}
        ]
        await client.create("apps/v1", "deployments", d, namespace="default")
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "api"},
            "spec": {
                "selector": {"app": "api"},
                "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
            },
        }
        await client.create("v1", "services", service, namespace="default")

        async def three_ready() -> dict[str, Any]:
            ep = await _endpoints(client, "api")
            subsets = ep.get("subsets") or []
            if len(subsets) == 1 and len(subsets[0].get("addresses") or []) == 3:
                return ep
            return {}

        ep = await wait_for(three_ready)
        assert ep["subsets"][0]["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
        assert all(a["targetRef"]["kind"] == "Pod" for a in ep["subsets"][0]["addresses"])

        async def three_in_slice() -> list[Any]:
            # Endpoints and EndpointSlices are separate writes: the slice may lag a little.
            items: list[Any] = (
                await client.list(
                    "discovery.k8s.io/v1",
                    "endpointslices",
                    namespace="default",
                    label_selector="kubernetes.io/service-name=api",
                )
            )["items"]
            return items if sum(len(i.get("endpoints") or []) for i in items) == 3 else []

        slices = await wait_for(three_in_slice)
        assert len(slices) == 1
        assert slices[0]["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
        assert len(slices[0]["endpoints"]) == 3
        assert all(e["conditions"]["ready"] for e in slices[0]["endpoints"])
        assert slices[0]["metadata"]["ownerReferences"][0]["name"] == "api"

        # One pod stops being ready: it moves to notReadyAddresses.
        pod = (await client.list("v1", "pods", namespace="default", label_selector="app=api"))[
            "items"
        ][0]
        conditions = [
            {**c, "status": "False"} if c["type"] == "Ready" else c
            for c in pod["status"]["conditions"]
        ]
        await client.patch(
            "v1",
            "pods",
            pod["metadata"]["name"],
            {"status": {"conditions": conditions}},
            namespace="default",
            subresource="status",
        )

        async def one_not_ready() -> bool:
            ep = await _endpoints(client, "api")
            subset = (ep.get("subsets") or [{}])[0]
            return len(subset.get("addresses") or []) == 2 and [
                a["ip"] for a in subset.get("notReadyAddresses") or []
            ] == [pod["status"]["podIP"]]

        await wait_for(one_not_ready)
        await client.delete("v1", "services", "api", namespace="default")

        async def cleaned() -> bool:
            left = (
                await client.list("discovery.k8s.io/v1", "endpointslices", namespace="default")
            )["items"]
            return not left and not await _endpoints(client, "api")

        await wait_for(cleaned)
