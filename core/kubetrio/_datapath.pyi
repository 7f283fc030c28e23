"""Type stub of the Rust extension ``kubetrio._datapath`` (checked with ``mypy.stubtest``).

Use :mod:`kubetrio.datapath`, not this module, from the rest of kubetrio. Addresses are
``int`` in host order (``0x0A000001`` is 10.0.0.1). Batch functions take fixed-stride
buffers: packet ``i`` lives at ``i * stride`` and its length is element ``i`` of a uint32
buffer (``array('I')``); hashes are uint64 buffers (``array('Q')``).
"""

from collections.abc import Sequence
from typing import final

from typing_extensions import Buffer

__all__ = [
    "DEFAULT_TABLE_SIZE",
    "IPIP_OVERHEAD",
    "VXLAN_OVERHEAD",
    "VXLAN_PORT",
    "DatapathError",
    "IpipEncap",
    "Ipv4Header",
    "Maglev",
    "MalformedPacketError",
    "PrefixTable",
    "TunnelEngine",
    "VxlanEncap",
    "__version__",
    "build_tcp",
    "build_udp",
    "checksum_adjust16",
    "checksum_adjust32",
    "copy_batch",
    "decap_batch",
    "flow_hash",
    "hash64",
    "internet_checksum",
    "ipip_decap",
    "is_prime",
    "packet_flow_hash",
    "parse_ipv4",
    "parse_tcp",
    "parse_udp",
    "vxlan_decap",
]

__version__: str
DEFAULT_TABLE_SIZE: int
VXLAN_PORT: int
VXLAN_OVERHEAD: int
IPIP_OVERHEAD: int

class DatapathError(ValueError): ...
class MalformedPacketError(DatapathError): ...

def internet_checksum(data: Buffer) -> int: ...
def checksum_adjust16(checksum: int, old: int, new: int) -> int: ...
def checksum_adjust32(checksum: int, old: int, new: int) -> int: ...
def hash64(data: Buffer, seed: int = 0) -> int: ...
def flow_hash(
    src: int, dst: int, src_port: int, dst_port: int, protocol: int, seed: int = 0
) -> int: ...
def packet_flow_hash(packet: Buffer, seed: int = 0) -> int: ...
def is_prime(n: int) -> bool: ...

@final
class Maglev:
    def __new__(
        cls,
        backends: Sequence[str],
        weights: Sequence[int] | None = None,
        size: int = 65537,
        seed: int = 0,
    ) -> Maglev: ...
    @property
    def size(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def backends(self) -> list[str]: ...
    @property
    def weights(self) -> list[int]: ...
    def table(self) -> list[int]: ...
    def table_bytes(self) -> bytes: ...
    def lookup(self, flow_hash: int) -> int: ...
    def lookup_batch(self, hashes: Buffer, out: Buffer) -> None: ...
    def slot_counts(self) -> list[int]: ...
    def diff(self, new: Maglev) -> list[tuple[int, int, int]]: ...

@final
class Ipv4Header:
    @property
    def header_len(self) -> int: ...
    @property
    def tos(self) -> int: ...
    @property
    def total_len(self) -> int: ...
    @property
    def ident(self) -> int: ...
    @property
    def flags_fragment(self) -> int: ...
    @property
    def ttl(self) -> int: ...
    @property
    def protocol(self) -> int: ...
    @property
    def checksum(self) -> int: ...
    @property
    def src(self) -> int: ...
    @property
    def dst(self) -> int: ...

def parse_ipv4(packet: Buffer, verify_checksum: bool = True) -> Ipv4Header: ...
def parse_udp(packet: Buffer) -> tuple[Ipv4Header, int, int, int, int]: ...
def parse_tcp(packet: Buffer) -> tuple[Ipv4Header, int, int, int, int, int, int, int]: ...
def build_udp(
    src: int, dst: int, src_port: int, dst_port: int, payload: Buffer, ttl: int = 64
) -> bytes: ...
def build_tcp(
    src: int,
    dst: int,
    src_port: int,
    dst_port: int,
    payload: Buffer,
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = 0x18,
    window: int = 65535,
    ttl: int = 64,
) -> bytes: ...

@final
class VxlanEncap:
    def __new__(
        cls, local: int, remote: int, vni: int, dst_port: int = 4789, ttl: int = 64
    ) -> VxlanEncap: ...
    @property
    def local(self) -> int: ...
    @property
    def remote(self) -> int: ...
    @property
    def vni(self) -> int: ...
    @property
    def dst_port(self) -> int: ...
    @property
    def ttl(self) -> int: ...
    def encap(self, frame: Buffer, ident: int = 0) -> bytes: ...
    def encap_ipv4(
        self, packet: Buffer, src_mac: bytes, dst_mac: bytes, ident: int = 0
    ) -> bytes: ...
    def encap_batch(
        self,
        src: Buffer,
        src_stride: int,
        src_lengths: Buffer,
        dst: Buffer,
        dst_stride: int,
        dst_lengths: Buffer,
        first_ident: int = 0,
    ) -> tuple[int, int]: ...

@final
class IpipEncap:
    def __new__(cls, local: int, remote: int, ttl: int = 64) -> IpipEncap: ...
    @property
    def local(self) -> int: ...
    @property
    def remote(self) -> int: ...
    @property
    def ttl(self) -> int: ...
    def encap(self, packet: Buffer, ident: int = 0) -> bytes: ...
    def encap_batch(
        self,
        src: Buffer,
        src_stride: int,
        src_lengths: Buffer,
        dst: Buffer,
        dst_stride: int,
        dst_lengths: Buffer,
        first_ident: int = 0,
    ) -> tuple[int, int]: ...

def vxlan_decap(packet: Buffer) -> tuple[int, int, int]: ...
def ipip_decap(packet: Buffer) -> tuple[int, int, int]: ...
def copy_batch(
    src: Buffer,
    src_stride: int,
    src_lengths: Buffer,
    dst: Buffer,
    dst_stride: int,
    dst_lengths: Buffer,
    dst_offset: int = 0,
) -> tuple[int, int]: ...
def decap_batch(
    kind: str,
    src: Buffer,
    src_stride: int,
    src_lengths: Buffer,
    offsets: Buffer,
    inner_lengths: Buffer,
    tags: Buffer,
) -> tuple[int, int]: ...

@final
class PrefixTable:
    def __new__(cls) -> PrefixTable: ...
    def insert(self, prefix: int, length: int, value: int) -> int | None: ...
    def remove(self, prefix: int, length: int) -> int | None: ...
    def lookup(self, addr: int) -> int | None: ...
    def lookup_route(self, addr: int) -> tuple[int, int, int] | None: ...
    def lookup_batch(self, addrs: Buffer, out: Buffer, miss: int = 4294967295) -> None: ...
    def routes(self) -> list[tuple[int, int, int]]: ...
    def __len__(self) -> int: ...

@final
class TunnelEngine:
    def __new__(
        cls,
        mode: str,
        tun_name: str,
        local: int,
        *,
        vni: int = 1,
        port: int = 4789,
        netns: str | None = None,
        batch: int = 64,
        ttl: int = 64,
        offload: bool = True,
        outer_fragments: bool = True,
        gro_send: bool = False,
    ) -> TunnelEngine: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    @property
    def running(self) -> bool: ...
    def add_route(self, prefix: int, length: int, remote: int) -> int | None: ...
    def remove_route(self, prefix: int, length: int) -> int | None: ...
    def stats(self) -> dict[str, int]: ...
