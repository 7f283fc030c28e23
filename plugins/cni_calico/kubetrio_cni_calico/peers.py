"""Who the other nodes are and which pod blocks they hold: the model every route mode shares.

A peer is another node with at least one pod block. Its blocks come from the IPAMBlock
objects (``spec.node``, ``spec.cidr``) — all of them, since a node may hold several —
plus the block its route agent publishes on the Node (``<prefix>block``), which is all
there is when the API server does not serve ``ipamblocks``. Its underlay address is the
``<prefix>underlay-ip`` annotation its route agent publishes, else its InternalIP; the
rest of its ``<prefix>*`` annotations are the tunnel details of the mode (the VXLAN MAC).

:class:`PeerRoutes` is the shared skeleton of a route agent (VXLAN, IPIP): find the
underlay address, set up the device, publish the node's annotations, then re-derive the
whole peer table after every change of Nodes or blocks and program the difference. The
state is level-based, so a missed event or a failed command heals on the next pass.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import trio

from kubetrio.client import Client, ClientError, FunctionHandler, Informer, KubeObject

from .blocks import API_VERSION, PLURAL, is_extra

log = logging.getLogger("kubetrio.cni_calico.peers")

BLOCK = "block"
UNDERLAY_IP = "underlay-ip"


@dataclass(frozen=True)
class Peer:
    """Another node as a route agent needs it."""

    node: str
    underlay: str | None
    """Where encapsulated (or routed) packets for its blocks go; None while unknown."""
    blocks: tuple[str, ...]
    """Its pod blocks, sorted."""
    tunnel: Mapping[str, str] = field(default_factory=dict)
    """Its ``<prefix>*`` annotations, prefix stripped (``mac``, ``tunnel-ip``, ...)."""


def internal_ip(node: KubeObject) -> str | None:
    """The node's InternalIP address, if it reports one."""
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return str(address["address"])
    return None


async def node_underlay(client: Client, node_name: str, configured: str | None) -> str:
    """``configured``, else the Node's InternalIP once the node agent has registered it."""
    if configured:
        return configured
    while True:  # the node agent registers the Node right after starting node services
        try:
            found = internal_ip(await client.get("v1", "nodes", node_name))
        except ClientError as exc:
            if not exc.not_found:
                raise
        else:
            if found:
                return found
        await trio.sleep(0.2)


async def publish(client: Client, node_name: str, annotations: Mapping[str, str]) -> None:
    """Merge ``annotations`` into the Node, waiting for it to be registered."""
    while True:
        try:
            await client.patch(
                "v1", "nodes", node_name, {"metadata": {"annotations": dict(annotations)}}
            )
            return
        except ClientError as exc:
            if not exc.not_found:
                raise
        await trio.sleep(0.2)  # not registered yet


class PeerTable:
    """Follows Nodes and IPAMBlocks and derives the peers of ``node_name`` from them.

    :param prefix: the annotation prefix of the mode (``vxlan.kubetrio.io/``).
    """

    def __init__(self, client: Client, node_name: str, *, prefix: str) -> None:
        self.client = client
        self.node_name = node_name
        self.prefix = prefix
        self.nodes = Informer(client, "v1", "nodes")
        self.blocks: Informer | None = Informer(client, API_VERSION, PLURAL)
        """None when the API server does not serve ``ipamblocks``."""
        self.changed = trio.Event()
        """Set on any change; the consumer replaces it before each pass."""

    def _poke(self, _obj: KubeObject) -> None:
        self.changed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the objects until cancelled; ``started`` once the caches are filled."""
        try:
            await self.client.list(API_VERSION, PLURAL, limit=1)
        except ClientError as exc:
            if not exc.not_found:
                raise
            log.info("ipamblocks are not served: peers' blocks come from Node annotations")
            self.blocks = None
        async with trio.open_nursery() as nursery:
            for informer in (self.nodes, self.blocks):
                if informer is not None:
                    informer.add_handler(FunctionHandler(self._poke))
                    await nursery.start(informer.run)
            task_status.started()

    def blocks_by_node(self) -> dict[str, list[str]]:
        """node → its block CIDRs from the IPAMBlock objects, each node's first block first."""
        items = self.blocks.list() if self.blocks is not None else []
        items.sort(key=lambda b: (is_extra(b), ipaddress.IPv4Network(b["spec"]["cidr"])))
        found: dict[str, list[str]] = {}
        for item in items:
            spec = item.get("spec") or {}
            if spec.get("node") and spec.get("cidr"):
                found.setdefault(str(spec["node"]), []).append(str(spec["cidr"]))
        return found

    def own_blocks(self) -> list[str]:
        """This node's blocks, its first block first."""
        return self.blocks_by_node().get(self.node_name, [])

    def peers(self) -> dict[str, Peer]:
        """node name → :class:`Peer`, for every other node holding a block."""
        by_node = self.blocks_by_node()
        found = {}
        for node in self.nodes.list():
            name = str(node["metadata"]["name"])
            annotations = node["metadata"].get("annotations") or {}
            tunnel = {
                key.removeprefix(self.prefix): str(value)
                for key, value in annotations.items()
                if key.startswith(self.prefix)
            }
            blocks = set(by_node.get(name, []))
            if tunnel.get(BLOCK):
                blocks.add(tunnel[BLOCK])
            if name == self.node_name or not blocks:
                continue
            underlay = tunnel.get(UNDERLAY_IP) or internal_ip(node)
            found[name] = Peer(name, underlay, tuple(sorted(blocks)), tunnel)
        return found


class PeerRoutes:
    """The skeleton of a route agent: subclasses set :attr:`prefix` and :attr:`kind` and
    implement :meth:`setup`, :meth:`sync` and :meth:`remove`.

    :param block: this node's first block (the tunnel address comes from it); None to
        read it from the IPAMBlock objects.
    :param underlay_ip: this node's underlay address; None for the Node's InternalIP.
    :param netns: run every ``ip``/``bridge`` command (and open devices) in this named
        network namespace (tests put several nodes in one process); None for our own.
    """

    prefix = ""
    """Annotation prefix of the mode."""
    kind = ""
    """The mode's name, for log lines."""

    def __init__(
        self,
        client: Client,
        node_name: str,
        *,
        underlay_ip: str | None = None,
        netns: str | None = None,
        block: str | None = None,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.underlay_ip = underlay_ip
        self.netns = netns
        self.block = ipaddress.IPv4Network(block) if block else None
        self.table = PeerTable(client, node_name, prefix=self.prefix)

    async def _cmd(self, tool: str, *args: str, check: bool = True) -> bytes:
        prefix = [tool, "-n", self.netns] if self.netns else [tool]
        result = await trio.run_process(
            [*prefix, *args], check=check, capture_stdout=True, capture_stderr=True
        )
        return bytes(result.stdout)

    async def own_block(self) -> ipaddress.IPv4Network:
        """This node's first block: as given, else from the IPAMBlocks (waits for it)."""
        while self.block is None:
            own = self.table.own_blocks()
            if own:
                self.block = ipaddress.IPv4Network(own[0])
            else:
                self.table.changed = trio.Event()
                await self.table.changed.wait()
        return self.block

    async def setup(self, underlay: str) -> dict[str, str]:
        """Create the device; return the annotations (without prefix) to publish."""
        raise NotImplementedError

    async def sync(self) -> None:
        """Program what :attr:`table` calls for now; remove what it no longer does."""
        raise NotImplementedError

    async def remove(self) -> None:
        """Take down the device and everything programmed through it."""
        raise NotImplementedError

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the peers until cancelled; ``started`` once their table is read.

        The tunnel is set up (and published) when the first peer appears: a lone node —
        a one-node cluster in the host's own namespace — gets no device. Without
        ``ipamblocks`` peers show only through what they publish, so then at once.
        """
        underlay = await node_underlay(self.client, self.node_name, self.underlay_ip)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.table.run)
            task_status.started()
            while self.table.blocks is not None and not self.table.peers():
                self.table.changed = trio.Event()
                await self.table.changed.wait()
            annotations = await self.setup(underlay)
            annotations[UNDERLAY_IP] = underlay
            nursery.start_soon(
                publish,
                self.client,
                self.node_name,
                {self.prefix + key: value for key, value in annotations.items()},
            )
            while True:
                self.table.changed = trio.Event()
                try:
                    await self.sync()
                except Exception as exc:  # a refused command: log, retry on a timer
                    log.warning("programming %s peers failed: %s", self.kind, exc)
                    with trio.move_on_after(1.0):
                        await self.table.changed.wait()
                    continue
                await self.table.changed.wait()


class RouteAgent(Protocol):
    """What the network plugin runs per mode: :class:`PeerRoutes` subclasses and BGP."""

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Set up, then keep routes to the peers until cancelled."""
        ...

    async def remove(self) -> None:
        """Take down what :meth:`run` set up."""
        ...
