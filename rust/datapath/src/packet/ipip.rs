//! IP in IP (RFC 2003): an IPv4 packet inside an outer IPv4 header with protocol 4.
//!
//! The kernel here has no `ipip` device (PLATFORM.md), so kubetrio's IPIP mode is this
//! codec plus the userspace tunnel engine. [`IpipEncap`] follows RFC 2003 §3.1: the outer
//! TOS is copied from the inner header and DF is set when the inner packet has DF set (the
//! engine lets the kernel write the outer header instead; see [`crate::engine`]).
//!
//! **Aggregates.** The tunnel engine may send a whole TCP TSO packet (up to 64 KiB) as one
//! IPIP packet without DF and let the kernel fragment the outer packet (RFC 2003 §5.1
//! allows outer fragmentation); the receiving kernel reassembles it. To write it back into
//! the receiver's stack as a GSO packet the receiver needs the sender's segment size, which
//! the fragments do not tell, so the outer header carries it in a 4-byte IP option of the
//! experimental type 30 (RFC 4727; not copied into later fragments, ignored by other
//! receivers): `[30, 4, mss_hi, mss_lo]`. [`mss_option`] builds it and [`ipip_decap`]
//! reports it as [`IpipPacket::gso_size`].

use super::ipv4::{Ipv4Header, IPV4_HEADER_LEN};
use super::PROTO_IPIP;
use crate::error::{Error, Result};

/// Bytes added in front of the inner packet.
pub const IPIP_OVERHEAD: usize = IPV4_HEADER_LEN;
/// IP option type of the segment-size option of an aggregate: experimental option 30
/// (RFC 4727: copy 0, class 0, number 30).
pub const MSS_OPTION: u8 = 30;
/// Length of the segment-size option.
pub const MSS_OPTION_LEN: usize = 4;

/// The outer-header IP option that marks an aggregate of `mss`-byte TCP segments.
pub fn mss_option(mss: u16) -> [u8; MSS_OPTION_LEN] {
    let [hi, lo] = mss.to_be_bytes();
    [MSS_OPTION, MSS_OPTION_LEN as u8, hi, lo]
}

/// The segment size in IPv4 `options` (the bytes between the fixed header and the
/// payload), if they hold a well-formed [`MSS_OPTION`]; malformed options yield `None`.
fn find_mss_option(mut options: &[u8]) -> Option<u16> {
    while let Some(&kind) = options.first() {
        match kind {
            0 => return None, // end of options
            1 => options = &options[1..],
            _ => {
                let len = usize::from(*options.get(1)?);
                let opt = options.get(..len).filter(|_| len >= 2)?;
                if kind == MSS_OPTION && len == MSS_OPTION_LEN {
                    return Some(u16::from_be_bytes([opt[2], opt[3]])).filter(|&m| m > 0);
                }
                options = &options[len..];
            }
        }
    }
    None
}

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
    /// For an aggregate (a TCP packet of several segments, see the module documentation):
    /// the sender's segment size, from the outer header's [`MSS_OPTION`].
    pub gso_size: Option<u16>,
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
        gso_size: find_mss_option(&packet[IPV4_HEADER_LEN..hl]),
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

    /// An outer header with `options` in front of `inner`, as the kernel builds it.
    fn with_options(options: &[u8], inner: &[u8]) -> Vec<u8> {
        let hl = IPV4_HEADER_LEN + options.len();
        let mut out = vec![0u8; hl + inner.len()];
        let mut h = Ipv4Header::new(1, 2, PROTO_IPIP, options.len() + inner.len(), 9).unwrap();
        h.write(&mut out).unwrap();
        out[0] = 0x40 | (hl / 4) as u8;
        out[IPV4_HEADER_LEN..hl].copy_from_slice(options);
        out[hl..].copy_from_slice(inner);
        out[10..12].copy_from_slice(&[0, 0]);
        let c = crate::checksum::internet_checksum(&out[..hl]);
        out[10..12].copy_from_slice(&c.to_be_bytes());
        out
    }

    #[test]
    fn segment_size_option() {
        assert_eq!(mss_option(1428), [30, 4, 0x05, 0x94]);
        let p = inner();
        let agg = with_options(&mss_option(1428), &p);
        let d = ipip_decap(&agg).unwrap();
        assert_eq!((d.inner_offset, d.inner_len), (24, p.len()));
        assert_eq!(d.gso_size, Some(1428));
        assert_eq!(&agg[24..], &p[..]);
        // After no-ops (how later fragments blank it) or another option; not after EOL.
        let found = |opts: &[u8]| ipip_decap(&with_options(opts, &p)).unwrap().gso_size;
        assert_eq!(found(&[1, 1, 1, 1, 30, 4, 0, 200, 0, 0, 0, 0]), Some(200));
        assert_eq!(found(&[0x94, 4, 0, 0, 30, 4, 1, 0]), Some(256));
        assert_eq!(found(&[0, 0, 0, 0, 30, 4, 1, 0]), None);
        assert_eq!(found(&[1, 1, 1, 1]), None);
        assert_eq!(found(&[30, 4, 0, 0]), None, "size 0");
        assert_eq!(found(&[30, 8, 0, 1, 0, 0, 0, 0]), None, "wrong length");
        assert_eq!(found(&[0x94, 0, 30, 4]), None, "length below 2");
        assert_eq!(found(&[0x94, 9, 30, 4]), None, "past the header");
        assert_eq!(ipip_decap(&with_options(&[], &p)).unwrap().gso_size, None);
    }
}
