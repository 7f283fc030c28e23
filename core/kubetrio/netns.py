"""Network namespaces: run a call, or make a socket, inside one.

``setns(2)`` moves only the calling thread, and Python 3.11 has no ``os.setns``, so this
is the one place that calls libc's ``setns`` through ctypes. :func:`in_netns` always
returns the thread to its own namespace, so it is safe in trio's pooled worker threads
(``trio.to_thread.run_sync(in_netns, ns, fn)``); a socket keeps the namespace it was
created in, so :func:`socket_in_netns` hands back a socket usable from any thread.

It imports nothing of kubetrio: the proxy, the DNS server, the LoadBalancer announcer,
the node agent and the network plugins all stand on it.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "CLONE_NEWNET",
    "NETNS_DIR",
    "in_netns",
    "ip_commands",
    "link_up",
    "netns_path",
    "socket_in_netns",
]

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
"""Where ``ip netns add`` binds named namespaces."""

IP_COMMANDS_ENV = "KUBETRIO_POD_NET_IP_COMMANDS"
"""Private switch (benchmarks' baseline): ``1`` wires pods with ``ip`` processes as before."""
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1

T = TypeVar("T")

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def netns_path(netns: str) -> str:
    """The file of ``netns``: a name under :data:`NETNS_DIR`, or already a path."""
    return netns if "/" in netns else os.path.join(NETNS_DIR, netns)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Call ``fn`` in the calling thread with network namespace ``netns`` (a name under
    ``/var/run/netns`` or a path; None = stay), then return the thread to its own."""
    if netns is None:
        return fn()
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path(netns), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            return fn()
        finally:
            _setns(own)
    finally:
        os.close(own)


def socket_in_netns(
    netns: str | None,
    family: socket.AddressFamily = socket.AF_INET,
    kind: socket.SocketKind = socket.SOCK_STREAM,
) -> socket.socket:
    """A new socket created inside ``netns`` (None: the caller's namespace)."""
    return in_netns(netns, lambda: socket.socket(family, kind))


def ip_commands() -> bool:
    """Whether pod networks are wired by ``ip`` processes instead of netlink in-process:
    only for ``benchmarks/pod_startup.py``'s before/after comparison (:data:`IP_COMMANDS_ENV`)."""
    return os.environ.get(IP_COMMANDS_ENV) == "1"


def link_up(netns: str | None, interface: str) -> None:
    """Set ``interface`` of ``netns`` up (``ip -n NS link set IF up``), blocking but brief:
    two ioctls on a socket of that namespace, no process."""
    with socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", interface.encode(), 0)
        (flags,) = struct.unpack_from("H", fcntl.ioctl(sock, _SIOCGIFFLAGS, request), 16)
        if not flags & _IFF_UP:
            fcntl.ioctl(
                sock, _SIOCSIFFLAGS, struct.pack("16sH22x", interface.encode(), flags | _IFF_UP)
            )
