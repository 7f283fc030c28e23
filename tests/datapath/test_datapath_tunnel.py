"""The Rust TUN tunnel engine carrying ping and TCP between two network namespaces.

Topology (created here, always removed): namespaces A and B joined by a veth pair
(underlay 172.31.250.1/.2); in each a TUN device ``kt0`` run by a TunnelEngine, with pod
addresses 10.250.1.1 (A) and 10.250.2.1 (B) and a route to the other's /24 into ``kt0``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import trio

from kubetrio.datapath import DatapathError, TunnelEngine, TunnelKind

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("ping") is None,
        reason="needs root, iproute2 and ping",
    ),
]

UNDERLAY = "172.31.250.{}"

SERVER = """
import hashlib, socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
c, _ = s.accept()
h = hashlib.sha256()
while data := c.recv(65536):
    h.update(data)
c.sendall(h.hexdigest().encode())
c.close()
"""

CLIENT = """
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[3]))
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
c.sendall(data)
c.shutdown(socket.SHUT_WR)
reply = c.recv(100).decode()
print(hashlib.sha256(data).hexdigest() == reply, flush=True)
"""


# Turns off TX checksum offload of a device (the legacy ETHTOOL_STXCSUM ioctl; this host
# has no ethtool binary).
TX_CSUM_OFF = """
import array, fcntl, socket, struct, sys
value = array.array("I", [0x17, 0])  # ETHTOOL_STXCSUM, off
ifreq = struct.pack("16sP", sys.argv[1].encode(), value.buffer_info()[0]) + bytes(16)
sock = socket.socket()
fcntl.ioctl(sock.fileno(), 0x8946, ifreq)  # SIOCETHTOOL
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    tag = os.getpid() % 100000
    a, b = f"ktA{tag}", f"ktB{tag}"
    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", "veth0", "netns", a, "type", "veth", "peer", "name", "veth0", "netns", b)
        for n, ns in ((1, a), (2, b)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{UNDERLAY.format(n)}/24", "dev", "veth0")
            ip("-n", ns, "link", "set", "veth0", "up")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def start_engines(mode: TunnelKind, a: str, b: str, offload: bool = True) -> list[TunnelEngine]:
    mtu = "1450" if mode == "vxlan" else "1480"
    engines = []
    for n, other, ns in ((1, 2, a), (2, 1, b)):
        engine = TunnelEngine(
            mode,
            "kt0",
            UNDERLAY.format(n),
            vni=42,
            netns=ns,
            offload=offload,
        )
        engine.add_route(f"10.250.{other}.0/24", UNDERLAY.format(other))
        engine.start()
        engines.append(engine)
        ip("-n", ns, "addr", "add", f"10.250.{n}.1/24", "dev", "kt0")
        ip("-n", ns, "link", "set", "kt0", "mtu", mtu, "up")
        ip("-n", ns, "route", "add", f"10.250.{other}.0/24", "dev", "kt0")
    return engines


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
@pytest.mark.parametrize("mode", ["vxlan", "ipip"])
def test_ping_and_tcp_through_the_tunnel(
    namespaces: tuple[str, str], mode: TunnelKind, offload: bool
) -> None:
    a, b = namespaces
    engines = start_engines(mode, a, b, offload)
    server = None
    try:
        ping = subprocess.run(
            ["ip", "netns", "exec", a, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.250.2.1"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr

        server = subprocess.Popen(
            ["ip", "netns", "exec", b, sys.executable, "-c", SERVER, "10.250.2.1", "5555"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        size = str(4 << 20)
        client = subprocess.run(
            ["ip", "netns", "exec", a, sys.executable, "-c", CLIENT, "10.250.2.1", "5555", size],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert client.stdout.strip() == "True", client.stdout + client.stderr
        server.wait(timeout=10)

        for engine in engines:
            stats = engine.stats()
            assert stats.tx_packets > 0 and stats.rx_packets > 0, stats
            assert stats.rx_malformed == 0 and stats.tx_errors == 0, stats
        assert engines[0].stats().tx_bytes > 4 << 20
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        for engine in engines:
            engine.stop()
    assert not any(e.running for e in engines)
    # The engine created kt0, so it is gone with the engine.
    gone = subprocess.run(["ip", "-n", a, "link", "show", "kt0"], capture_output=True)
    assert gone.returncode != 0


def test_packets_without_a_route_are_counted(namespaces: tuple[str, str]) -> None:
    a, _ = namespaces
    engine = TunnelEngine("ipip", "kt0", UNDERLAY.format(1), netns=a)
    with engine:
        ip("-n", a, "addr", "add", "10.250.1.1/24", "dev", "kt0")
        ip("-n", a, "link", "set", "kt0", "up")
        ip("-n", a, "route", "add", "10.250.9.0/24", "dev", "kt0")
        subprocess.run(
            ["ip", "netns", "exec", a, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.250.9.9"],
            capture_output=True,
            timeout=10,
        )
        stats = engine.stats()
    assert stats.tx_no_route >= 2 and stats.tx_packets == 0


def test_missing_namespace_is_a_datapath_error() -> None:
    engine = TunnelEngine("vxlan", "kt0", "127.0.0.1", netns="kubetrio-no-such-netns")
    with pytest.raises(DatapathError, match="no-such-netns"):
        engine.start()
    assert not engine.running


async def test_run_under_a_nursery(namespaces: tuple[str, str]) -> None:
    a, _ = namespaces
    engine = TunnelEngine("vxlan", "kt0", UNDERLAY.format(1), netns=a)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            started = await nursery.start(engine.run)
            assert started is engine and engine.running
            nursery.cancel_scope.cancel()
    assert not engine.running


def test_stats_and_routes_while_another_thread_stops(namespaces: tuple[str, str]) -> None:
    a, _ = namespaces
    engine = TunnelEngine("vxlan", "kt0", UNDERLAY.format(1), netns=a)
    engine.start()
    stopper = threading.Thread(target=engine.stop)
    stopper.start()
    calls = 0
    while stopper.is_alive() or calls == 0:
        engine.stats()
        engine.add_route("10.250.7.0/24", UNDERLAY.format(2))
        calls += 1
    stopper.join()
    assert not engine.running
    with pytest.raises(DatapathError, match="already running"):
        engine.start()
        engine.start()
    engine.stop()


@pytest.mark.skipif(shutil.which("bridge") is None, reason="needs bridge(8)")
@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
def test_vxlan_engine_talks_to_kernel_vxlan(namespaces: tuple[str, str], offload: bool) -> None:
    """RFC 7348 on the wire: the engine in A, the kernel's VXLAN device in B."""
    a, b = namespaces
    engine_mac, kernel_mac = "02:6b:74:00:00:01", "02:6b:74:00:00:02"  # the engine's MACs
    engine = TunnelEngine("vxlan", "kt0", UNDERLAY.format(1), vni=4096, netns=a, offload=offload)
    engine.add_route("10.250.2.0/24", UNDERLAY.format(2))
    server = None
    try:
        engine.start()
        ip("-n", a, "addr", "add", "10.250.1.1/24", "dev", "kt0")
        ip("-n", a, "link", "set", "kt0", "mtu", "1450", "up")
        ip("-n", a, "route", "add", "10.250.2.0/24", "dev", "kt0")
        ip(
            "-n", b, "link", "add", "vxlan0", "address", kernel_mac, "type", "vxlan",
            "id", "4096", "dstport", "4789", "local", UNDERLAY.format(2), "dev", "veth0",
            "nolearning",
        )  # fmt: skip
        # Over veth a kernel VXLAN device leaves the inner TCP checksum to "hardware"
        # (CHECKSUM_PARTIAL travels with the skb to the peer namespace), so the bytes a
        # userspace receiver reads carry only the pseudo-header sum. Make the kernel
        # finish the checksum, as a NIC would on a real underlay.
        subprocess.run(
            ["ip", "netns", "exec", b, sys.executable, "-c", TX_CSUM_OFF, "vxlan0"], check=True
        )
        ip("-n", b, "addr", "add", "10.250.2.1/32", "dev", "vxlan0")
        ip("-n", b, "link", "set", "vxlan0", "up")
        ip("-n", b, "route", "add", "10.250.1.0/24", "dev", "vxlan0")
        ip("-n", b, "neigh", "add", "10.250.1.1", "lladdr", engine_mac, "dev", "vxlan0",
           "nud", "permanent")  # fmt: skip
        subprocess.run(
            ["bridge", "-n", b, "fdb", "append", engine_mac, "dev", "vxlan0", "dst",
             UNDERLAY.format(1)],
            check=True,
            capture_output=True,
        )  # fmt: skip

        ping = subprocess.run(
            ["ip", "netns", "exec", a, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.250.2.1"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr
        server = subprocess.Popen(
            ["ip", "netns", "exec", b, sys.executable, "-c", SERVER, "10.250.2.1", "5556"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        client = subprocess.run(
            ["ip", "netns", "exec", a, sys.executable, "-c", CLIENT, "10.250.2.1", "5556",
             str(4 << 20)],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert client.stdout.strip() == "True", client.stdout + client.stderr
        stats = engine.stats()
        assert stats.rx_packets > 0 and stats.rx_malformed == 0, stats
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        engine.stop()
