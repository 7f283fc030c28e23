"""Gratuitous ARP: tell the underlay at once which MAC now answers for an address.

Without it, hosts that talked to the address before keep sending to the old node until
their neighbour entry goes stale and is probed again (seconds). A gratuitous ARP request
(sender = target = the address, as ``arping -U`` sends) makes Linux and switches update
an entry they already hold; it creates none (``arp_accept`` is off by default), which is
fine — a host without an entry asks and the announcing node answers.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

import trio

from kubetrio.netns import in_netns

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def garp_frame(mac: bytes, ip: str) -> bytes:
    """An Ethernet broadcast frame holding a gratuitous ARP request for ``ip`` from ``mac``."""
    address = ipaddress.IPv4Address(ip).packed
    ethernet = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    # htype Ethernet, ptype IPv4, hlen 6, plen 4, op request; sha, spa, tha (zero), tpa
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + address + b"\x00" * 6 + address
    return ethernet + arp


def send_garp_sync(interface: str, ip: str, *, netns: str | None = None, count: int = 2) -> None:
    """Send ``count`` gratuitous ARPs for ``ip`` out of ``interface`` (blocking; root)."""

    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
            sock.bind((interface, ETH_P_ARP))
            mac = sock.getsockname()[4]
            frame = garp_frame(mac, ip)
            for _ in range(count):
                sock.send(frame)

    in_netns(netns, send)


async def send_garp(interface: str, ip: str, *, netns: str | None = None) -> None:
    """:func:`send_garp_sync` in a worker thread."""
    await trio.to_thread.run_sync(lambda: send_garp_sync(interface, ip, netns=netns))
