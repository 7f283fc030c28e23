"""A pod's veth pair, address and routes through rtnetlink in-process (pyroute2).

Wiring a pod with ``ip`` took ten processes (about 40 ms of a 2-core node per pod, most
of it fork and exec); the same requests sent on two netlink sockets take a few
milliseconds. Everything here blocks briefly and is meant for a worker thread:
``trio.to_thread.run_sync(in_netns, node_netns, lambda: wire_pod(...))``. Sockets are
made in the calling thread's network namespace (the node's) or, for the pod side, with
:func:`kubetrio.netns.socket_in_netns`, so pyroute2 never forks a helper to reach a
namespace.

pyroute2 takes about 0.3 s to import: :func:`load` does it once, off the trio loop, when
node services start; the functions import it lazily too, for callers that skip that.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

from kubetrio.netns import socket_in_netns

__all__ = ["host_link_names", "load", "pod_host_routes", "remove_link", "wire_pod"]

RT_SCOPE_LINK = 253
RTPROT_BOOT = 3
"""The protocol ``ip route add`` gives routes by default; the ``ip`` path made the same."""
RT_TABLE_MAIN = 254
LOOPBACK_INDEX = 1
"""The kernel gives every namespace's ``lo`` this index."""


def load() -> None:
    """Import pyroute2 (slow the first time)."""
    import pyroute2.iproute  # noqa: F401


@contextlib.contextmanager
def _route(netns: str | None = None) -> Iterator[Any]:
    """An ``IPRoute`` on a netlink socket of ``netns`` (None: the calling thread's)."""
    from pyroute2 import IPRoute

    sock = socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_DGRAM)
    try:
        ipr = IPRoute(use_socket=sock)
    except BaseException:
        sock.close()
        raise
    try:
        yield ipr
    finally:
        ipr.close()
        sock.close()


@contextlib.contextmanager
def _step(what: str) -> Iterator[None]:
    """Name the failed request: a bare NetlinkError says only ``(17, 'File exists')``."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        yield
    except NetlinkError as exc:
        raise OSError(exc.code, f"{what}: {os.strerror(exc.code)}") from exc


def _delete(ipr: Any, ifname: str) -> None:
    """Delete link ``ifname`` if there is one."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.link("del", ifname=ifname)
    except NetlinkError as exc:
        if exc.code not in (errno.ENODEV, errno.ENOENT):
            raise OSError(exc.code, f"deleting {ifname}: {os.strerror(exc.code)}") from exc


def _index(ipr: Any, ifname: str) -> int:
    with _step(f"looking up {ifname}"):
        found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise OSError(errno.ENODEV, f"{ifname}: no such interface")
    return int(found[0])


def _add_veth(ipr: Any, pod_netns: str, host: str, mtu: int) -> None:
    """The veth pair ``host`` here, ``eth0`` in ``pod_netns``; EEXIST if either exists."""
    fd = os.open(pod_netns, os.O_RDONLY)
    try:
        with _step(f"adding veth {host}"):
            ipr.link(
                "add",
                ifname=host,
                kind="veth",
                mtu=mtu,
                peer={"ifname": "eth0", "mtu": mtu, "net_ns_fd": fd},
            )
    finally:
        os.close(fd)


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
    with _route() as ipr, _route(pod_netns) as pod:
        try:
            _add_veth(ipr, pod_netns, host, mtu)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
            _delete(ipr, host)  # left by an earlier attempt: start again from nothing
            _delete(pod, "eth0")
            _add_veth(ipr, pod_netns, host, mtu)
        index = _index(ipr, host)
        if before_up is not None:
            before_up(host)
        with _step(f"setting {host} up"):
            ipr.link("set", index=index, state="up")
        eth0 = _index(pod, "eth0")
        with _step("setting the pod's lo up"):
            pod.link("set", index=LOOPBACK_INDEX, state="up")
        with _step(f"adding {address}/32 to the pod's eth0"):
            pod.addr("add", index=eth0, address=address, prefixlen=32)
        with _step("setting the pod's eth0 up"):
            pod.link("set", index=eth0, state="up")
        with _step(f"adding the pod's route to {gateway}"):
            pod.route("add", dst=f"{gateway}/32", oif=eth0, scope=RT_SCOPE_LINK, proto=RTPROT_BOOT)
        with _step("adding the pod's default route"):
            pod.route("add", dst="0.0.0.0/0", gateway=gateway, oif=eth0, proto=RTPROT_BOOT)
        with _step(f"routing {address}/32 to {host}"):
            ipr.route(
                "replace",
                dst=f"{address}/32",
                oif=index,
                scope=RT_SCOPE_LINK,
                proto=RTPROT_BOOT,
            )


def remove_link(ifname: str) -> None:
    """Delete link ``ifname`` of the calling thread's namespace, if there is one."""
    with _route() as ipr:
        _delete(ipr, ifname)


def _names(ipr: Any) -> dict[int, str]:
    with _step("listing links"):
        return {int(link["index"]): str(link.get("ifname")) for link in ipr.link("dump")}


def host_link_names() -> set[str]:
    """Names of the interfaces of the calling thread's namespace."""
    with _route() as ipr:
        return set(_names(ipr).values())


def pod_host_routes(prefix: str) -> list[tuple[str, str]]:
    """``(interface, address)`` of each IPv4 /32 route of the main table whose interface
    name starts with ``prefix``: the routes :func:`wire_pod` made."""
    with _route() as ipr:
        names = _names(ipr)
        with _step("listing routes"):
            routes = ipr.route("dump", family=socket.AF_INET, table=RT_TABLE_MAIN)
        found = []
        for route in routes:
            device = names.get(int(route.get("oif") or 0), "")
            destination = route.get("dst")
            if route["dst_len"] == 32 and destination and device.startswith(prefix):
                found.append((device, str(destination)))
        return found
