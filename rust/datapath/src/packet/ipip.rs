//! IP in IP (RFC 2003): an IPv4 packet inside an outer IPv4 header with protocol 4.
//!
//! The kernel here has no `ipip` device (PLATFORM.md), so kubetrio's IPIP mode is this
//! codec plus the userspace tunnel engine. Per RFC 2003 §3.1 the outer TOS is copied from
//! the inner header and DF is set when the inner packet has DF set.

use super::ipv4::{Ipv4Header, IPV4_HEADER_LEN};
use super::PROTO_IPIP;
use crate::error::{Error, Result};

/// Bytes added in front of the inner packet.
pub const IPIP_OVERHEAD: usize = IPV4_HEADER_LEN;

/// Parameters of one IPIP tunnel endpoint pair; encapsulates packets towards `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpipEncap {
    /// Outer source address.
    pub local: u32,
    /// Outer destination address.
    pub remote: u32,
    /// Outer TTL.
    pub ttl: u8,
}

impl IpipEncap {
    /// Writes the outer header and the inner IPv4 `packet` into `out`; returns the length.
    /// The inner header must parse; bytes after its total length are not carried.
    pub fn encap(&self, packet: &[u8], ident: u16, out: &mut [u8]) -> Result<usize> {
        let inner_len = self.write_outer_header(packet, ident, out)?;
        let total = IPV4_HEADER_LEN + inner_len;
        if out.len() < total {
            return Err(Error::BufferTooSmall {
                need: total,
                have: out.len(),
            });
        }
        out[IPV4_HEADER_LEN..total].copy_from_slice(&packet[..inner_len]);
        Ok(total)
    }

    /// Writes only the 20-byte outer header for `packet` into `out` and returns the inner
    /// packet's length, so a caller that already has the packet behind 20 bytes of headroom
    /// can encapsulate it in place (the tunnel engine does).
    pub fn write_outer_header(&self, packet: &[u8], ident: u16, out: &mut [u8]) -> Result<usize> {
        let inner = Ipv4Header::parse(packet)?;
        let inner_len = usize::from(inner.total_len);
        let mut outer = Ipv4Header::new(self.local, self.remote, PROTO_IPIP, inner_len, self.ttl)?;
        outer.tos = inner.tos;
        outer.ident = ident;
        outer.set_dont_fragment(inner.dont_fragment());
        outer.write(out)?;
        Ok(inner_len)
    }
}

/// A decapsulated IPIP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpipPacket {
    /// Outer header.
    pub outer: Ipv4Header,
    /// Inner header (its checksum is not verified: the receiver's stack does that).
    pub inner: Ipv4Header,
    /// Offset of the inner packet.
    pub inner_offset: usize,
    /// Length of the inner packet (its total length).
    pub inner_len: usize,
}

/// Parses an IPIP packet: the outer header must verify, carry protocol 4 and not be a
/// fragment; the inner header must parse and fit in the outer payload.
pub fn ipip_decap(packet: &[u8]) -> Result<IpipPacket> {
    let outer = Ipv4Header::parse_checked(packet)?;
    if outer.protocol != PROTO_IPIP {
        return Err(Error::Unsupported {
            what: "ipip",
            reason: "outer protocol is not 4",
        });
    }
    if outer.is_fragment() {
        return Err(Error::Unsupported {
            what: "ipip",
            reason: "outer packet is a fragment",
        });
    }
    let hl = outer.header_len();
    let inner = Ipv4Header::parse(&packet[hl..usize::from(outer.total_len)])?;
    Ok(IpipPacket {
        outer,
        inner,
        inner_offset: hl,
        inner_len: usize::from(inner.total_len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::udp::build_udp_datagram;

    fn inner() -> Vec<u8> {
        let mut p = [0u8; 64];
        let n =
            build_udp_datagram(0x0af4_0102, 0x0af4_0203, 5000, 53, b"query", 64, &mut p).unwrap();
        p[1] = 0xb8; // DSCP EF, to see it copied (checksum no longer valid: not checked)
        p[6] = 0x40; // DF
        p[..n].to_vec()
    }

    #[test]
    fn known_answer_header() {
        let e = IpipEncap {
            local: 0xac1e_0001,
            remote: 0xac1e_0002,
            ttl: 64,
        };
        let p = inner();
        let mut out = [0u8; 100];
        let n = e.encap(&p, 0x1234, &mut out).unwrap();
        assert_eq!(n, 20 + p.len());
        // 45 b8 | len | 12 34 | 40 00 (DF copied) | 40 04 | checksum | 172.30.0.1 | 172.30.0.2
        assert_eq!(&out[0..2], &[0x45, 0xb8]);
        assert_eq!(&out[4..10], &[0x12, 0x34, 0x40, 0x00, 64, 4]);
        assert_eq!(&out[12..20], &[172, 30, 0, 1, 172, 30, 0, 2]);
        assert_eq!(&out[20..n], &p[..]);
    }

    #[test]
    fn round_trip_and_trailing_bytes() {
        let e = IpipEncap {
            local: 1,
            remote: 2,
            ttl: 9,
        };
        let mut p = inner();
        let len = p.len();
        p.extend_from_slice(&[0xee; 6]); // link-layer padding is not carried
        let mut out = [0u8; 100];
        let n = e.encap(&p, 0, &mut out).unwrap();
        let d = ipip_decap(&out[..n]).unwrap();
        assert_eq!(d.inner_len, len);
        assert_eq!(
            &out[d.inner_offset..d.inner_offset + d.inner_len],
            &p[..len]
        );
        assert_eq!(d.outer.ttl, 9);
    }

    #[test]
    fn rejects_bad_packets() {
        let e = IpipEncap {
            local: 1,
            remote: 2,
            ttl: 9,
        };
        let mut out = [0u8; 100];
        assert!(e.encap(&[0x45; 10], 0, &mut out).is_err());
        assert!(e.encap(&inner(), 0, &mut out[..30]).is_err());
        let n = e.encap(&inner(), 0, &mut out).unwrap();
        let good = out[..n].to_vec();
        for cut in 0..good.len() {
            assert!(ipip_decap(&good[..cut]).is_err());
        }
        let mut frag = [0u8; 100];
        let m = build_udp_datagram(1, 2, 3, 4, &good[20..], 64, &mut frag).unwrap();
        assert!(ipip_decap(&frag[..m]).is_err()); // protocol 17, not 4
    }
}
