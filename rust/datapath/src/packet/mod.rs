//! Packet headers and tunnel encapsulations.
//!
//! Parsers take `&[u8]` and return a header value or an [`Error`](crate::Error); they never
//! index past the input and never panic. Builders write into a caller's `&mut [u8]` and
//! return the number of bytes written, so the batch paths allocate nothing per packet.
//! Addresses are `u32` in host order (`0x0a000001` is 10.0.0.1).

pub mod batch;
pub mod ipip;
pub mod ipv4;
pub mod offload;
pub mod tcp;
pub mod udp;
pub mod vxlan;

pub use ipv4::Ipv4Header;
pub use tcp::TcpHeader;
pub use udp::UdpHeader;

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of IP-in-IP (RFC 2003).
pub const PROTO_IPIP: u8 = 4;
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Length of an Ethernet II header without VLAN tag.
pub const ETHERNET_HEADER_LEN: usize = 14;

use crate::hash::{flow_hash, hash64};

/// Flow hash of an IPv4 packet: the 5-tuple for unfragmented TCP/UDP, else addresses and
/// protocol (so all fragments of a datagram hash alike). Falls back to hashing the first
/// 20 bytes when the packet does not parse, so every input gets some hash.
pub fn ipv4_flow_hash(packet: &[u8], seed: u64) -> u64 {
    let Ok(ip) = Ipv4Header::parse(packet) else {
        return hash64(&packet[..packet.len().min(20)], seed);
    };
    let l4 = &packet[ip.header_len()..usize::from(ip.total_len)];
    let (sp, dp) = match ip.protocol {
        PROTO_TCP | PROTO_UDP if !ip.is_fragment() && l4.len() >= 4 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        _ => (0, 0),
    };
    flow_hash(ip.src, ip.dst, sp, dp, ip.protocol, seed)
}

/// Flow hash of an Ethernet frame: [`ipv4_flow_hash`] of its payload when it carries IPv4,
/// else a hash of the Ethernet header.
pub fn ethernet_flow_hash(frame: &[u8], seed: u64) -> u64 {
    if frame.len() >= ETHERNET_HEADER_LEN
        && u16::from_be_bytes([frame[12], frame[13]]) == ETHERTYPE_IPV4
    {
        ipv4_flow_hash(&frame[ETHERNET_HEADER_LEN..], seed)
    } else {
        hash64(&frame[..frame.len().min(ETHERNET_HEADER_LEN)], seed)
    }
}
