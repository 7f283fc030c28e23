"""The L2 announcer: the node chosen for a LoadBalancer address answers ARP for it.

One announcer runs per node (MetalLB's speaker in L2 mode). All of them read the same
Services, Nodes and EndpointSlices and apply the same rule (:func:`plan`), so every
address is announced by exactly one node without the nodes talking to each other:

* candidates are the Ready Nodes without the label
  ``node.kubernetes.io/exclude-from-external-load-balancers``; for
  ``externalTrafficPolicy: Local`` only those with a ready endpoint of the Service
  (traffic arriving elsewhere would be dropped);
* among them the node whose ``sha256(node "#" address)`` is lowest wins, MetalLB's
  ordering: one node going away moves only its own addresses.

The chosen node adds the address as a ``/32`` to its underlay interface — the one holding
the Node's InternalIP unless ``interface`` is given — labelled ``<interface>:lb`` so it is
recognisably ours, and sends gratuitous ARPs (:mod:`._garp`). The kernel then answers ARP
for it, and the service proxy's ``prerouting``/``output`` DNAT catches the traffic before
local delivery. Addresses that stop being this node's are removed; on stop all of ours
are. Any change re-derives the whole plan (level-based); a periodic pass repairs drift.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections.abc import Iterable

import trio

from kubetrio.client import Client, FunctionHandler, Informer, KubeObject, object_key

from ._garp import send_garp
from ._service import ingress_ips, is_ours

log = logging.getLogger("kubetrio.servicelb.announcer")

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
LABEL_SUFFIX = ":lb"
IFNAMSIZ = 16


def node_is_ready(node: KubeObject) -> bool:
    """Ready condition True, not excluded from load balancers, not being deleted."""
    metadata = node.get("metadata") or {}
    if metadata.get("deletionTimestamp") or EXCLUDE_LABEL in (metadata.get("labels") or {}):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def ready_endpoint_nodes(slices: Iterable[KubeObject]) -> dict[str, set[str]]:
    """Service key → the nodes that run a ready endpoint of it."""
    found: dict[str, set[str]] = {}
    for slice_ in slices:
        metadata = slice_.get("metadata") or {}
        service = (metadata.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not service:
            continue
        nodes = found.setdefault(f"{metadata.get('namespace', '')}/{service}", set())
        for endpoint in slice_.get("endpoints") or []:
            ready = (endpoint.get("conditions") or {}).get("ready") is not False
            if ready and endpoint.get("nodeName"):
                nodes.add(str(endpoint["nodeName"]))
    return found


def choose_node(ip: str, candidates: Iterable[str]) -> str | None:
    """The candidate that announces ``ip``: lowest ``sha256(node#ip)`` (None if none)."""
    return min(
        candidates, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest(), default=None
    )


def plan(
    services: Iterable[KubeObject], nodes: Iterable[KubeObject], slices: Iterable[KubeObject]
) -> dict[str, str]:
    """Address → the node that announces it, for every LoadBalancer address of ours."""
    ready = sorted(str(n["metadata"]["name"]) for n in nodes if node_is_ready(n))
    local: dict[str, set[str]] | None = None
    result: dict[str, str] = {}
    for service in services:
        if not is_ours(service):
            continue
        candidates = ready
        if (service.get("spec") or {}).get("externalTrafficPolicy") == "Local":
            if local is None:
                local = ready_endpoint_nodes(slices)
            with_endpoint = local.get(object_key(service), set())
            candidates = [n for n in ready if n in with_endpoint]
        for ip in ingress_ips(service):
            node = choose_node(ip, candidates)
            if node is not None:
                result.setdefault(ip, node)
    return result


class ServiceLBAnnouncer:
    """Announces this node's share of LoadBalancer addresses on its underlay (module doc).

    Start it with ``await nursery.start(announcer.run)``; it returns to the starter after
    the first pass and removes its addresses when cancelled.

    :param client: the cluster client.
    :param node_name: this node's name.
    :param interface: the underlay interface; None = the one holding the Node's InternalIP.
    :param netns: network namespace to work in (a name under ``/var/run/netns``); None =
        the announcer's own.
    :param resync_interval: seconds between passes that repair drift.
    """

    def __init__(
        self,
        client: Client,
        node_name: str,
        *,
        interface: str | None = None,
        netns: str | None = None,
        resync_interval: float = 30.0,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.interface = interface
        self.netns = netns
        self.resync_interval = resync_interval
        self.services = Informer(client, "v1", "services")
        self.nodes = Informer(client, "v1", "nodes")
        self.slices = Informer(client, "discovery.k8s.io/v1", "endpointslices")
        self.announced: set[str] = set()
        """The addresses this node holds now."""
        self._found_interface: str | None = None
        self._changed = trio.Event()
        for informer in (self.services, self.nodes, self.slices):
            informer.add_handler(FunctionHandler(lambda _: self._changed.set()))

    def wanted(self) -> set[str]:
        """The addresses this node should announce, from the caches."""
        chosen = plan(self.services.list(), self.nodes.list(), self.slices.list())
        return {ip for ip, node in chosen.items() if node == self.node_name}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Announce until cancelled; ``started`` after the first pass."""
        try:
            async with trio.open_nursery() as nursery:
                for informer in (self.services, self.nodes, self.slices):
                    await nursery.start(informer.run)
                await self._pass(check=True)
                task_status.started()
                while True:
                    with trio.move_on_after(self.resync_interval) as timer:
                        await self._changed.wait()
                    self._changed = trio.Event()
                    # A timed-out wait is the periodic pass: look at the kernel too.
                    await self._pass(check=timer.cancelled_caught)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self.remove()
                except (OSError, subprocess.CalledProcessError) as exc:
                    # The namespace may be gone already; never mask why we stopped.
                    log.warning("%s: removing announced addresses failed: %s", self.node_name, exc)

    async def _pass(self, *, check: bool) -> None:
        try:
            await self.sync(check=check)
        except (OSError, subprocess.CalledProcessError) as exc:
            log.warning("%s: announcing failed: %s", self.node_name, exc)

    async def sync(self, *, check: bool = True) -> None:
        """Add and remove addresses so this node holds exactly :meth:`wanted`.

        ``check=False`` trusts :attr:`announced` when nothing changed (no ``ip`` call).
        """
        wanted = self.wanted()
        if not check and wanted == self.announced:
            return
        interface = await self._underlay()
        if interface is None:
            if wanted:
                log.warning("%s: no underlay interface found; not announcing", self.node_name)
            return
        present = await self._ours(interface)
        for ip in sorted(present - wanted):
            await self._ip("addr", "del", f"{ip}/32", "dev", interface, check=False)
            log.info("%s: stopped announcing %s", self.node_name, ip)
        self.announced = present & wanted
        label = _label(interface)
        for ip in sorted(wanted - present):
            added = await trio.run_process(
                [*self._prefix(), "addr", "add", f"{ip}/32", "dev", interface,
                 *(["label", label] if label else [])],
                check=False, capture_stderr=True,
            )  # fmt: skip
            if added.returncode != 0:
                # E.g. somebody configured the address by hand: not ours to take over.
                # It stays out of announced, so the next change tries again.
                log.warning("%s: cannot announce %s: %s", self.node_name, ip, added.stderr.decode())
                continue
            self.announced.add(ip)
            await send_garp(interface, ip, netns=self.netns)
            log.info("%s: announcing %s on %s", self.node_name, ip, interface)

    async def remove(self) -> None:
        """Remove every address this announcer added (also ones left by an earlier run)."""
        interface = self.interface or self._found_interface
        if interface is None:
            return
        for ip in sorted(await self._ours(interface)):
            await self._ip("addr", "del", f"{ip}/32", "dev", interface, check=False)
        self.announced = set()

    def _prefix(self) -> list[str]:
        return ["ip", "-n", self.netns] if self.netns else ["ip"]

    async def _ip(self, *args: str, check: bool = True) -> bytes:
        result = await trio.run_process(
            [*self._prefix(), *args], check=check, capture_stdout=True, capture_stderr=True
        )
        return bytes(result.stdout)

    async def _addresses(self, *args: str) -> list[KubeObject]:
        shown: list[KubeObject] = json.loads(
            await self._ip("-j", "-4", "addr", "show", *args) or b"[]"
        )
        return shown

    async def _underlay(self) -> str | None:
        """The interface to announce on (remembered once found)."""
        if self.interface or self._found_interface:
            return self.interface or self._found_interface
        node = self.nodes.get(self.node_name)
        internal = [
            a.get("address")
            for a in ((node or {}).get("status") or {}).get("addresses") or []
            if a.get("type") == "InternalIP"
        ]
        for link in await self._addresses():
            if any(a.get("local") in internal for a in link.get("addr_info") or []):
                self._found_interface = str(link["ifname"])
                return self._found_interface
        return None

    async def _ours(self, interface: str) -> set[str]:
        """Addresses on ``interface`` that carry our label (or that we know we added)."""
        label = _label(interface)
        result = set()
        for link in await self._addresses("dev", interface):
            for address in link.get("addr_info") or []:
                mine = (
                    address.get("label") == label
                    if label
                    else address.get("local") in self.announced
                )
                if mine and address.get("prefixlen") == 32:
                    result.add(str(address["local"]))
        return result


def _label(interface: str) -> str | None:
    """``<interface>:lb`` when it fits in IFNAMSIZ (else addresses are tracked in memory)."""
    label = interface + LABEL_SUFFIX
    return label if len(label) < IFNAMSIZ else None
