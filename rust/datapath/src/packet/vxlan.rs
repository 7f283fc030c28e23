//! VXLAN (RFC 7348): Ethernet frames in UDP over IPv4.
//!
//! Outer header layout written by [`VxlanEncap::encap`]:
//! IPv4 (20, DF clear, TOS 0) · UDP (8, checksum 0 as RFC 7348 allows over IPv4) ·
//! VXLAN (8: flags with the I bit, 24-bit VNI) · inner Ethernet frame.
//! The UDP source port is taken from the inner flow hash in 49152..=65535 (RFC 7348 §5),
//! so the underlay's ECMP spreads flows while keeping each flow on one path.

use super::ipv4::{Ipv4Header, IPV4_HEADER_LEN};
use super::udp::{verify_udp_checksum, UdpHeader, UDP_HEADER_LEN};
use super::{ethernet_flow_hash, ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, PROTO_UDP};
use crate::error::{need, Error, Result};

/// IANA-assigned VXLAN UDP port.
pub const VXLAN_PORT: u16 = 4789;
/// Length of the VXLAN header.
pub const VXLAN_HEADER_LEN: usize = 8;
/// Bytes added in front of the inner Ethernet frame: outer IPv4 + UDP + VXLAN.
pub const VXLAN_OVERHEAD: usize = IPV4_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
const FLAG_I: u8 = 0x08;

/// Parameters of one VXLAN tunnel endpoint pair; encapsulates frames towards `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanEncap {
    /// Outer source address (this node's underlay address).
    pub local: u32,
    /// Outer destination address (the remote node).
    pub remote: u32,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// Outer UDP destination port.
    pub dst_port: u16,
    /// Outer TTL.
    pub ttl: u8,
    /// Seed of the flow hash that picks the UDP source port.
    pub hash_seed: u64,
}

impl VxlanEncap {
    /// A tunnel from `local` to `remote` with `vni`; the VNI must fit in 24 bits.
    pub fn new(local: u32, remote: u32, vni: u32, dst_port: u16, ttl: u8) -> Result<Self> {
        if vni > MAX_VNI {
            return Err(Error::InvalidArgument(format!("VNI {vni} exceeds 24 bits")));
        }
        Ok(VxlanEncap {
            local,
            remote,
            vni,
            dst_port,
            ttl,
            hash_seed: 0,
        })
    }

    /// UDP source port for `frame`: 49152 + flow hash mod 16384.
    pub fn source_port(&self, frame: &[u8]) -> u16 {
        49152 + (ethernet_flow_hash(frame, self.hash_seed) % 16384) as u16
    }

    /// Writes the outer headers and `frame` (an Ethernet frame of at least 14 bytes) into
    /// `out` with IPv4 identification `ident`; returns the packet length.
    pub fn encap(&self, frame: &[u8], ident: u16, out: &mut [u8]) -> Result<usize> {
        need("ethernet", frame, ETHERNET_HEADER_LEN)?;
        let sport = self.source_port(frame);
        let n = self.write_headers(frame.len(), sport, ident, out)?;
        out[n..n + frame.len()].copy_from_slice(frame);
        Ok(n + frame.len())
    }

    /// Like [`VxlanEncap::encap`] for an IPv4 packet from a TUN device (no link layer): puts
    /// an Ethernet header with the given MACs and ethertype IPv4 in front of it.
    pub fn encap_ipv4(
        &self,
        packet: &[u8],
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        ident: u16,
        out: &mut [u8],
    ) -> Result<usize> {
        let sport = 49152 + (super::ipv4_flow_hash(packet, self.hash_seed) % 16384) as u16;
        let frame_len = ETHERNET_HEADER_LEN + packet.len();
        let n = self.write_headers(frame_len, sport, ident, out)?;
        let eth = &mut out[n..n + ETHERNET_HEADER_LEN];
        eth[0..6].copy_from_slice(&dst_mac);
        eth[6..12].copy_from_slice(&src_mac);
        eth[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let p = n + ETHERNET_HEADER_LEN;
        out[p..p + packet.len()].copy_from_slice(packet);
        Ok(p + packet.len())
    }

    /// Writes outer IPv4, UDP and VXLAN headers for a frame of `frame_len` bytes, checking
    /// that `out` has room for the whole packet; returns the header length.
    fn write_headers(
        &self,
        frame_len: usize,
        sport: u16,
        ident: u16,
        out: &mut [u8],
    ) -> Result<usize> {
        let udp_len = UDP_HEADER_LEN + VXLAN_HEADER_LEN + frame_len;
        let mut ip = Ipv4Header::new(self.local, self.remote, PROTO_UDP, udp_len, self.ttl)?;
        ip.ident = ident;
        let total = usize::from(ip.total_len);
        if out.len() < total {
            return Err(Error::BufferTooSmall {
                need: total,
                have: out.len(),
            });
        }
        ip.write(out)?;
        UdpHeader {
            src_port: sport,
            dst_port: self.dst_port,
            length: udp_len as u16,
            checksum: 0,
        }
        .write(&mut out[IPV4_HEADER_LEN..])?;
        write_vxlan_header(self.vni, &mut out[IPV4_HEADER_LEN + UDP_HEADER_LEN..])?;
        Ok(VXLAN_OVERHEAD)
    }
}

/// Writes the 8-byte VXLAN header (I flag, `vni`) into `out`. Used where the kernel adds
/// the outer IPv4/UDP headers (the tunnel engine sends through a UDP socket).
pub fn write_vxlan_header(vni: u32, out: &mut [u8]) -> Result<()> {
    if vni > MAX_VNI {
        return Err(Error::InvalidArgument(format!("VNI {vni} exceeds 24 bits")));
    }
    if out.len() < VXLAN_HEADER_LEN {
        return Err(Error::BufferTooSmall {
            need: VXLAN_HEADER_LEN,
            have: out.len(),
        });
    }
    out[0..4].copy_from_slice(&[FLAG_I, 0, 0, 0]);
    out[4..8].copy_from_slice(&(vni << 8).to_be_bytes());
    Ok(())
}

/// Parses the VXLAN header at the start of a UDP payload; returns the VNI. The I flag
/// must be set; reserved bits are ignored (RFC 7348 §5).
pub fn parse_vxlan_header(payload: &[u8]) -> Result<u32> {
    need("vxlan", payload, VXLAN_HEADER_LEN)?;
    if payload[0] & FLAG_I == 0 {
        return Err(Error::Malformed {
            what: "vxlan",
            reason: "I flag not set",
        });
    }
    Ok(u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]) >> 8)
}

/// A decapsulated VXLAN packet: outer headers and where the inner frame lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanPacket {
    /// Outer IPv4 header.
    pub outer: Ipv4Header,
    /// Outer UDP header.
    pub udp: UdpHeader,
    /// VXLAN network identifier.
    pub vni: u32,
    /// Offset of the inner Ethernet frame.
    pub inner_offset: usize,
    /// Length of the inner Ethernet frame.
    pub inner_len: usize,
}

/// Parses a VXLAN packet (outer IPv4 + UDP + VXLAN). Verifies the outer IPv4 checksum and
/// the UDP checksum when present, requires the I flag, ignores reserved bits (RFC 7348 §5),
/// rejects outer fragments, and requires a full inner Ethernet header. The UDP port is not
/// checked: the caller knows which port it listens on.
pub fn vxlan_decap(packet: &[u8]) -> Result<VxlanPacket> {
    let outer = Ipv4Header::parse_checked(packet)?;
    if outer.protocol != PROTO_UDP {
        return Err(Error::Unsupported {
            what: "vxlan",
            reason: "outer protocol is not UDP",
        });
    }
    if outer.is_fragment() {
        return Err(Error::Unsupported {
            what: "vxlan",
            reason: "outer packet is a fragment",
        });
    }
    let hl = outer.header_len();
    let l4 = &packet[hl..usize::from(outer.total_len)];
    let udp = UdpHeader::parse(l4)?;
    let l4 = &l4[..usize::from(udp.length)];
    verify_udp_checksum(outer.src, outer.dst, l4)?;
    let v = &l4[UDP_HEADER_LEN..];
    let vni = parse_vxlan_header(v)?;
    let inner = &v[VXLAN_HEADER_LEN..];
    need("ethernet", inner, ETHERNET_HEADER_LEN)?;
    Ok(VxlanPacket {
        outer,
        udp,
        vni,
        inner_offset: hl + UDP_HEADER_LEN + VXLAN_HEADER_LEN,
        inner_len: inner.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::udp::build_udp_datagram;

    fn frame() -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        let mut ip = [0u8; 64];
        let n =
            build_udp_datagram(0x0af4_0102, 0x0af4_0203, 5000, 53, b"query", 64, &mut ip).unwrap();
        f.extend_from_slice(&ip[..n]);
        f
    }

    #[test]
    fn known_answer_headers() {
        let e = VxlanEncap::new(0xac1e_0001, 0xac1e_0002, 4096, VXLAN_PORT, 64).unwrap();
        let f = frame();
        let mut out = [0u8; 200];
        let n = e.encap(&f, 7, &mut out).unwrap();
        assert_eq!(n, VXLAN_OVERHEAD + f.len());
        // Outer IPv4: 45 00 len, ident 7, no flags, TTL 64, UDP, 172.30.0.1 -> 172.30.0.2.
        assert_eq!(&out[0..2], &[0x45, 0x00]);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]) as usize, n);
        assert_eq!(&out[4..10], &[0x00, 0x07, 0x00, 0x00, 64, 17]);
        assert_eq!(&out[12..20], &[172, 30, 0, 1, 172, 30, 0, 2]);
        // UDP: source port in the dynamic range, dst 4789, checksum 0.
        assert!(u16::from_be_bytes([out[20], out[21]]) >= 49152);
        assert_eq!(&out[22..24], &4789u16.to_be_bytes());
        assert_eq!(&out[26..28], &[0, 0]);
        // VXLAN: I flag, VNI 4096 = 0x001000.
        assert_eq!(&out[28..36], &[0x08, 0, 0, 0, 0x00, 0x10, 0x00, 0x00]);
        assert_eq!(&out[36..n], &f[..]);
    }

    #[test]
    fn round_trip() {
        let e = VxlanEncap::new(1, 2, MAX_VNI, 8472, 3).unwrap();
        let f = frame();
        let mut out = [0u8; 200];
        let n = e.encap(&f, 0, &mut out).unwrap();
        let d = vxlan_decap(&out[..n]).unwrap();
        assert_eq!(d.vni, MAX_VNI);
        assert_eq!(d.udp.dst_port, 8472);
        assert_eq!((d.outer.src, d.outer.dst, d.outer.ttl), (1, 2, 3));
        assert_eq!(&out[d.inner_offset..d.inner_offset + d.inner_len], &f[..]);
    }

    #[test]
    fn same_flow_same_source_port() {
        let e = VxlanEncap::new(1, 2, 1, VXLAN_PORT, 64).unwrap();
        let f = frame();
        assert_eq!(e.source_port(&f), e.source_port(&f));
        let mut other = f.clone();
        other[14 + 20 + 1] ^= 1; // inner UDP source port
                                 // Different flows usually differ; the hash is deterministic either way.
        assert_eq!(e.source_port(&other), e.source_port(&other));
    }

    #[test]
    fn encap_ipv4_adds_ethernet() {
        let e = VxlanEncap::new(1, 2, 7, VXLAN_PORT, 64).unwrap();
        let f = frame();
        let mut out = [0u8; 200];
        let n = e
            .encap_ipv4(
                &f[14..],
                [0x02, 0, 0, 0, 0, 1],
                [0x02, 0, 0, 0, 0, 2],
                0,
                &mut out,
            )
            .unwrap();
        let d = vxlan_decap(&out[..n]).unwrap();
        assert_eq!(&out[d.inner_offset..n], &f[..]);
        assert_eq!(e.source_port(&f), u16::from_be_bytes([out[20], out[21]]));
    }

    #[test]
    fn bare_header_round_trip() {
        let mut h = [0u8; 8];
        write_vxlan_header(0xabcdef, &mut h).unwrap();
        assert_eq!(h, [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
        assert_eq!(parse_vxlan_header(&h).unwrap(), 0xabcdef);
        assert!(write_vxlan_header(MAX_VNI + 1, &mut h).is_err());
        assert!(write_vxlan_header(1, &mut h[..7]).is_err());
        assert!(parse_vxlan_header(&h[..7]).is_err());
        assert!(parse_vxlan_header(&[0u8; 8]).is_err());
    }

    #[test]
    fn rejects_bad_packets() {
        assert!(VxlanEncap::new(1, 2, MAX_VNI + 1, VXLAN_PORT, 64).is_err());
        let e = VxlanEncap::new(1, 2, 7, VXLAN_PORT, 64).unwrap();
        let mut out = [0u8; 200];
        assert!(e.encap(&[0u8; 13], 0, &mut out).is_err());
        assert!(matches!(
            e.encap(&frame(), 0, &mut out[..40]),
            Err(Error::BufferTooSmall { .. })
        ));
        let n = e.encap(&frame(), 0, &mut out).unwrap();
        let good = out[..n].to_vec();
        let mut no_i = good.clone();
        no_i[28] = 0;
        assert!(vxlan_decap(&no_i).is_err());
        let mut reserved = good.clone();
        reserved[29] = 0xff; // reserved bits are ignored on receipt
        assert!(vxlan_decap(&reserved).is_ok());
        // Cut the inner frame below an Ethernet header, fixing up the lengths.
        let mut short = [0u8; 64];
        let m = build_udp_datagram(
            1,
            2,
            3,
            VXLAN_PORT,
            &[0x08, 0, 0, 0, 0, 0, 7, 0, 1, 2],
            64,
            &mut short,
        )
        .unwrap();
        assert!(vxlan_decap(&short[..m]).is_err());
        for cut in 0..good.len() {
            assert!(vxlan_decap(&good[..cut]).is_err());
        }
    }
}
