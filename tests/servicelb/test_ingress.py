"""The ingress's LoadBalancer Service and its EndpointSlices, built from the Nodes whose
nginx serves (their annotations): the pure slice building, then the controller against
a real in-process API server with the allocator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetrio.client import Client, ClientError
from kubetrio.ingress import HTTP_PORT_ANNOTATION, HTTPS_PORT_ANNOTATION
from kubetrio.servicelb import IngressLoadBalancer, ingress_ips, ingress_ports, ingress_slices
from kubetrio.servicelb._ingress import KEY
from tests.kit import wait_for

from .conftest import running_manager

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "kubetrio-ingress", "namespace": "kube-system", "uid": "u-1"},
}


def node(
    name: str, ip: str, ports: tuple[object, object] | None = (80, 443), *, ready: bool = True
) -> dict[str, Any]:
    """A Node with an InternalIP, Ready or not, annotated with ``ports`` (None: not)."""
    annotations = (
        {HTTP_PORT_ANNOTATION: str(ports[0]), HTTPS_PORT_ANNOTATION: str(ports[1])}
        if ports is not None
        else {}
    )
    addresses = [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": annotations},
        "status": {
            "addresses": addresses,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def endpoints(slice_: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(node, address, ready) of each endpoint."""
    return [
        (e["nodeName"], e["addresses"][0], e["conditions"]["ready"])
        for e in slice_.get("endpoints") or []
    ]


def ports(slice_: dict[str, Any]) -> list[tuple[str, int]]:
    return [(p["name"], p["port"]) for p in slice_["ports"]]


def test_ports_come_from_both_annotations() -> None:
    assert ingress_ports(node("a", "10.0.0.1")) == (80, 443)
    assert ingress_ports(node("a", "10.0.0.1", None)) is None
    for bad in (("80", ""), ("x", "443"), ("0", "443"), ("80", "70000"), ("-1", "443")):
        assert ingress_ports(node("a", "10.0.0.1", bad)) is None, bad


def test_one_slice_per_pair_of_ports_with_every_serving_node() -> None:
    nodes = [
        node("c", "10.0.0.3", (8080, 8443)),
        node("b", "10.0.0.2", ready=False),
        node("a", "10.0.0.1"),
        node("d", "10.0.0.4", None),  # no nginx there
    ]
    nodes.append({"metadata": {"name": "e", "annotations": nodes[2]["metadata"]["annotations"]}})
    default, other = ingress_slices(SERVICE, nodes)  # "e" has no InternalIP: left out
    assert default["metadata"]["name"] == "kubetrio-ingress-80-443"
    assert endpoints(default) == [("a", "10.0.0.1", True), ("b", "10.0.0.2", False)]
    assert ports(default) == [("http", 80), ("https", 443)]
    assert other["metadata"]["name"] == "kubetrio-ingress-8080-8443"
    assert endpoints(other) == [("c", "10.0.0.3", True)]
    assert ports(other) == [("http", 8080), ("https", 8443)]
    for slice_ in (default, other):
        metadata = slice_["metadata"]
        assert metadata["namespace"] == "kube-system"
        assert metadata["labels"]["kubernetes.io/service-name"] == "kubetrio-ingress"
        # Not the endpoints controller's: it must leave these alone.
        assert metadata["labels"]["endpointslice.kubernetes.io/managed-by"] != (
            "endpointslice-controller.k8s.io"
        )
        assert [o["uid"] for o in metadata["ownerReferences"]] == ["u-1"]
    assert ingress_slices(SERVICE, [node("d", "10.0.0.4", None)]) == []


async def ours(client: Client) -> dict[str, dict[str, Any]]:
    """The Service's slices by name."""
    found = await client.list(
        "discovery.k8s.io/v1",
        "endpointslices",
        namespace="kube-system",
        label_selector="kubernetes.io/service-name=kubetrio-ingress",
    )
    return {s["metadata"]["name"]: s for s in found["items"]}


async def annotate(client: Client, name: str, ports: tuple[int, int] | None) -> None:
    values = [str(p) for p in ports] if ports else [None, None]
    annotations = dict(zip((HTTP_PORT_ANNOTATION, HTTPS_PORT_ANNOTATION), values, strict=True))
    await client.patch("v1", "nodes", name, {"metadata": {"annotations": annotations}})


async def test_the_service_and_its_slices_follow_the_nodes(client: Client) -> None:
    controller = IngressLoadBalancer()
    async with running_manager(client, "10.77.1.0/30", extra=(controller,)):
        for created in (node("n1", "10.0.0.1", None), node("n2", "10.0.0.2", None)):
            stored = await client.create("v1", "nodes", created)
            stored["status"] = created["status"]
            await client.update("v1", "nodes", stored, subresource="status")
        await cached(lambda: len(controller.nodes.list()) == 2)
        # No node serves Ingresses: no Service.
        await controller.reconcile(KEY)
        assert controller.services.get("kubetrio-ingress", "kube-system") is None

        await annotate(client, "n2", (80, 443))

        async def address() -> str | None:
            found = await client.list("v1", "services", namespace="kube-system")
            for service in found["items"]:
                if service["metadata"]["name"] == "kubetrio-ingress" and ingress_ips(service):
                    return ingress_ips(service)[0]
            return None

        # The allocator gives the Service a pool address like any other.
        assert await wait_for(address) in ("10.77.1.0", "10.77.1.1", "10.77.1.2", "10.77.1.3")
        service = await client.get("v1", "services", "kubetrio-ingress", namespace="kube-system")
        assert service["spec"]["type"] == "LoadBalancer"
        assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [
            ("http", 80),
            ("https", 443),
        ]
        assert "selector" not in service["spec"]

        async def only_n2() -> dict[str, Any] | None:
            slices = await ours(client)
            one = slices.get("kubetrio-ingress-80-443")
            return one if len(slices) == 1 and one and endpoints(one) else None

        first = await wait_for(only_n2)
        assert endpoints(first) == [("n2", "10.0.0.2", True)]
        # What the server stored compares equal to what is wanted: no rewrite loop.
        await controller.reconcile(KEY)
        again = await client.get(
            "discovery.k8s.io/v1",
            "endpointslices",
            first["metadata"]["name"],
            namespace="kube-system",
        )
        assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

        # n1 serves on other ports: a slice of its own.
        await annotate(client, "n1", (8080, 8443))

        async def two() -> dict[str, dict[str, Any]] | None:
            slices = await ours(client)
            return slices if len(slices) == 2 else None

        slices = await wait_for(two)
        assert endpoints(slices["kubetrio-ingress-8080-8443"]) == [("n1", "10.0.0.1", True)]
        assert ports(slices["kubetrio-ingress-8080-8443"]) == [("http", 8080), ("https", 8443)]

        # A deleted Service comes back while nodes serve, and owns the slices again.
        await client.delete("v1", "services", "kubetrio-ingress", namespace="kube-system")

        async def reowned() -> bool:
            try:
                new = await client.get(
                    "v1", "services", "kubetrio-ingress", namespace="kube-system"
                )
            except ClientError:
                return False
            if new["metadata"]["uid"] == service["metadata"]["uid"]:
                return False
            slices = (await ours(client)).values()
            owners = {o["uid"] for s in slices for o in s["metadata"]["ownerReferences"]}
            return owners == {new["metadata"]["uid"]}

        await wait_for(reowned)

        # Nodes that stop serving leave; none left: no slices.
        await annotate(client, "n1", None)
        await annotate(client, "n2", None)

        async def none() -> bool:
            return not await ours(client)

        await wait_for(none)


async def cached(check: Callable[[], bool]) -> None:
    """Wait until the controller's caches pass ``check``."""

    async def passes() -> bool:
        return check()

    await wait_for(passes)


async def test_a_service_with_a_selector_is_left_to_its_owner(client: Client) -> None:
    controller = IngressLoadBalancer()
    async with running_manager(client, None, extra=(controller,)):
        mine = {
            "metadata": {"name": "kubetrio-ingress"},
            "spec": {"selector": {"app": "x"}, "ports": [{"name": "http", "port": 80}]},
        }
        await client.create("v1", "services", mine, namespace="kube-system")
        created = await client.create("v1", "nodes", node("n1", "10.0.0.1"))
        await cached(
            lambda: (
                controller.nodes.get("n1") is not None
                and controller.services.get("kubetrio-ingress", "kube-system") is not None
            )
        )
        await controller.reconcile(KEY)
        assert created["metadata"]["annotations"][HTTP_PORT_ANNOTATION] == "80"
        assert await ours(client) == {}
