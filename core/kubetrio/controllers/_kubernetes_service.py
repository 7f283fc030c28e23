"""The ``kubernetes`` Service in ``default``: how pods find the API server.

kube-apiserver keeps it itself (its "master endpoints reconciler"): a ClusterIP Service
named ``kubernetes`` on the service range's first address, port 443 named ``https``, and
its ``Endpoints`` and ``EndpointSlice`` (both named ``kubernetes``) holding the address
and port the API server advertises. :class:`KubernetesService` does the same for one API
server: it writes them at start and puts them back every :data:`PERIOD` seconds when
someone deleted or changed them. In-cluster clients (``KUBERNETES_SERVICE_HOST``, the
``kubernetes.default.svc`` name) reach the API through this Service and the node's
service proxy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from kubetrio.client import Client, ClientError, KubeObject

log = logging.getLogger("kubetrio.controllers.kubernetes_service")

NAME = "kubernetes"
NAMESPACE = "default"
PERIOD = 10.0
"""Seconds between checks (kube-apiserver's ``--endpoint-reconciler`` interval)."""


class KubernetesService:
    """Keeps the ``kubernetes`` Service and its endpoints pointing at ``address:port``.

    :param client: a client allowed to write Services, Endpoints and EndpointSlices in
        ``default`` (the API server's loopback client).
    :param address: the API server's advertised IPv4 address, reachable from pods.
    :param port: the port it serves on there (the Service's ``targetPort``).
    :param cluster_ip: the Service's address: the first of the service range.
    """

    def __init__(self, client: Client, *, address: str, port: int, cluster_ip: str) -> None:
        self.client = client
        self.address = address
        self.port = port
        self.cluster_ip = cluster_ip

    def service(self) -> KubeObject:
        """The Service as the API server wants it."""
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": NAME,
                "namespace": NAMESPACE,
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": self.cluster_ip,
                "sessionAffinity": "None",
                "ports": [
                    {"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.port}
                ],
            },
        }

    def endpoints(self) -> KubeObject:
        """The Endpoints (not mirrored into another slice: the API server writes both)."""
        return {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": NAME,
                "namespace": NAMESPACE,
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": [
                {
                    "addresses": [{"ip": self.address}],
                    "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}],
                }
            ],
        }

    def endpoint_slice(self) -> KubeObject:
        """The EndpointSlice the service proxy routes by."""
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": NAME,
                "namespace": NAMESPACE,
                "labels": {"kubernetes.io/service-name": NAME},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}],
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reconcile now (``started`` after the first pass), then every :data:`PERIOD`."""
        await self.reconcile()
        task_status.started()
        while True:
            await trio.sleep(PERIOD)
            try:
                await self.reconcile()
            except ClientError as exc:
                log.warning("the kubernetes Service: %s", exc)

    async def reconcile(self) -> None:
        """Create or repair the Service, its Endpoints and its EndpointSlice."""
        await self._ensure("v1", "services", self.service(), ("spec",), _service_differs)
        await self._ensure("v1", "endpoints", self.endpoints(), ("subsets",), None)
        await self._ensure(
            "discovery.k8s.io/v1",
            "endpointslices",
            self.endpoint_slice(),
            ("addressType", "endpoints", "ports"),
            None,
        )

    async def _ensure(
        self,
        api_version: str,
        resource: str,
        wanted: KubeObject,
        fields: tuple[str, ...],
        differs: Callable[[KubeObject, KubeObject], bool] | None,
    ) -> None:
        try:
            current = await self.client.get(api_version, resource, NAME, namespace=NAMESPACE)
        except ClientError as exc:
            if not exc.not_found:
                raise
            try:
                await self.client.create(api_version, resource, wanted, namespace=NAMESPACE)
            except ClientError as again:
                if not again.conflict:
                    raise
            return
        stale = (
            differs(current, wanted)
            if differs
            else any(current.get(f) != wanted[f] for f in fields)
        )
        labels = (current.get("metadata") or {}).get("labels") or {}
        wanted_labels = wanted["metadata"]["labels"]
        if not stale and all(labels.get(k) == v for k, v in wanted_labels.items()):
            return
        updated = dict(current)
        updated["metadata"] = {**current["metadata"], "labels": {**labels, **wanted_labels}}
        for field in fields:
            if field == "spec":
                # Keep what the API server filled in (clusterIPs, ipFamilies, ...).
                updated["spec"] = {**(current.get("spec") or {}), **wanted["spec"]}
            else:
                updated[field] = wanted[field]
        try:
            await self.client.update(api_version, resource, updated, namespace=NAMESPACE)
        except ClientError as exc:
            if not exc.conflict:
                raise


def _service_differs(current: KubeObject, wanted: KubeObject) -> bool:
    spec, want = current.get("spec") or {}, wanted["spec"]
    ports = [
        {k: p.get(k) for k in ("name", "port", "protocol", "targetPort")}
        for p in spec.get("ports") or []
    ]
    return bool(spec.get("type") != want["type"] or ports != want["ports"])
