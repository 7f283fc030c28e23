//! IPv4 header (RFC 791).

use crate::checksum::internet_checksum;
use crate::error::{need, Error, Result};

/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A parsed IPv4 header. Options are skipped on parse and never written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Header length in 32-bit words (5..=15); [`Ipv4Header::write`] always writes 5.
    pub ihl: u8,
    /// DSCP and ECN (the old TOS byte).
    pub tos: u8,
    /// Total length of header and payload.
    pub total_len: u16,
    /// Identification, for fragment reassembly.
    pub ident: u16,
    /// Flags (top 3 bits) and fragment offset.
    pub flags_fragment: u16,
    /// Time to live.
    pub ttl: u8,
    /// Payload protocol number.
    pub protocol: u8,
    /// Header checksum as found (parse) or computed (write).
    pub checksum: u16,
    /// Source address, host order.
    pub src: u32,
    /// Destination address, host order.
    pub dst: u32,
}

impl Ipv4Header {
    /// A 20-byte header for a payload of `payload_len` bytes (checksum filled in on write).
    pub fn new(src: u32, dst: u32, protocol: u8, payload_len: usize, ttl: u8) -> Result<Self> {
        let total = IPV4_HEADER_LEN + payload_len;
        let total_len = u16::try_from(total).map_err(|_| Error::Malformed {
            what: "ipv4",
            reason: "packet longer than 65535 bytes",
        })?;
        Ok(Ipv4Header {
            ihl: 5,
            tos: 0,
            total_len,
            ident: 0,
            flags_fragment: 0,
            ttl,
            protocol,
            checksum: 0,
            src,
            dst,
        })
    }

    /// Parses the header at the start of `buf` without checking the checksum. Checks the
    /// version, that the header length is 5..15 words, and that the total length covers the
    /// header and fits in `buf` (trailing bytes beyond it, e.g. Ethernet padding, are allowed).
    pub fn parse(buf: &[u8]) -> Result<Self> {
        need("ipv4", buf, IPV4_HEADER_LEN)?;
        if buf[0] >> 4 != 4 {
            return Err(Error::Malformed {
                what: "ipv4",
                reason: "version is not 4",
            });
        }
        let ihl = buf[0] & 0x0f;
        if ihl < 5 {
            return Err(Error::Malformed {
                what: "ipv4",
                reason: "header length below 20 bytes",
            });
        }
        let header_len = usize::from(ihl) * 4;
        need("ipv4", buf, header_len)?;
        let total_len = u16::from_be_bytes([buf[2], buf[3]]);
        if usize::from(total_len) < header_len {
            return Err(Error::Malformed {
                what: "ipv4",
                reason: "total length shorter than the header",
            });
        }
        need("ipv4", buf, usize::from(total_len))?;
        Ok(Ipv4Header {
            ihl,
            tos: buf[1],
            total_len,
            ident: u16::from_be_bytes([buf[4], buf[5]]),
            flags_fragment: u16::from_be_bytes([buf[6], buf[7]]),
            ttl: buf[8],
            protocol: buf[9],
            checksum: u16::from_be_bytes([buf[10], buf[11]]),
            src: u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]),
            dst: u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]),
        })
    }

    /// [`Ipv4Header::parse`], then verifies the header checksum.
    pub fn parse_checked(buf: &[u8]) -> Result<Self> {
        let h = Self::parse(buf)?;
        if internet_checksum(&buf[..h.header_len()]) != 0 {
            return Err(Error::BadChecksum { what: "ipv4" });
        }
        Ok(h)
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl) * 4
    }

    /// Payload length in bytes (total length minus header).
    pub fn payload_len(&self) -> usize {
        usize::from(self.total_len).saturating_sub(self.header_len())
    }

    /// The Don't Fragment flag.
    pub fn dont_fragment(&self) -> bool {
        self.flags_fragment & FLAG_DF != 0
    }

    /// Sets or clears the Don't Fragment flag.
    pub fn set_dont_fragment(&mut self, df: bool) {
        if df {
            self.flags_fragment |= FLAG_DF;
        } else {
            self.flags_fragment &= !FLAG_DF;
        }
    }

    /// True for any fragment (More Fragments set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.flags_fragment & FLAG_MF != 0 || self.flags_fragment & FRAG_OFFSET_MASK != 0
    }

    /// Writes a 20-byte header (no options) with a fresh checksum into `out`; stores the
    /// checksum in `self` and returns 20.
    pub fn write(&mut self, out: &mut [u8]) -> Result<usize> {
        if out.len() < IPV4_HEADER_LEN {
            return Err(Error::BufferTooSmall {
                need: IPV4_HEADER_LEN,
                have: out.len(),
            });
        }
        self.ihl = 5;
        let h = &mut out[..IPV4_HEADER_LEN];
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&self.total_len.to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        h[6..8].copy_from_slice(&self.flags_fragment.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&self.src.to_be_bytes());
        h[16..20].copy_from_slice(&self.dst.to_be_bytes());
        self.checksum = internet_checksum(h);
        h[10..12].copy_from_slice(&self.checksum.to_be_bytes());
        Ok(IPV4_HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-answer vector: a UDP packet header of 115 bytes, 192.168.0.1 -> 192.168.0.199,
    // DF set, TTL 64, checksum 0xb861 (computed independently with the RFC 1071 example code).
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn packet() -> Vec<u8> {
        let mut p = HEADER.to_vec();
        p.resize(0x73, 0);
        p
    }

    #[test]
    fn parses_known_header() {
        let h = Ipv4Header::parse_checked(&packet()).unwrap();
        assert_eq!(h.total_len, 0x73);
        assert_eq!(h.ttl, 64);
        assert_eq!(h.protocol, 17);
        assert!(h.dont_fragment() && !h.is_fragment());
        assert_eq!(h.src, 0xc0a8_0001);
        assert_eq!(h.dst, 0xc0a8_00c7);
        assert_eq!(h.checksum, 0xb861);
    }

    #[test]
    fn write_round_trips_and_matches_vector() {
        let mut h = Ipv4Header::parse(&packet()).unwrap();
        let mut out = [0u8; 20];
        h.write(&mut out).unwrap();
        assert_eq!(out, HEADER);
        assert!(h.write(&mut [0u8; 19]).is_err());
    }

    #[test]
    fn rejects_malformed() {
        let p = packet();
        assert!(matches!(
            Ipv4Header::parse(&p[..19]),
            Err(Error::Truncated { .. })
        ));
        assert!(Ipv4Header::parse(&p[..0x72]).is_err());
        let mut bad = p.clone();
        bad[0] = 0x65;
        assert!(Ipv4Header::parse(&bad).is_err());
        let mut bad = p.clone();
        bad[0] = 0x44;
        assert!(Ipv4Header::parse(&bad).is_err());
        let mut bad = p.clone();
        bad[0] = 0x4f; // 60-byte header claimed, total length 0x73 is fine, buffer is too
        bad[2..4].copy_from_slice(&[0, 30]);
        assert!(Ipv4Header::parse(&bad).is_err());
        let mut bad = p.clone();
        bad[15] ^= 1;
        assert!(matches!(
            Ipv4Header::parse_checked(&bad),
            Err(Error::BadChecksum { .. })
        ));
        assert!(Ipv4Header::new(1, 2, 17, 70_000, 64).is_err());
    }

    #[test]
    fn fragment_flags() {
        let mut h = Ipv4Header::new(1, 2, 17, 0, 64).unwrap();
        assert!(!h.is_fragment());
        h.flags_fragment = 0x2000;
        assert!(h.is_fragment());
        h.flags_fragment = 0x0001;
        assert!(h.is_fragment());
        h.set_dont_fragment(true);
        assert!(h.dont_fragment());
        h.set_dont_fragment(false);
        assert!(!h.dont_fragment());
    }
}
