"""Endpoints and EndpointSlices from Services' selectors and pods' readiness.

One reconcile per Service computes, from the pod cache, the pods its selector matches
that have an IP, resolves each service port's ``targetPort`` per pod (a number, or a
container port *name*, which different pods may map to different numbers), and writes:

* the ``Endpoints`` object of the same name: one subset per distinct set of resolved
  ports, ready pods under ``addresses`` and the others under ``notReadyAddresses``
  (terminating pods are left out; ``publishNotReadyAddresses`` counts every pod ready);
* ``EndpointSlices`` labelled ``kubernetes.io/service-name`` and managed by
  ``endpointslice-controller.k8s.io``, at most :data:`MAX_PER_SLICE` endpoints each,
  with ``ready``/``serving``/``terminating`` conditions (terminating pods included),
  owned by the Service so the garbage collector removes them with it.

Services without a selector are left alone: their Endpoints belong to the user.
"""

from __future__ import annotations

import copy
from typing import Any

from kubetrio.api.selectors import selector_from_set
from kubetrio.client import ClientError, FunctionHandler, Informer, KubeObject

from ._objects import is_deleting, is_pod_ready, labels_of, owner_reference
from ._reconcile import ControllerContext, QueueController, Result, object_key, split_key

MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
SERVICE_NAME = "kubernetes.io/service-name"
MAX_PER_SLICE = 100

PortKey = tuple[tuple[str, int, str], ...]


def _resolve_port(pod: KubeObject, service_port: KubeObject) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol", "TCP")
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def _target_ref(pod: KubeObject) -> KubeObject:
    metadata = pod["metadata"]
    return {
        "kind": "Pod",
        "namespace": metadata["namespace"],
        "name": metadata["name"],
        "uid": metadata["uid"],
    }


class EndpointsController(QueueController):
    """Keeps Endpoints and EndpointSlices of selector Services current."""

    name = "endpoints"
    workers = 3

    def setup(self, ctx: ControllerContext) -> None:
        """Watch services, pods, endpoints and endpoint slices."""
        super().setup(ctx)
        self.services: Informer = ctx.informers.informer("v1", "services")
        self.pods: Informer = ctx.informers.informer("v1", "pods")
        self.endpoints: Informer = ctx.informers.informer("v1", "endpoints")
        self.slices: Informer = ctx.informers.informer("discovery.k8s.io/v1", "endpointslices")
        self.services.add_handler(FunctionHandler(lambda s: self.queue.add(object_key(s))))
        self.pods.add_handler(_PodHandler(self))
        self.endpoints.add_handler(FunctionHandler(lambda e: self.queue.add(object_key(e))))
        self.slices.add_handler(FunctionHandler(self._slice_changed))

    def primary(self) -> Informer | None:
        """Services."""
        return self.services

    def _slice_changed(self, slice_: KubeObject) -> None:
        service = labels_of(slice_).get(SERVICE_NAME)
        if service:
            self.queue.add(f"{slice_['metadata'].get('namespace', '')}/{service}")

    def services_for(self, pod: KubeObject) -> list[str]:
        """Keys of the services in the pod's namespace whose selector matches it."""
        labels = labels_of(pod)
        keys = []
        for service in self.services.list(pod["metadata"].get("namespace", "")):
            selector = (service.get("spec") or {}).get("selector")
            if selector and selector_from_set(selector).matches(labels):
                keys.append(object_key(service))
        return keys

    async def reconcile(self, key: str) -> Result | None:
        """Write the Endpoints and EndpointSlices of service ``key``."""
        namespace, name = split_key(key)
        service = self.services.get(name, namespace)
        if service is None:
            if self.endpoints.get(name, namespace) is not None:
                try:
                    await self.client.delete("v1", "endpoints", name, namespace=namespace)
                except ClientError as exc:
                    if not exc.not_found:
                        raise
            return None
        spec = service.get("spec") or {}
        if not spec.get("selector") or is_deleting(service):
            return None
        selector = selector_from_set(spec["selector"])
        pods = [
            p
            for p in self.pods.list(namespace)
            if selector.matches(labels_of(p))
            and (p.get("status") or {}).get("podIP")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        pods.sort(key=lambda p: (p["status"]["podIP"], p["metadata"]["name"]))
        grouped: dict[PortKey, list[KubeObject]] = {}
        for pod in pods:
            ports: list[tuple[str, int, str]] = []
            for service_port in spec.get("ports") or []:
                resolved = _resolve_port(pod, service_port)
                if resolved is not None:
                    ports.append(
                        (
                            service_port.get("name", ""),
                            resolved,
                            service_port.get("protocol", "TCP"),
                        )
                    )
            if spec.get("ports") and not ports:
                continue  # no port of the service exists on this pod
            grouped.setdefault(tuple(ports), []).append(pod)
        await self.write_endpoints(service, grouped)
        await self.write_slices(service, grouped)
        return None

    def _ready(self, service: KubeObject, pod: KubeObject) -> bool:
        return bool((service.get("spec") or {}).get("publishNotReadyAddresses")) or is_pod_ready(
            pod
        )

    async def write_endpoints(
        self, service: KubeObject, grouped: dict[PortKey, list[KubeObject]]
    ) -> None:
        """Create or update the Endpoints object."""
        metadata = service["metadata"]
        subsets: list[KubeObject] = []
        for ports, pods in sorted(grouped.items()):
            ready: list[KubeObject] = []
            not_ready: list[KubeObject] = []
            for pod in pods:
                if is_deleting(pod):
                    continue
                address: KubeObject = {"ip": pod["status"]["podIP"], "targetRef": _target_ref(pod)}
                node = (pod.get("spec") or {}).get("nodeName")
                if node:
                    address["nodeName"] = node
                (ready if self._ready(service, pod) else not_ready).append(address)
            if not ready and not not_ready:
                continue
            subset: KubeObject = {}
            if ready:
                subset["addresses"] = ready
            if not_ready:
                subset["notReadyAddresses"] = not_ready
            if ports:
                subset["ports"] = [
                    {**({"name": n} if n else {}), "port": p, "protocol": proto}
                    for n, p, proto in ports
                ]
            subsets.append(subset)
        labels = dict(labels_of(service))
        if (service.get("spec") or {}).get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        existing = self.endpoints.get(metadata["name"], metadata["namespace"])
        if existing is None:
            body: KubeObject = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {
                    "name": metadata["name"],
                    "namespace": metadata["namespace"],
                    "labels": labels,
                },
                "subsets": subsets,
            }
            # A 409 means our cache lags: the retry (backoff) updates instead.
            await self.client.create("v1", "endpoints", body, namespace=metadata["namespace"])
            return
        if (existing.get("subsets") or []) == subsets and labels_of(existing) == labels:
            return
        changed = copy.deepcopy(existing)
        changed["subsets"] = subsets
        changed["metadata"]["labels"] = labels
        await self.client.update("v1", "endpoints", changed, namespace=metadata["namespace"])

    async def write_slices(
        self, service: KubeObject, grouped: dict[PortKey, list[KubeObject]]
    ) -> None:
        """Create, update or delete EndpointSlices so they hold exactly the endpoints."""
        metadata = service["metadata"]
        namespace = metadata["namespace"]
        wanted: list[tuple[list[KubeObject], list[KubeObject]]] = []
        for ports, pods in sorted(grouped.items()):
            slice_ports = [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]
            endpoints = []
            for pod in pods:
                terminating = is_deleting(pod)
                ready = self._ready(service, pod)
                endpoint: KubeObject = {
                    "addresses": [pod["status"]["podIP"]],
                    "conditions": {
                        "ready": ready and not terminating,
                        "serving": ready,
                        "terminating": terminating,
                    },
                    "targetRef": _target_ref(pod),
                }
                node = (pod.get("spec") or {}).get("nodeName")
                if node:
                    endpoint["nodeName"] = node
                endpoints.append(endpoint)
            for start in range(0, len(endpoints), MAX_PER_SLICE):
                wanted.append((slice_ports, endpoints[start : start + MAX_PER_SLICE]))
        if not wanted:
            wanted.append(([], []))  # an empty slice says "no endpoints" explicitly
        existing = {
            str(s["metadata"]["name"]): s
            for s in self.slices.list(namespace)
            if labels_of(s).get(SERVICE_NAME) == metadata["name"]
            and labels_of(s).get(MANAGED_BY) == CONTROLLER_NAME
        }
        labels = {
            **labels_of(service),
            SERVICE_NAME: metadata["name"],
            MANAGED_BY: CONTROLLER_NAME,
        }
        # Slice names are the service's name and a position: a lagging cache then gives
        # a 409 and a retry, never a duplicate slice.
        names = [f"{metadata['name']}-{position}" for position in range(len(wanted))]
        for slice_name, (slice_ports, endpoints) in zip(names, wanted, strict=True):
            content: dict[str, Any] = {"endpoints": endpoints, "ports": slice_ports}
            current = existing.get(slice_name)
            if current is not None:
                if (
                    (current.get("endpoints") or []) == endpoints
                    and (current.get("ports") or []) == slice_ports
                    and labels_of(current) == labels
                ):
                    continue
                changed = copy.deepcopy(current)
                changed.update(content)
                changed["metadata"]["labels"] = labels
                await self.client.update(
                    "discovery.k8s.io/v1", "endpointslices", changed, namespace=namespace
                )
                continue
            body: KubeObject = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name,
                    "namespace": namespace,
                    "labels": labels,
                    "ownerReferences": [owner_reference(service)],
                },
                "addressType": "IPv4",
                **content,
            }
            await self.client.create(
                "discovery.k8s.io/v1", "endpointslices", body, namespace=namespace
            )
        for stale_name in sorted(set(existing) - set(names)):
            try:
                await self.client.delete(
                    "discovery.k8s.io/v1", "endpointslices", stale_name, namespace=namespace
                )
            except ClientError as exc:
                if not exc.not_found:
                    raise


class _PodHandler:
    """A pod change enqueues every service that selects it (before and after)."""

    def __init__(self, controller: EndpointsController) -> None:
        self.controller = controller

    def on_add(self, pod: KubeObject) -> None:
        for key in self.controller.services_for(pod):
            self.controller.queue.add(key)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        for key in {*self.controller.services_for(old), *self.controller.services_for(new)}:
            self.controller.queue.add(key)

    def on_delete(self, pod: KubeObject) -> None:
        self.on_add(pod)
