"""The ingress's LoadBalancer: ``kube-system/kubetrio-ingress`` in front of every node's nginx.

As k3s publishes traefik (and ingress-nginx's chart its controller) through a
LoadBalancer Service, :class:`IngressLoadBalancer` — run by the controller manager beside
the allocator, when there is an address pool — keeps:

* the Service :data:`~kubetrio.ingress.LB_SERVICE` (type LoadBalancer, ports ``http`` 80
  and ``https`` 443, no selector), created once a node serves Ingresses; the allocator
  gives it an address like any other and the announcers announce it;
* its EndpointSlices (:func:`ingress_slices`): every Node that carries the ingress
  controller's port annotations (:data:`~kubetrio.ingress.HTTP_PORT_ANNOTATION`), by
  its InternalIP, ready while the Node is Ready (and not excluded from load balancers).
  Nodes serving on other ports than most go into a slice of their own, since a slice's
  ports hold for all its endpoints.

The nodes write nothing but their own Node's annotations, which the Node authorizer and
NodeRestriction already allow (no node may write EndpointSlices). The service proxy then
takes ``<address>:80`` to some node's ``InternalIP:<http-port>`` like any Service, and
the ingress controllers write the address into their Ingresses' status.

A Service of that name that someone gave a selector is theirs: its slices are left to
the endpoints controller. One deleted comes back while nodes still serve.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject
from kubetrio.controllers import ControllerContext, QueueController, Result
from kubetrio.controllers._objects import is_deleting, labels_of, owner_reference
from kubetrio.ingress import HTTP_PORT_ANNOTATION, HTTPS_PORT_ANNOTATION, LB_SERVICE

from ._announcer import SERVICE_NAME_LABEL, node_is_ready

MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "ingress-loadbalancer.servicelb.kubetrio.io"
"""The slices' ``managed-by``: not the endpoints controller's, so it leaves them alone."""
KEY = f"{LB_SERVICE[0]}/{LB_SERVICE[1]}"


def ingress_service() -> KubeObject:
    """The Service as it is created."""
    namespace, name = LB_SERVICE
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "kubetrio"},
        },
        "spec": {
            "type": "LoadBalancer",
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
            ],
        },
    }


def _port(value: object) -> int | None:
    """An annotation's port number (None unless 1-65535)."""
    text = str(value or "")
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def ingress_ports(node: KubeObject) -> tuple[int, int] | None:
    """(HTTP, HTTPS) ports the node's nginx serves on, from its annotations (None: none)."""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    http, https = (
        _port(annotations.get(HTTP_PORT_ANNOTATION)),
        _port(annotations.get(HTTPS_PORT_ANNOTATION)),
    )
    return (http, https) if http is not None and https is not None else None


def _internal_ip(node: KubeObject) -> str | None:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP" and address.get("address"):
            return str(address["address"])
    return None


def ingress_slices(service: KubeObject, nodes: Iterable[KubeObject]) -> list[KubeObject]:
    """The EndpointSlices ``service`` should have: one per pair of ports the serving nodes
    use (named ``<service>-<http>-<https>``), each node's InternalIP an endpoint, sorted."""
    metadata = service["metadata"]
    groups: dict[tuple[int, int], list[KubeObject]] = {}
    for node in sorted(nodes, key=lambda n: str(n["metadata"]["name"])):
        ports, address = ingress_ports(node), _internal_ip(node)
        if ports is None or address is None:
            continue
        ready = node_is_ready(node)
        groups.setdefault(ports, []).append(
            {
                "addresses": [address],
                "conditions": {
                    "ready": ready,
                    "serving": ready,
                    "terminating": is_deleting(node),
                },
                "nodeName": str(node["metadata"]["name"]),
            }
        )
    labels = {SERVICE_NAME_LABEL: str(metadata["name"]), MANAGED_BY_LABEL: MANAGED_BY}
    return [
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{metadata['name']}-{http}-{https}",
                "namespace": metadata["namespace"],
                "labels": labels,
                "ownerReferences": [owner_reference(service)],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [
                {"name": "http", "port": http, "protocol": "TCP", "appProtocol": "http"},
                {"name": "https", "port": https, "protocol": "TCP", "appProtocol": "https"},
            ],
        }
        for (http, https), endpoints in sorted(groups.items())
    ]


class IngressLoadBalancer(QueueController):
    """Keeps the ingress's LoadBalancer Service and its EndpointSlices (module doc)."""

    name = "ingress-loadbalancer"
    workers = 1  # one key

    def setup(self, ctx: ControllerContext) -> None:
        """Watch Nodes, Services and EndpointSlices; all changes look at the one key."""
        super().setup(ctx)
        self.nodes: Informer = ctx.informers.informer("v1", "nodes")
        self.services: Informer = ctx.informers.informer("v1", "services")
        self.slices: Informer = ctx.informers.informer("discovery.k8s.io/v1", "endpointslices")
        self.nodes.add_handler(FunctionHandler(lambda _: self.queue.add(KEY)))
        for informer in (self.services, self.slices):
            informer.add_handler(FunctionHandler(self._maybe_ours))

    def _maybe_ours(self, obj: KubeObject) -> None:
        metadata = obj.get("metadata") or {}
        name = labels_of(obj).get(SERVICE_NAME_LABEL) or metadata.get("name")
        if (metadata.get("namespace"), name) == LB_SERVICE:
            self.queue.add(KEY)

    def started_leading(self) -> None:
        """Look at the Service again."""
        self.queue.add(KEY)

    async def reconcile(self, key: str) -> Result | None:
        """Create the Service when a node serves, then make its slices match the nodes."""
        namespace, name = LB_SERVICE
        nodes = self.nodes.list()
        service = self.services.get(name, namespace)
        if service is None:
            if not any(ingress_ports(n) for n in nodes):
                return None
            try:
                service = await self.client.create(
                    "v1", "services", ingress_service(), namespace=namespace
                )
            except ClientError as exc:
                if not exc.conflict:
                    raise
                return Result(requeue=True)  # the cache lags a Service that exists
        if is_deleting(service) or (service.get("spec") or {}).get("selector"):
            return None
        await self._write_slices(ingress_slices(service, nodes))
        return None

    async def _write_slices(self, wanted: list[KubeObject]) -> None:
        namespace, name = LB_SERVICE
        existing = {
            str(s["metadata"]["name"]): s
            for s in self.slices.list(namespace)
            if labels_of(s).get(SERVICE_NAME_LABEL) == name
            and labels_of(s).get(MANAGED_BY_LABEL) == MANAGED_BY
        }
        for slice_ in wanted:
            current = existing.get(slice_["metadata"]["name"])
            if current is None:
                await self.client.create(
                    "discovery.k8s.io/v1", "endpointslices", slice_, namespace=namespace
                )
                continue
            if _same(current, slice_):
                continue
            changed: dict[str, Any] = copy.deepcopy(current)
            changed.update({k: slice_[k] for k in ("endpoints", "ports")})
            changed["metadata"]["labels"] = {**labels_of(current), **slice_["metadata"]["labels"]}
            changed["metadata"]["ownerReferences"] = slice_["metadata"]["ownerReferences"]
            await self.client.update(
                "discovery.k8s.io/v1", "endpointslices", changed, namespace=namespace
            )
        for stale in sorted(set(existing) - {s["metadata"]["name"] for s in wanted}):
            try:
                await self.client.delete(
                    "discovery.k8s.io/v1", "endpointslices", stale, namespace=namespace
                )
            except ClientError as exc:
                if not exc.not_found:
                    raise


def _same(current: KubeObject, wanted: KubeObject) -> bool:
    """Whether ``current`` already says what ``wanted`` does (server defaults aside)."""
    metadata = current.get("metadata") or {}
    owners = [(o.get("uid"), o.get("controller")) for o in metadata.get("ownerReferences") or []]
    return (
        current.get("endpoints") == wanted["endpoints"]
        and current.get("ports") == wanted["ports"]
        and all(labels_of(current).get(k) == v for k, v in wanted["metadata"]["labels"].items())
        and owners == [(o["uid"], True) for o in wanted["metadata"]["ownerReferences"]]
    )
