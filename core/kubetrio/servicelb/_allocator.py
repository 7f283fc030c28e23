"""The allocator: LoadBalancer Services get an address from the pool in their status.

Runs in the controller manager (under its Lease). For each Service that
:func:`~._service.is_ours` it picks an address — ``spec.loadBalancerIP`` when that is in
the pool and free, else the address the Service already shows, else the lowest free one
— and writes ``status.loadBalancer.ingress: [{ip, ipMode: VIP}]`` through the
``services/status`` subresource with the resourceVersion it read (a conflict is retried
from a fresh cache). Events on the Service say what happened: ``IPAllocated``, or
``AllocationFailed`` (pool exhausted, requested address outside the pool or taken) while
the Service stays pending; it is looked at again whenever an address is released.

No address is ever given to two Services: :attr:`ServiceLBController.owners` (address →
Service key) is rebuilt from the Services' statuses each time leadership is gained
(older Services keep an address two of them claim) and is updated *before* the status
is written, with no await in between, so two workers cannot pick the same address. A
Service that is deleted, changes type or moves to another class gives its address back.
"""

from __future__ import annotations

import copy
import logging

from kubetrio.client import FunctionHandler, Informer, KubeObject
from kubetrio.controllers import ControllerContext, QueueController, Result
from kubetrio.controllers._objects import creation_time
from kubetrio.controllers._reconcile import object_key, split_key

from ._pool import AddressPool
from ._service import IP_MODE, ingress_ips, is_ours

log = logging.getLogger("kubetrio.servicelb.allocator")


class ServiceLBController(QueueController):
    """Assigns LoadBalancer Services addresses from a pool (module docstring).

    :param pool: the pool, as :class:`AddressPool` or its text (``CIDR`` or ``a-b``, comma-joined).
    """

    name = "servicelb"
    workers = 2

    def __init__(self, pool: str | AddressPool) -> None:
        super().__init__()
        self.pool = pool if isinstance(pool, AddressPool) else AddressPool(pool)
        self.owners: dict[str, str] = {}
        """Address → key of the Service holding it."""
        self.waiting: set[str] = set()
        """Keys of Services that found no address; retried when one is released."""

    def setup(self, ctx: ControllerContext) -> None:
        """Watch Services."""
        super().setup(ctx)
        self.services: Informer = ctx.informers.informer("v1", "services")
        self.services.add_handler(FunctionHandler(lambda s: self.queue.add(object_key(s))))

    def primary(self) -> Informer | None:
        """Services."""
        return self.services

    def started_leading(self) -> None:
        """Rebuild who holds which address from the Services' statuses, then look at all."""
        self.owners = {}
        self.waiting.clear()
        for service in sorted(
            self.services.list(), key=lambda s: (creation_time(s), object_key(s))
        ):
            if is_ours(service):
                for ip in ingress_ips(service):
                    if ip in self.pool:
                        self.owners.setdefault(ip, object_key(service))
        super().started_leading()

    def addresses_of(self, key: str) -> list[str]:
        """The addresses held by Service ``key``."""
        return sorted(ip for ip, owner in self.owners.items() if owner == key)

    def _release(self, key: str, keep: str | None = None) -> None:
        released = [ip for ip in self.addresses_of(key) if ip != keep]
        for ip in released:
            del self.owners[ip]
        if released:
            log.info("%s released %s", key, ", ".join(released))
            for waiting in self.waiting:
                self.queue.add(waiting)

    def _claim(self, key: str, service: KubeObject) -> tuple[str | None, str]:
        """Take an address for ``key``: (address, "") or (None, why not)."""
        requested = (service.get("spec") or {}).get("loadBalancerIP")
        if requested:
            owner = self.owners.get(requested)
            if requested not in self.pool:
                return None, f"requested IP {requested} is not in the pool {self.pool.spec}"
            if owner not in (None, key):
                return None, f"requested IP {requested} is already in use by {owner}"
            self.owners[requested] = key
            return requested, ""
        for ip in [*ingress_ips(service), *self.addresses_of(key)]:
            if ip in self.pool and self.owners.get(ip) in (None, key):
                self.owners[ip] = key
                return ip, ""
        free = self.pool.first_free(self.owners)
        if free is None:
            return None, "no available IPs"
        self.owners[free] = key
        return free, ""

    async def reconcile(self, key: str) -> Result | None:
        """Give Service ``key`` its address, or take it back."""
        namespace, name = split_key(key)
        service = self.services.get(name, namespace)
        if service is None:
            self.waiting.discard(key)
            self._release(key)
            return None
        if not is_ours(service):
            self.waiting.discard(key)
            self._release(key)
            # A Service that stopped being a LoadBalancer of ours loses what we wrote.
            if (service.get("spec") or {}).get("type") != "LoadBalancer" and any(
                ip in self.pool for ip in ingress_ips(service)
            ):
                await self._write(service, [])
            return None
        address, reason = self._claim(key, service)
        self._release(key, keep=address)
        if address is None:
            self.waiting.add(key)
            self.ctx.events.warning(
                service, "AllocationFailed", f'Failed to allocate IP for "{key}": {reason}'
            )
            if ingress_ips(service):
                await self._write(service, [])
            return None
        self.waiting.discard(key)
        if ingress_ips(service) != [address]:
            await self._write(service, [address])
            self.ctx.events.normal(service, "IPAllocated", f'Assigned IP ["{address}"]')
        return None

    async def _write(self, service: KubeObject, addresses: list[str]) -> None:
        """Replace ``status.loadBalancer`` (conditional on the cached resourceVersion)."""
        changed = copy.deepcopy(service)
        status = changed.setdefault("status", {})
        status["loadBalancer"] = (
            {"ingress": [{"ip": ip, "ipMode": IP_MODE} for ip in addresses]} if addresses else {}
        )
        await self.client.update(
            "v1",
            "services",
            changed,
            namespace=changed["metadata"]["namespace"],
            subresource="status",
        )
