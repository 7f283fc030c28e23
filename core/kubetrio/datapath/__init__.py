"""kubetrio's packet datapath: the one module through which kubetrio reaches the Rust extension.

- :class:`MaglevTable` — Maglev consistent hashing for Service backends (service proxy).
- :class:`VxlanTunnel`, :class:`IpipTunnel`, :func:`vxlan_decap`, :func:`ipip_decap`,
  :func:`decap_batch` — tunnel encapsulation, per packet or per :class:`PacketBatch`.
- :class:`RouteTable` — IPv4 longest-prefix match (pod CIDR → node).
- :class:`TunnelEngine` — TUN ⇄ underlay VXLAN/IPIP tunnel on Rust threads.
- :func:`parse_udp`, :func:`build_udp`, ... — IPv4/UDP/TCP headers and checksums.
- :func:`reference_maglev_table` — the pure-Python specification the Rust table must match.

Batch calls release the GIL, so they may run in ``trio.to_thread.run_sync`` alongside
the event loop. Errors are :class:`DatapathError` (a ``ValueError``) and its subclass
:class:`MalformedPacketError` for bad packets.
"""

from ._address import IPv4Like as IPv4Like
from ._address import NetworkLike as NetworkLike
from ._batch import DEFAULT_STRIDE as DEFAULT_STRIDE
from ._batch import BatchStats as BatchStats
from ._batch import PacketBatch as PacketBatch
from ._checksum import checksum_adjust16 as checksum_adjust16
from ._checksum import checksum_adjust32 as checksum_adjust32
from ._checksum import flow_hash as flow_hash
from ._checksum import hash64 as hash64
from ._checksum import internet_checksum as internet_checksum
from ._checksum import packet_flow_hash as packet_flow_hash
from ._engine import TunnelEngine as TunnelEngine
from ._engine import TunnelStats as TunnelStats
from ._errors import DatapathError as DatapathError
from ._errors import MalformedPacketError as MalformedPacketError
from ._headers import PROTO_IPIP as PROTO_IPIP
from ._headers import PROTO_TCP as PROTO_TCP
from ._headers import PROTO_UDP as PROTO_UDP
from ._headers import Ipv4Header as Ipv4Header
from ._headers import TcpSegment as TcpSegment
from ._headers import UdpDatagram as UdpDatagram
from ._headers import build_tcp as build_tcp
from ._headers import build_udp as build_udp
from ._headers import parse_ipv4 as parse_ipv4
from ._headers import parse_tcp as parse_tcp
from ._headers import parse_udp as parse_udp
from ._maglev import DEFAULT_TABLE_SIZE as DEFAULT_TABLE_SIZE
from ._maglev import MaglevTable as MaglevTable
from ._maglev import SlotChange as SlotChange
from ._reference import reference_hash64 as reference_hash64
from ._reference import reference_maglev_table as reference_maglev_table
from ._routes import NO_ROUTE as NO_ROUTE
from ._routes import RouteTable as RouteTable
from ._tunnel import IPIP_OVERHEAD as IPIP_OVERHEAD
from ._tunnel import VXLAN_OVERHEAD as VXLAN_OVERHEAD
from ._tunnel import VXLAN_PORT as VXLAN_PORT
from ._tunnel import DecapBatch as DecapBatch
from ._tunnel import Decapsulated as Decapsulated
from ._tunnel import IpipTunnel as IpipTunnel
from ._tunnel import TunnelKind as TunnelKind
from ._tunnel import VxlanTunnel as VxlanTunnel
from ._tunnel import decap_batch as decap_batch
from ._tunnel import ipip_decap as ipip_decap
from ._tunnel import vxlan_decap as vxlan_decap
