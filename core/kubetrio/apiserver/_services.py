"""ClusterIP and NodePort allocation for Services: unique, stable for the Service's life.

Each allocated address or port is a key in the store (``/registry/ranges/serviceips/<ip>``,
``/registry/ranges/servicenodeports/<port>``), claimed with a create — so two API servers
on one etcd can never hand out the same one — and released when the Service is deleted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
from typing import Any

from kubetrio import store as kv
from kubetrio.kubeobject import KubeObject

from ._status import invalid

DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
KUBERNETES_SERVICE_IP = str(ipaddress.IPv4Network(DEFAULT_SERVICE_CIDR).network_address + 1)
"""The ``kubernetes`` Service's ClusterIP: the range's first address (``api_server_ip``)."""
DEFAULT_NODE_PORTS = (30000, 32767)
IP_PREFIX = "/registry/ranges/serviceips/"
PORT_PREFIX = "/registry/ranges/servicenodeports/"
_TRIES = 64


class ServiceAllocator:
    """Hands out ClusterIPs from the service CIDR and NodePorts from their range."""

    def __init__(
        self,
        store: kv.Store,
        *,
        cidr: str = DEFAULT_SERVICE_CIDR,
        node_ports: tuple[int, int] = DEFAULT_NODE_PORTS,
    ) -> None:
        self.store = store
        self.network = ipaddress.IPv4Network(cidr)
        self.node_ports = node_ports

    @property
    def api_server_ip(self) -> str:
        """The first address of the range, kept for the ``kubernetes`` Service."""
        return str(self.network.network_address + 1)

    async def _claim(self, key: str, owner: str) -> bool:
        try:
            await self.store.create(key, owner.encode())
        except kv.AlreadyExists:
            return False
        return True

    async def allocate(self, service: KubeObject) -> None:
        """Fill in ``spec.clusterIP(s)`` and missing ``nodePort``s, claiming each one.

        Requested values are honoured when free (422 when taken or out of range). On
        failure, what this call claimed is released again.
        """
        spec = service.setdefault("spec", {})
        meta = service.get("metadata") or {}
        owner = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        claimed: list[str] = []
        try:
            await self._allocate_ip(spec, owner, claimed, meta.get("name", ""))
            await self._allocate_ports(spec, owner, claimed, meta.get("name", ""))
        except BaseException:
            for key in claimed:
                await self._release_key(key)
            raise

    async def _allocate_ip(
        self, spec: KubeObject, owner: str, claimed: list[str], name: str
    ) -> None:
        if spec.get("type") == "ExternalName":
            return
        requested = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
        if requested == "None":
            spec["clusterIPs"] = ["None"]
        elif requested:
            try:
                address = ipaddress.IPv4Address(requested)
            except ValueError:
                raise _invalid(
                    name, "spec.clusterIP", requested, "must be a valid IP address, (e.g. 10.9.8.7)"
                ) from None
            if address not in self.network:
                raise _invalid(
                    name,
                    "spec.clusterIP",
                    requested,
                    f"provided IP is not in the valid range. The range of valid IPs "
                    f"is {self.network}",
                )
            if not await self._claim(IP_PREFIX + requested, owner):
                raise _invalid(
                    name, "spec.clusterIP", requested, "provided IP is already allocated"
                )
            claimed.append(IP_PREFIX + requested)
            spec["clusterIP"] = requested
            spec["clusterIPs"] = [requested]
        else:
            size = self.network.num_addresses
            for _ in range(_TRIES):
                offset = random.randrange(2, size - 1)  # .0 network, .1 the API server
                candidate = str(self.network.network_address + offset)
                if await self._claim(IP_PREFIX + candidate, owner):
                    claimed.append(IP_PREFIX + candidate)
                    spec["clusterIP"] = candidate
                    spec["clusterIPs"] = [candidate]
                    break
            else:
                raise _invalid(name, "spec.clusterIP", "", "range is full")
        if spec.get("clusterIP") != "None":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")

    async def _allocate_ports(
        self, spec: KubeObject, owner: str, claimed: list[str], name: str
    ) -> None:
        if spec.get("type") not in ("NodePort", "LoadBalancer"):
            return
        low, high = self.node_ports
        for i, port in enumerate(spec.get("ports") or []):
            requested = port.get("nodePort")
            field = f"spec.ports[{i}].nodePort"
            if requested:
                if not isinstance(requested, int) or not low <= requested <= high:
                    raise _invalid(
                        name,
                        field,
                        requested,
                        f"provided port is not in the valid range. "
                        f"The range of valid ports is {low}-{high}",
                    )
                if not await self._claim(f"{PORT_PREFIX}{requested}", owner):
                    raise _invalid(name, field, requested, "provided port is already allocated")
                claimed.append(f"{PORT_PREFIX}{requested}")
                continue
            for _ in range(_TRIES):
                candidate = random.randint(low, high)
                if await self._claim(f"{PORT_PREFIX}{candidate}", owner):
                    claimed.append(f"{PORT_PREFIX}{candidate}")
                    port["nodePort"] = candidate
                    break
            else:
                raise _invalid(name, field, "", "range is full")

    def keep_allocations(self, old: KubeObject, new: KubeObject) -> None:
        """On update: ClusterIPs are immutable and node ports stay with their ports."""
        old_spec = old.get("spec") or {}
        new_spec = new.setdefault("spec", {})
        name = (new.get("metadata") or {}).get("name", "")
        for field in ("clusterIP", "clusterIPs"):
            if old_spec.get(field) is None:
                continue
            if new_spec.get(field) in (None, "", []):
                new_spec[field] = old_spec[field]
            elif new_spec[field] != old_spec[field]:
                raise _invalid(name, f"spec.{field}", new_spec[field], "field is immutable")
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if key in old_spec:
                new_spec.setdefault(key, old_spec[key])
        if new_spec.get("type") in ("NodePort", "LoadBalancer"):
            old_ports = {p.get("port"): p.get("nodePort") for p in old_spec.get("ports") or []}
            for port in new_spec.get("ports") or []:
                if not port.get("nodePort") and old_ports.get(port.get("port")):
                    port["nodePort"] = old_ports[port.get("port")]

    async def release(self, service: KubeObject) -> None:
        """Give back a deleted Service's ClusterIP and node ports."""
        spec = service.get("spec") or {}
        for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            if ip and ip != "None":
                await self._release_key(IP_PREFIX + ip)
        for port in spec.get("ports") or []:
            if port.get("nodePort"):
                await self._release_key(f"{PORT_PREFIX}{port['nodePort']}")

    async def _release_key(self, key: str) -> None:
        with contextlib.suppress(kv.NotFound):
            await self.store.delete(key)


def _invalid(name: str, field: str, value: Any, detail: str) -> Exception:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return invalid(
        "Service",
        "",
        name,
        [
            {
                "reason": "FieldValueInvalid",
                "field": field,
                "message": f"Invalid value: {shown}: {detail}",
            }
        ],
    )
