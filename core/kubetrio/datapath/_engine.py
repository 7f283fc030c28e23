"""The TUN tunnel engine: pod traffic between nodes over VXLAN or IPIP, moved by Rust threads.

The engine owns a TUN device on the node. Packets the kernel routes into the device are
looked up in the engine's route table (pod CIDR → remote node), encapsulated and sent with
``sendmmsg``; packets from the underlay arrive through ``recvmmsg``, are decapsulated and
written back to the device. With offloads the device hands over TCP packets of up to
64 KiB: VXLAN sends them as UDP GSO messages, IPIP sends each whole as one IPIP packet that
the kernel fragments on the underlay and the receiving engine writes back as one GSO packet
(the Rust module ``engine.rs`` explains the trade-offs). Python only starts, stops, routes
and reads counters; no packet passes through the interpreter. The caller configures the
device (address, MTU, up, routes into it) after :meth:`TunnelEngine.start`, since the
engine creates it when it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from ipaddress import IPv4Address
from types import TracebackType

import trio

from kubetrio import _datapath

from ._address import IPv4Like, NetworkLike, ipv4_int, ipv4_network
from ._tunnel import VXLAN_PORT, TunnelKind


@dataclass(frozen=True, slots=True)
class TunnelStats:
    """Counters of a :class:`TunnelEngine` since it was created."""

    tx_packets: int
    tx_bytes: int
    tx_batches: int
    tx_no_route: int
    tx_errors: int
    rx_packets: int
    rx_bytes: int
    rx_batches: int
    rx_malformed: int
    rx_errors: int
    tx_aggregates: int = 0
    """TSO packets sent whole as one outer-fragmented IPIP packet (one ``tx_packets`` each)."""
    rx_aggregates: int = 0
    """Reassembled IPIP aggregates, or IPIP packets merged by GRO on the way (``gro_send``),
    written back to the device (one ``rx_packets`` each)."""


class TunnelEngine:
    """A TUN ⇄ underlay tunnel.

    :param mode: ``"vxlan"`` (UDP ``port``, network identifier ``vni``) or ``"ipip"``
        (raw IPv4 socket of protocol 4; the kernel here has no ipip device).
    :param tun_name: TUN device to attach to, created if missing (and then removed on stop).
    :param local: this node's underlay address.
    :param netns: network namespace (name under ``/var/run/netns`` or a path) to open the
        device and socket in; ``None`` for the current one.
    :param batch: packets per ``recvmmsg``/``sendmmsg``.
    :param ttl: outer TTL for IPIP.
    :param offload: use TUN offloads (``IFF_VNET_HDR``, TSO): read 64 KiB TCP packets and
        segment them in Rust, and coalesce received segments into GSO writes.
    :param outer_fragments: IPIP with ``offload``: send each 64 KiB TCP packet whole as one
        IPIP packet that the kernel fragments on the underlay and the receiving engine
        writes back as one GSO packet (peers must be TunnelEngines, in any mode); ``False``
        segments it here into plain RFC 2003 packets, for kernel IPIP peers.
    :param gro_send: IPIP with ``offload``: segment here, but write the segments through a
        second TUN device in NAPI mode (``<tun_name>g``) whose GRO merges them, so each
        64 KiB TCP packet crosses the underlay as one GSO packet of plain RFC 2003 packets;
        the engine falls back to ``outer_fragments`` when that device cannot be set up.
    """

    __slots__ = ("_engine",)

    def __init__(
        self,
        mode: TunnelKind,
        tun_name: str,
        local: IPv4Like,
        *,
        vni: int = 1,
        port: int = VXLAN_PORT,
        netns: str | None = None,
        batch: int = 64,
        ttl: int = 64,
        offload: bool = True,
        outer_fragments: bool = True,
        gro_send: bool = False,
    ) -> None:
        self._engine = _datapath.TunnelEngine(
            mode,
            tun_name,
            ipv4_int(local),
            vni=vni,
            port=port,
            netns=netns,
            batch=batch,
            ttl=ttl,
            offload=offload,
            outer_fragments=outer_fragments,
            gro_send=gro_send,
        )

    def add_route(self, network: NetworkLike, remote: IPv4Like) -> IPv4Address | None:
        """Send packets for ``network`` to the node at ``remote``; returns the previous remote."""
        net = ipv4_network(network)
        old = self._engine.add_route(int(net.network_address), net.prefixlen, ipv4_int(remote))
        return None if old is None else IPv4Address(old)

    def remove_route(self, network: NetworkLike) -> IPv4Address | None:
        """Stop routing ``network``; returns the remote it had."""
        net = ipv4_network(network)
        old = self._engine.remove_route(int(net.network_address), net.prefixlen)
        return None if old is None else IPv4Address(old)

    def start(self) -> None:
        """Open the device and socket and start the worker threads.

        :raises DatapathError: the namespace, device or socket cannot be opened (needs
            CAP_NET_ADMIN and CAP_NET_RAW).
        """
        self._engine.start()

    def stop(self) -> None:
        """Stop the threads and close the device and socket (within about 100 ms)."""
        self._engine.stop()

    @property
    def running(self) -> bool:
        """True while the worker threads run."""
        return self._engine.running

    def stats(self) -> TunnelStats:
        """A snapshot of the counters."""
        raw = self._engine.stats()
        return TunnelStats(**{f.name: raw[f.name] for f in fields(TunnelStats)})

    def __enter__(self) -> TunnelEngine:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def run(
        self, *, task_status: trio.TaskStatus[TunnelEngine] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled: ``engine = await nursery.start(engine.run)``."""
        await trio.to_thread.run_sync(self.start)
        try:
            task_status.started(self)
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.stop)
