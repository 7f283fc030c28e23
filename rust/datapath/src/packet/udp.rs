//! UDP header (RFC 768) and IPv4 UDP datagrams.

use super::ipv4::{Ipv4Header, IPV4_HEADER_LEN};
use super::PROTO_UDP;
use crate::checksum::{finish, pseudo_header_sum, sum};
use crate::error::{need, Error, Result};

/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;

/// A parsed UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Length of header and payload.
    pub length: u16,
    /// Checksum; 0 means "none" over IPv4.
    pub checksum: u16,
}

impl UdpHeader {
    /// Parses the header at the start of `segment` (the IPv4 payload). The length field must
    /// cover the header and fit in `segment`.
    pub fn parse(segment: &[u8]) -> Result<Self> {
        need("udp", segment, UDP_HEADER_LEN)?;
        let length = u16::from_be_bytes([segment[4], segment[5]]);
        if usize::from(length) < UDP_HEADER_LEN {
            return Err(Error::Malformed {
                what: "udp",
                reason: "length shorter than the header",
            });
        }
        need("udp", segment, usize::from(length))?;
        Ok(UdpHeader {
            src_port: u16::from_be_bytes([segment[0], segment[1]]),
            dst_port: u16::from_be_bytes([segment[2], segment[3]]),
            length,
            checksum: u16::from_be_bytes([segment[6], segment[7]]),
        })
    }

    /// Writes the header (checksum as stored in `self`) into `out`; returns 8.
    pub fn write(&self, out: &mut [u8]) -> Result<usize> {
        if out.len() < UDP_HEADER_LEN {
            return Err(Error::BufferTooSmall {
                need: UDP_HEADER_LEN,
                have: out.len(),
            });
        }
        out[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        out[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        out[4..6].copy_from_slice(&self.length.to_be_bytes());
        out[6..8].copy_from_slice(&self.checksum.to_be_bytes());
        Ok(UDP_HEADER_LEN)
    }
}

/// UDP checksum of `segment` (header with its checksum field included, and payload) over
/// IPv4. A result of 0 is sent as 0xffff, since 0 means "no checksum" (RFC 768).
pub fn udp_checksum(src: u32, dst: u32, segment: &[u8]) -> u16 {
    let s = pseudo_header_sum(src, dst, PROTO_UDP, segment.len() as u16);
    match finish(sum(segment, s)) {
        0 => 0xffff,
        c => c,
    }
}

/// Verifies the checksum of a UDP `segment` carried from `src` to `dst` (0 = not used, OK).
pub fn verify_udp_checksum(src: u32, dst: u32, segment: &[u8]) -> Result<()> {
    if segment.len() < UDP_HEADER_LEN || (segment[6] == 0 && segment[7] == 0) {
        return Ok(());
    }
    let s = pseudo_header_sum(src, dst, PROTO_UDP, segment.len() as u16);
    if finish(sum(segment, s)) != 0 {
        return Err(Error::BadChecksum { what: "udp" });
    }
    Ok(())
}

/// A parsed IPv4/UDP datagram: both headers and where the payload lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram {
    /// The IPv4 header.
    pub ip: Ipv4Header,
    /// The UDP header.
    pub udp: UdpHeader,
    /// Offset of the UDP payload in the packet.
    pub payload_offset: usize,
    /// Length of the UDP payload.
    pub payload_len: usize,
}

/// Parses an IPv4 packet carrying an unfragmented UDP datagram, verifying the IPv4 and (if
/// present) UDP checksums.
pub fn parse_udp_datagram(packet: &[u8]) -> Result<UdpDatagram> {
    let ip = Ipv4Header::parse_checked(packet)?;
    if ip.protocol != PROTO_UDP {
        return Err(Error::Unsupported {
            what: "ipv4",
            reason: "payload is not UDP",
        });
    }
    if ip.is_fragment() {
        return Err(Error::Unsupported {
            what: "ipv4",
            reason: "fragments are not reassembled",
        });
    }
    let l4 = &packet[ip.header_len()..usize::from(ip.total_len)];
    let udp = UdpHeader::parse(l4)?;
    verify_udp_checksum(ip.src, ip.dst, &l4[..usize::from(udp.length)])?;
    Ok(UdpDatagram {
        ip,
        udp,
        payload_offset: ip.header_len() + UDP_HEADER_LEN,
        payload_len: usize::from(udp.length) - UDP_HEADER_LEN,
    })
}

/// Builds an IPv4/UDP packet with valid checksums into `out`; returns its length.
pub fn build_udp_datagram(
    src: u32,
    dst: u32,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
    ttl: u8,
    out: &mut [u8],
) -> Result<usize> {
    let udp_len = UDP_HEADER_LEN + payload.len();
    let mut ip = Ipv4Header::new(src, dst, PROTO_UDP, udp_len, ttl)?;
    let total = usize::from(ip.total_len);
    if out.len() < total {
        return Err(Error::BufferTooSmall {
            need: total,
            have: out.len(),
        });
    }
    ip.write(out)?;
    let seg = &mut out[IPV4_HEADER_LEN..total];
    let mut udp = UdpHeader {
        src_port,
        dst_port,
        length: udp_len as u16,
        checksum: 0,
    };
    udp.write(seg)?;
    seg[UDP_HEADER_LEN..].copy_from_slice(payload);
    udp.checksum = udp_checksum(src, dst, seg);
    udp.write(seg)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_datagram() {
        // 10.0.0.1:1234 -> 10.0.0.2:80, payload "hi", TTL 64. Checksums worked by hand:
        // IPv4 sum of words 4500 001e 0000 0000 4011 0a00 0001 0a00 0002 = 0x9932 -> 0x66cd;
        // UDP pseudo 0a00+0001+0a00+0002+0011+000a, header 04d2+0050+000a, data 6869
        // = 0x81b3 -> 0x7e4c.
        let mut out = [0u8; 64];
        let n =
            build_udp_datagram(0x0a00_0001, 0x0a00_0002, 1234, 80, b"hi", 64, &mut out).unwrap();
        assert_eq!(n, 30);
        assert_eq!(&out[10..12], &[0x66, 0xcd]);
        assert_eq!(&out[26..28], &[0x7e, 0x4c]);
        let d = parse_udp_datagram(&out[..n]).unwrap();
        assert_eq!((d.udp.src_port, d.udp.dst_port), (1234, 80));
        assert_eq!(
            &out[d.payload_offset..d.payload_offset + d.payload_len],
            b"hi"
        );
    }

    #[test]
    fn rejects_bad_udp() {
        let mut out = [0u8; 64];
        let n = build_udp_datagram(1, 2, 3, 4, b"payload", 64, &mut out).unwrap();
        let mut bad = out[..n].to_vec();
        bad[n - 1] ^= 0xff;
        assert!(matches!(
            parse_udp_datagram(&bad),
            Err(Error::BadChecksum { what: "udp" })
        ));
        bad[26] = 0;
        bad[27] = 0; // no checksum: accepted
        assert!(parse_udp_datagram(&bad).is_ok());
        assert!(UdpHeader::parse(&[0, 1, 0, 2, 0, 7, 0, 0]).is_err());
        assert!(UdpHeader::parse(&[0, 1, 0, 2, 0, 9, 0, 0]).is_err());
        assert!(UdpHeader::parse(&[0, 1, 0, 2, 0, 8, 0]).is_err());
        assert!(build_udp_datagram(1, 2, 3, 4, b"payload", 64, &mut out[..20]).is_err());
    }
}
