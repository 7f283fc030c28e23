"""Packet codec through the Python wrapper: known answers, round trips, rejection, batches."""

import contextlib
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubetrio.datapath import (
    IPIP_OVERHEAD,
    PROTO_IPIP,
    PROTO_UDP,
    VXLAN_OVERHEAD,
    IpipTunnel,
    MalformedPacketError,
    PacketBatch,
    VxlanTunnel,
    build_tcp,
    build_udp,
    checksum_adjust16,
    checksum_adjust32,
    decap_batch,
    internet_checksum,
    ipip_decap,
    packet_flow_hash,
    parse_ipv4,
    parse_tcp,
    parse_udp,
    vxlan_decap,
)

ETH = bytes.fromhex("0200000000020200000000010800")


def test_known_answer_udp() -> None:
    # Checksums worked by hand (see the Rust test of the same packet).
    p = build_udp("10.0.0.1", "10.0.0.2", 1234, 80, b"hi")
    assert p.hex() == ("4500001e00000000401166cd0a0000010a00000204d20050000a7e4c6869").replace(
        " ", ""
    )
    d = parse_udp(p)
    assert (d.src, d.dst) == (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"))
    assert (d.src_port, d.dst_port) == (1234, 80)
    assert p[d.payload_offset : d.payload_offset + d.payload_len] == b"hi"
    assert internet_checksum(p[:20]) == 0


def test_tcp_round_trip() -> None:
    p = build_tcp("10.0.0.1", "10.0.0.2", 40000, 80, b"GET /", seq=7, flags=0x18)
    s = parse_tcp(p)
    assert (s.src_port, s.dst_port, s.seq, s.flags) == (40000, 80, 7, 0x18)
    assert p[s.payload_offset :] == b"GET /"
    bad = bytearray(p)
    bad[-1] ^= 1
    with pytest.raises(MalformedPacketError, match="tcp: bad checksum"):
        parse_tcp(bad)


def test_parse_ipv4_fields_and_errors() -> None:
    p = build_udp("192.168.0.1", "192.168.0.199", 1, 2, b"x" * 87)
    h = parse_ipv4(p)
    assert (h.total_len, h.ttl, h.protocol, h.header_len) == (115, 64, PROTO_UDP, 20)
    assert "192.168.0.199" in repr(h)
    with pytest.raises(MalformedPacketError, match="truncated"):
        parse_ipv4(p[:19])
    bad = bytearray(p)
    bad[15] ^= 1
    with pytest.raises(MalformedPacketError, match="checksum"):
        parse_ipv4(bad)
    assert parse_ipv4(bad, verify_checksum=False).src != h.src


def test_incremental_checksum_matches_recompute() -> None:
    p = bytearray(build_udp("10.0.0.1", "10.0.0.2", 1, 2, b"data"))
    old = int.from_bytes(p[10:12], "big")
    p[16:20] = IPv4Address("10.96.0.10").packed
    new = checksum_adjust32(old, "10.0.0.2", "10.96.0.10")
    p[10:12] = new.to_bytes(2, "big")
    assert internet_checksum(p[:20]) == 0
    assert checksum_adjust16(0xDD2F, 0x5555, 0x3285) == 0x0000  # RFC 1624 §4


def test_vxlan_known_answer_and_round_trip() -> None:
    inner = ETH + build_udp("10.244.1.2", "10.244.2.3", 5000, 53, b"query")
    t = VxlanTunnel("172.30.0.1", "172.30.0.2", vni=4096)
    out = t.encap(inner, ident=7)
    assert len(out) == VXLAN_OVERHEAD + len(inner)
    assert out[12:20] == bytes([172, 30, 0, 1, 172, 30, 0, 2])
    assert out[22:24] == (4789).to_bytes(2, "big")
    assert out[28:36] == bytes.fromhex("0800000000100000")
    d = vxlan_decap(out)
    assert d.tag == 4096
    assert bytes(d.inner(out)) == inner


def test_vxlan_encap_ipv4_adds_ethernet() -> None:
    packet = build_udp("10.244.1.2", "10.244.2.3", 5000, 53, b"q")
    t = VxlanTunnel("172.30.0.1", "172.30.0.2", vni=1)
    out = t.encap_ipv4(packet, src_mac="02:00:00:00:00:01", dst_mac=bytes.fromhex("020000000002"))
    assert bytes(vxlan_decap(out).inner(out)) == ETH + packet
    with pytest.raises(ValueError):
        t.encap_ipv4(packet, src_mac="02:00", dst_mac="02:00:00:00:00:02")


def test_ipip_round_trip_copies_tos_and_df() -> None:
    packet = bytearray(build_tcp("10.244.1.2", "10.244.2.3", 1, 2, b"x"))
    packet[1] = 0xB8
    t = IpipTunnel("172.30.0.1", "172.30.0.2", ttl=9)
    out = t.encap(packet)
    assert len(out) == IPIP_OVERHEAD + len(packet)
    outer = parse_ipv4(out)
    assert (outer.protocol, outer.tos, outer.ttl) == (PROTO_IPIP, 0xB8, 9)
    assert outer.flags_fragment & 0x4000
    d = ipip_decap(out)
    assert d.tag == int(IPv4Address("172.30.0.1"))
    assert bytes(d.inner(out)) == packet


@given(st.binary(max_size=300))
def test_decap_of_random_bytes_raises_or_stays_in_bounds(data: bytes) -> None:
    for decap in (vxlan_decap, ipip_decap):
        try:
            d = decap(data)
        except MalformedPacketError:
            continue
        assert d.offset + d.length <= len(data)
    for parse in (parse_udp, parse_tcp, parse_ipv4):
        with contextlib.suppress(MalformedPacketError):
            parse(data)
    packet_flow_hash(data)


@given(st.binary(max_size=1400), st.integers(0, 2**24 - 1))
def test_vxlan_round_trip_property(payload: bytes, vni: int) -> None:
    inner = ETH + build_udp("10.0.0.1", "10.0.0.2", 1, 2, payload)
    out = VxlanTunnel("1.1.1.1", "2.2.2.2", vni).encap(inner)
    d = vxlan_decap(out)
    assert d.tag == vni and bytes(d.inner(out)) == inner


def test_bad_vni_and_short_frame() -> None:
    with pytest.raises(ValueError):
        VxlanTunnel("1.1.1.1", "2.2.2.2", 2**24)
    with pytest.raises(MalformedPacketError):
        VxlanTunnel("1.1.1.1", "2.2.2.2", 1).encap(b"short")


def test_batches_round_trip_and_drop_bad_packets() -> None:
    packets = [build_udp("10.0.0.1", "10.0.0.2", i, 80, bytes(i * 10)) for i in range(64)]
    packets[3] = b"\x00" * 30  # not IPv4: dropped by IPIP
    batch = PacketBatch.from_packets(packets)
    encapped, stats = IpipTunnel("172.30.0.1", "172.30.0.2").encap_batch(batch)
    assert (stats.ok, stats.dropped) == (63, 1)
    assert encapped.lengths[3] == 0
    result = decap_batch("ipip", encapped)
    assert (result.stats.ok, result.stats.dropped) == (63, 1)
    for i, p in enumerate(packets):
        assert bytes(result.inner(i)) == (b"" if i == 3 else p)
    assert result.to_batch().packets()[5] == packets[5]

    frames = PacketBatch.from_packets(ETH + p for p in packets)
    vx, stats = VxlanTunnel("172.30.0.1", "172.30.0.2", 9).encap_batch(frames)
    assert stats.ok == 64
    back = decap_batch("vxlan", vx)
    assert list(back.tags) == [9] * 64
    assert [bytes(back.inner(i)) for i in range(64)] == [ETH + p for p in packets]


def test_batch_reuses_output_and_checks_layout() -> None:
    batch = PacketBatch.from_packets([build_udp("10.0.0.1", "10.0.0.2", 1, 2, b"x")] * 4)
    out = PacketBatch(4, 2048 + IPIP_OVERHEAD)
    t = IpipTunnel("1.1.1.1", "2.2.2.2")
    t.encap_batch(batch, out)
    t.encap_batch(batch, out)
    assert len(out) == 4
    with pytest.raises(ValueError):
        t.encap_batch(batch, PacketBatch(2))
    with pytest.raises(ValueError):
        decap_batch("gre", batch)  # type: ignore[arg-type]


def test_overlapping_buffers_are_rejected() -> None:
    from kubetrio import _datapath

    buf = bytearray(4096)
    lengths = memoryview(bytearray(8)).cast("I")
    enc = _datapath.IpipEncap(1, 2)
    with pytest.raises(ValueError, match="overlaps"):
        enc.encap_batch(buf, 2048, lengths, buf, 2048, lengths)


def test_packet_batch_basics() -> None:
    b = PacketBatch(2, stride=16)
    b.append(b"abc")
    assert len(b) == 1 and bytes(b[0]) == b"abc" and bytes(b[-1]) == b"abc"
    with pytest.raises(ValueError):
        b.append(b"x" * 17)
    b.append(memoryview(b"de"))
    with pytest.raises(ValueError):
        b.append(b"f")
    with pytest.raises(IndexError):
        b[2]
    assert b.packets() == [b"abc", b"de"]
    b.clear()
    assert len(b) == 0


def test_copy_into() -> None:
    batch = PacketBatch.from_packets([b"abc", b"defg", b"x" * 16], stride=16)
    out = PacketBatch(3, stride=20)
    stats = batch.copy_into(out, offset=4)
    assert (stats.ok, stats.dropped) == (3, 0)
    assert bytes(out.data[24:28]) == b"defg" and list(out.lengths) == [3, 4, 16]
    stats = batch.copy_into(out, offset=8)
    assert (stats.ok, stats.dropped) == (2, 1)
    with pytest.raises(ValueError):
        batch.copy_into(PacketBatch(1))
