"""The Rust TUN tunnel engine carrying ping and TCP between two network namespaces.

Topology (:mod:`kubetrio.datapath._lab`, created here, always removed): namespaces A and B
joined by a veth pair (underlay 172.31.250.1/.2); in each a TUN device ``kt0`` run by a
TunnelEngine, with pod addresses 10.250.1.1 (A) and 10.250.2.1 (B) and a route to the
other's /24 into ``kt0``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from kubetrio.datapath import DatapathError, TunnelEngine, TunnelKind, TunnelStats
from kubetrio.datapath._lab import ip, start_tunnel, veth_nodes

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
c.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, int(sys.argv[4]))
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


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    with veth_nodes(UNDERLAY) as pair:
        yield pair


def start_engines(mode: TunnelKind, a: str, b: str, offload: bool = True) -> list[TunnelEngine]:
    engines = [start_tunnel(mode, a, 1, UNDERLAY, offload=offload)]
    try:
        engines.append(start_tunnel(mode, b, 2, UNDERLAY, offload=offload))
    except BaseException:
        engines[0].stop()
        raise
    return engines


def transfer(a: str, b: str, port: int, size: int = 4 << 20, tos: int = 0) -> None:
    """Send ``size`` random bytes over TCP from A to B's pod address; B checks the digest.

    ``tos`` is the TOS byte of the data packets.
    """
    server = subprocess.Popen(
        ["ip", "netns", "exec", b, sys.executable, "-c", SERVER, "10.250.2.1", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        client = subprocess.run(
            ["ip", "netns", "exec", a, sys.executable, "-c", CLIENT, "10.250.2.1", str(port),
             str(size), str(tos)],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert client.stdout.strip() == "True", client.stdout + client.stderr
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "plain"])
@pytest.mark.parametrize("mode", ["vxlan", "ipip"])
def test_ping_and_tcp_through_the_tunnel(
    namespaces: tuple[str, str], mode: TunnelKind, offload: bool
) -> None:
    a, b = namespaces
    engines = start_engines(mode, a, b, offload)
    try:
        ping = subprocess.run(
            ["ip", "netns", "exec", a, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.250.2.1"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr
        transfer(a, b, 5555)

        for engine in engines:
            stats = engine.stats()
            assert stats.tx_packets > 0 and stats.rx_packets > 0, stats
            assert stats.rx_malformed == 0 and stats.tx_errors == 0, stats
        sender, receiver = (e.stats() for e in engines)
        assert sender.tx_bytes > 4 << 20
        # IPIP with offloads carries the stream as outer-fragmented aggregates (TSO packets
        # sent whole), which the receiver writes back as GSO packets.
        aggregates = mode == "ipip" and offload
        assert (sender.tx_aggregates > 0) == aggregates, sender
        assert (receiver.rx_aggregates > 0) == aggregates, receiver
    finally:
        for engine in engines:
            engine.stop()
    assert not any(e.running for e in engines)
    # The engine created kt0, so it is gone with the engine.
    gone = subprocess.run(["ip", "-n", a, "link", "show", "kt0"], capture_output=True)
    assert gone.returncode != 0


# Counts the IPIP packets a node receives (every raw protocol-4 socket gets a copy, so
# this runs beside the engine; it may miss some under load): packets, the largest, the
# outer TOS values, and how many carry the engine's segment-size option (type 30), with
# their TOS values. Prints a JSON summary once nothing came for 1 s.
SNIFFER = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: miss little
s.bind((sys.argv[1], 0))
print("ready", flush=True)
s.settimeout(10)
count = largest = marked = 0
tos, marked_tos = set(), set()
try:
    while True:
        data = s.recv(70000)
        s.settimeout(1)
        count += 1
        largest = max(largest, len(data))
        tos.add(data[1])
        if (data[0] & 15) > 5 and 30 in data[20:(data[0] & 15) * 4]:
            marked += 1
            marked_tos.add(data[1])
except TimeoutError:
    pass
print(json.dumps({"count": count, "largest": largest, "tos": sorted(tos), "marked": marked,
                  "marked_tos": sorted(marked_tos)}), flush=True)
"""


@pytest.mark.parametrize(
    ("sender", "receiver"),
    [
        ({"offload": True, "outer_fragments": True}, {"offload": False}),
        ({"offload": True, "outer_fragments": False}, {"offload": True}),
        ({"offload": False}, {"offload": True}),
    ],
    ids=["aggregates-to-plain", "segments-to-offload", "plain-to-offload"],
)
def test_ipip_engines_with_different_settings(
    namespaces: tuple[str, str], sender: dict[str, bool], receiver: dict[str, bool]
) -> None:
    """Any IPIP engine receives from any other; only `outer_fragments` makes aggregates.

    A sniffer in B checks the wire: aggregates are single reassembled packets larger than
    the underlay MTU with the segment-size option; otherwise every packet fits the 1500-byte
    underlay unmarked, as RFC 2003 receivers (a kernel ipip device) expect. Either way the
    outer TOS is the inner one (DSCP AF11 on the data).
    """
    a, b = namespaces
    engines = [start_tunnel("ipip", a, 1, UNDERLAY, **sender)]
    try:
        engines.append(start_tunnel("ipip", b, 2, UNDERLAY, **receiver))
        wire, sent, received = sniffed_transfer(a, b, 5557, engines)
    finally:
        for engine in engines:
            engine.stop()
    aggregates = sender["offload"] and sender.get("outer_fragments", False)
    assert (sent.tx_aggregates > 0) == aggregates, sent
    assert received.rx_aggregates == sent.tx_aggregates, received
    assert received.rx_malformed == 0 and received.rx_errors == 0, received
    assert wire["count"] > 0 and received.rx_packets > 0, wire
    assert 0x28 in wire["tos"], wire
    if aggregates:
        assert wire["marked"] > 0 and wire["largest"] > 1500, wire
        assert wire["marked_tos"] == [0x28], wire
    else:
        assert wire["marked"] == 0 and wire["largest"] <= 1500, wire


def sniffed_transfer(
    a: str, b: str, port: int, engines: list[TunnelEngine]
) -> tuple[dict[str, Any], TunnelStats, TunnelStats]:
    """A hashed transfer a → b (TOS 0x28) while a sniffer in ``b`` watches the underlay;
    what it saw on the wire, then the sending and receiving engines' stats."""
    sniffer = subprocess.Popen(
        ["ip", "netns", "exec", b, sys.executable, "-c", SNIFFER, UNDERLAY.format(2)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sniffer.stdout is not None
        assert sniffer.stdout.readline().strip() == "ready"
        transfer(a, b, port, tos=0x28)
        wire: dict[str, Any] = json.loads(sniffer.stdout.readline())
        return wire, engines[0].stats(), engines[1].stats()
    finally:
        if sniffer.poll() is None:
            sniffer.kill()
            sniffer.wait()


def sysfs(netns: str, path: str) -> str:
    """A sysfs file of namespace ``netns`` (``ip netns exec`` mounts that namespace's sysfs)."""
    return ip("netns", "exec", netns, "cat", f"/sys/class/net/{path}").strip()


@pytest.mark.parametrize("offload", [True, False], ids=["to-offload", "to-plain"])
def test_ipip_gro_send_crosses_the_underlay_whole(
    namespaces: tuple[str, str], offload: bool
) -> None:
    """With `gro_send` the segments go through the GRO device ``kt0g`` and leave merged.

    The sniffer in B sees plain RFC 2003 packets (no segment-size option) larger than the
    1500-byte underlay: GRO merged them and the veth carried the result as one GSO packet.
    The receiving engine recognises them as merged and writes them back whole (with
    offloads) or cut into segments (without); the digest checks the data either way.
    """
    a, b = namespaces
    engines = [start_tunnel("ipip", a, 1, UNDERLAY, gro_send=True)]
    try:
        engines.append(start_tunnel("ipip", b, 2, UNDERLAY, offload=offload))
        assert sysfs(a, "kt0g/gro_flush_timeout") == "50000"
        assert sysfs(a, "kt0g/threaded") in ("1", "enabled")
        wire, sent, received = sniffed_transfer(a, b, 5559, engines)
    finally:
        for engine in engines:
            engine.stop()
    assert sent.tx_aggregates == 0 and sent.tx_errors == 0 and sent.tx_packets > 0, sent
    assert wire["marked"] == 0 and wire["largest"] > 1500, wire
    assert 0x28 in wire["tos"], wire
    assert received.rx_aggregates > 0, received
    assert received.rx_malformed == 0 and received.rx_errors == 0, received
    # The GRO device closes with the engine.
    assert subprocess.run(["ip", "-n", a, "link", "show", "kt0g"], capture_output=True).returncode


def test_ipip_gro_send_falls_back_to_outer_fragments(namespaces: tuple[str, str]) -> None:
    """When the GRO device cannot be made (here: its name is taken), the engine sends
    outer-fragmented aggregates instead, and the transfer is as intact."""
    a, b = namespaces
    ip("-n", a, "link", "add", "kt0g", "type", "bridge")
    engines = [start_tunnel("ipip", a, 1, UNDERLAY, gro_send=True)]
    try:
        engines.append(start_tunnel("ipip", b, 2, UNDERLAY))
        transfer(a, b, 5560)
        sent, received = engines[0].stats(), engines[1].stats()
    finally:
        for engine in engines:
            engine.stop()
    assert sent.tx_aggregates > 0 and sent.tx_errors == 0, sent
    assert received.rx_aggregates == sent.tx_aggregates, received


# A non-engine IPIP sender, as another RFC 2003 implementation would send: a plain packet
# with DF through IP_HDRINCL, then a datagram too big for the underlay through a socket
# that lets the kernel fragment the outer packet. Both carry UDP to B's pod address.
FOREIGN_SENDER = """
import socket, struct, sys
local, remote, src, dst = sys.argv[1:5]

def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

def ipv4(src, dst, proto, payload, df):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000 if df else 0,
                         64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload

def udp(payload):  # checksum 0: none, allowed for UDP over IPv4
    return struct.pack("!HHHH", 4000, 5558, 8 + len(payload), 0) + payload

plain = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
plain.sendto(ipv4(local, remote, 4, ipv4(src, dst, 17, udp(b"small" * 10), True), True),
             (remote, 0))
fragmenting = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
fragmenting.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER: IP_PMTUDISC_DONT
fragmenting.bind((local, 0))
fragmenting.sendto(ipv4(src, dst, 17, udp(bytes(range(256)) * 16), False), (remote, 0))
"""

RECEIVER = """
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5558))
s.settimeout(10)
print("ready", flush=True)
for _ in range(2):
    data = s.recv(65536)
    print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""


def test_ipip_receives_from_other_senders(namespaces: tuple[str, str]) -> None:
    """Plain and kernel-fragmented IPIP from a non-engine sender reach B's pods intact."""
    a, b = namespaces
    engine = start_tunnel("ipip", b, 2, UNDERLAY)
    try:
        receiver = subprocess.Popen(
            ["ip", "netns", "exec", b, sys.executable, "-c", RECEIVER, "10.250.2.1"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.stdout is not None
            assert receiver.stdout.readline().strip() == "ready"
            subprocess.run(
                ["ip", "netns", "exec", a, sys.executable, "-c", FOREIGN_SENDER,
                 UNDERLAY.format(1), UNDERLAY.format(2), "10.250.1.1", "10.250.2.1"],
                check=True,
                timeout=10,
            )  # fmt: skip
            got = [receiver.stdout.readline().split() for _ in range(2)]
        finally:
            receiver.kill()
            receiver.wait()
        stats = engine.stats()
    finally:
        engine.stop()
    big = bytes(range(256)) * 16
    assert got == [
        ["50", hashlib.sha256(b"small" * 10).hexdigest()],
        [str(len(big)), hashlib.sha256(big).hexdigest()],
    ]
    assert stats.rx_packets == 2 and stats.rx_aggregates == 0 and stats.rx_malformed == 0


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
    engine = start_tunnel("vxlan", a, 1, UNDERLAY, offload=offload)
    try:
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
        transfer(a, b, 5556)
        stats = engine.stats()
        assert stats.rx_packets > 0 and stats.rx_malformed == 0, stats
    finally:
        engine.stop()
