"""A pod's veth pair, address and routes through rtnetlink in-process.

Wiring a pod with ``ip`` took ten processes (about 40 ms of a 2-core node per pod, most
of it fork and exec). Here the same requests go over two ``NETLINK_ROUTE`` sockets, one
in the node's namespace and one in the pod's (made with
:func:`kubetrio.netns.socket_in_netns`, so nothing forks to reach a namespace).

The messages are packed by hand, like the nftables printer's (``kubetrio.nft._netlink``):
pyroute2 0.9 was tried first and measured at ~1.2 ms of CPU per request (an asyncio
event loop turn per call), 12-17 ms per pod in the agent's own process, whose GIL is
what a burst of pods queues on; wired this way a pod costs ~1.3 ms of CPU (2 cores).

Everything blocks briefly and is meant for a worker thread:
``trio.to_thread.run_sync(in_netns, node_netns, lambda: wire_pod(...))``.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterator

from kubetrio.netns import socket_in_netns

__all__ = ["Rtnl", "host_link_names", "pod_host_routes", "remove_link", "wire_pod"]

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
NLA_F_NESTED = 0x8000
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR = 20
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 4, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
"""The protocol ``ip route add`` gives routes by default; the ``ip`` path made the same."""
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1
LOOPBACK_INDEX = 1
"""The kernel gives every namespace's ``lo`` this index."""
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst/src len, tos, table, proto, ...


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _str(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _ipv4(kind: int, address: str) -> bytes:
    return _attr(kind, ipaddress.IPv4Address(address).packed)


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)


def _attrs(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    """``(type, payload)`` of the attributes in ``data`` from ``offset`` on."""
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & ~NLA_F_NESTED, data[offset + 4 : offset + length]
        offset += length + (-length % 4)


class Rtnl:
    """A ``NETLINK_ROUTE`` socket of one network namespace, one request at a time."""

    def __init__(self, netns: str | None = None) -> None:
        """``netns``: the namespace (a name or path; None: the calling thread's)."""
        self.sock = socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW)
        self.sock.bind((0, 0))
        self.sock.settimeout(30.0)  # a kernel that stops answering must not hang the agent
        self.seq = int.from_bytes(os.urandom(3), "little")

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes, what: str) -> list[bytes]:
        """Send one message and return the bodies of the answers (a get or a dump);
        raise ``OSError`` naming ``what`` when the kernel refuses it."""
        self.seq += 1
        seq = self.seq
        header = _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0)
        self.sock.sendall(header + body)
        answers: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, reply, reply_flags, reply_seq, _ = _HEADER.unpack_from(data, offset)
                start, offset = offset, offset + max(length + (-length % 4), _HEADER.size)
                if reply_seq != seq:
                    continue  # an answer to a request given up on earlier
                if reply == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, start + _HEADER.size)
                    if code:
                        raise OSError(-code, f"{what}: {os.strerror(-code)}")
                    return answers
                if reply == NLMSG_DONE:
                    return answers
                answers.append(data[start + _HEADER.size : start + length])
                if not reply_flags & NLM_F_MULTI and not flags & NLM_F_ACK:
                    return answers

    def index(self, ifname: str) -> int:
        """The index of interface ``ifname``."""
        [answer] = self.request(
            RTM_GETLINK, 0, _ifinfo() + _str(IFLA_IFNAME, ifname), f"looking up {ifname}"
        )
        return int(_IFINFO.unpack_from(answer)[2])

    def delete(self, ifname: str) -> None:
        """Delete interface ``ifname`` if there is one."""
        try:
            self.request(
                RTM_DELLINK, NLM_F_ACK, _ifinfo() + _str(IFLA_IFNAME, ifname), f"deleting {ifname}"
            )
        except OSError as exc:
            if exc.errno not in (errno.ENODEV, errno.ENOENT):
                raise

    def set_up(self, index: int, what: str) -> None:
        """Set interface ``index`` up."""
        self.request(RTM_NEWLINK, NLM_F_ACK, _ifinfo(index, IFF_UP, IFF_UP), f"setting {what} up")

    def add_veth(self, host: str, peer: str, mtu: int, peer_netns_fd: int) -> None:
        """The pair ``host`` here, ``peer`` in the namespace of ``peer_netns_fd``."""
        peer_info = _ifinfo() + _str(IFLA_IFNAME, peer) + _u32(IFLA_MTU, mtu)
        peer_info += _u32(IFLA_NET_NS_FD, peer_netns_fd)
        linkinfo = _str(IFLA_INFO_KIND, "veth") + _attr(
            IFLA_INFO_DATA | NLA_F_NESTED, _attr(VETH_INFO_PEER | NLA_F_NESTED, peer_info)
        )
        body = _ifinfo() + _str(IFLA_IFNAME, host) + _u32(IFLA_MTU, mtu)
        body += _attr(IFLA_LINKINFO | NLA_F_NESTED, linkinfo)
        flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        self.request(RTM_NEWLINK, flags, body, f"adding veth {host}")

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """``address``/``prefixlen`` on interface ``index``."""
        body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        body += _ipv4(IFA_LOCAL, address) + _ipv4(IFA_ADDRESS, address)
        flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        self.request(RTM_NEWADDR, flags, body, f"adding {address}/{prefixlen}")

    def add_route(
        self,
        destination: str,
        prefixlen: int,
        oif: int,
        *,
        gateway: str | None = None,
        scope: int = RT_SCOPE_UNIVERSE,
        replace: bool = False,
    ) -> None:
        """A main-table route to ``destination``/``prefixlen`` out of interface ``oif``."""
        body = _RTMSG.pack(
            socket.AF_INET, prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0
        )
        if prefixlen:
            body += _ipv4(RTA_DST, destination)
        body += _u32(RTA_OIF, oif)
        if gateway:
            body += _ipv4(RTA_GATEWAY, gateway)
        flags = NLM_F_ACK | NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        self.request(RTM_NEWROUTE, flags, body, f"routing {destination}/{prefixlen}")

    def links(self) -> dict[int, str]:
        """Index → name of every interface."""
        found = {}
        for answer in self.request(RTM_GETLINK, NLM_F_DUMP, _ifinfo(), "listing links"):
            index = _IFINFO.unpack_from(answer)[2]
            for kind, payload in _attrs(answer, _IFINFO.size):
                if kind == IFLA_IFNAME:
                    found[int(index)] = payload.rstrip(b"\0").decode()
        return found

    def host_routes(self) -> list[tuple[int, str]]:
        """``(interface index, address)`` of each IPv4 /32 route of the main table."""
        found = []
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        for answer in self.request(RTM_GETROUTE, NLM_F_DUMP, body, "listing routes"):
            family, dst_len, _, _, table, *_ = _RTMSG.unpack_from(answer)
            attrs = dict(_attrs(answer, _RTMSG.size))
            if RTA_TABLE in attrs:
                (table,) = struct.unpack("=I", attrs[RTA_TABLE])
            if family != socket.AF_INET or dst_len != 32 or table != RT_TABLE_MAIN:
                continue
            if RTA_DST in attrs and RTA_OIF in attrs:
                (oif,) = struct.unpack("=I", attrs[RTA_OIF])
                found.append((int(oif), str(ipaddress.IPv4Address(attrs[RTA_DST]))))
        return found


def wire_pod(
    pod_netns: str,
    host: str,
    *,
    address: str,
    mtu: int,
    gateway: str,
    before_up: Callable[[str], None] | None = None,
) -> None:
    """Connect ``pod_netns`` (a path) to the calling thread's namespace, as Calico does.

    A veth pair ``host`` / ``eth0`` (``eth0`` made inside the pod's namespace), the
    pod's ``address``/32 on ``eth0``, ``lo`` and both ends up, the pod's routes to the
    link-local ``gateway`` and by it everywhere, and the host's /32 route to ``host``.
    ``before_up(host)`` runs before the host end comes up (proxy ARP sysctls). Ends left
    by an earlier attempt are deleted first, so a retry after a partial failure converges.
    """
    with Rtnl() as node, Rtnl(pod_netns) as pod:
        fd = os.open(pod_netns, os.O_RDONLY)
        try:
            try:
                node.add_veth(host, "eth0", mtu, fd)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                node.delete(host)  # left by an earlier attempt: start again from nothing
                pod.delete("eth0")
                node.add_veth(host, "eth0", mtu, fd)
        finally:
            os.close(fd)
        index = node.index(host)
        if before_up is not None:
            before_up(host)
        node.set_up(index, host)
        eth0 = pod.index("eth0")
        pod.set_up(LOOPBACK_INDEX, "the pod's lo")
        pod.add_address(eth0, address, 32)
        pod.set_up(eth0, "the pod's eth0")
        pod.add_route(gateway, 32, eth0, scope=RT_SCOPE_LINK)
        pod.add_route("0.0.0.0", 0, eth0, gateway=gateway)
        node.add_route(address, 32, index, scope=RT_SCOPE_LINK, replace=True)


def remove_link(ifname: str) -> None:
    """Delete link ``ifname`` of the calling thread's namespace, if there is one."""
    with Rtnl() as node:
        node.delete(ifname)


def host_link_names() -> set[str]:
    """Names of the interfaces of the calling thread's namespace."""
    with Rtnl() as node:
        return set(node.links().values())


def pod_host_routes(prefix: str) -> list[tuple[str, str]]:
    """``(interface, address)`` of each IPv4 /32 route of the main table whose interface
    name starts with ``prefix``: the routes :func:`wire_pod` made."""
    with Rtnl() as node:
        names = node.links()
        routes = node.host_routes()
    return [(names[oif], dst) for oif, dst in routes if names.get(oif, "").startswith(prefix)]
