//! TCP header (RFC 9293) and IPv4 TCP segments.

use super::ipv4::{Ipv4Header, IPV4_HEADER_LEN};
use super::PROTO_TCP;
use crate::checksum::{finish, pseudo_header_sum, sum};
use crate::error::{need, Error, Result};

/// Length of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;

/// A parsed TCP header (options skipped on parse, never written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Header length in 32-bit words (5..=15).
    pub data_offset: u8,
    /// Flags: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80.
    pub flags: u8,
    /// Receive window.
    pub window: u16,
    /// Checksum.
    pub checksum: u16,
    /// Urgent pointer.
    pub urgent: u16,
}

impl TcpHeader {
    /// Parses the header at the start of `segment`; the data offset must be 5..15 words and
    /// fit in `segment`.
    pub fn parse(segment: &[u8]) -> Result<Self> {
        need("tcp", segment, TCP_HEADER_LEN)?;
        let data_offset = segment[12] >> 4;
        if data_offset < 5 {
            return Err(Error::Malformed {
                what: "tcp",
                reason: "data offset below 20 bytes",
            });
        }
        need("tcp", segment, usize::from(data_offset) * 4)?;
        Ok(TcpHeader {
            src_port: u16::from_be_bytes([segment[0], segment[1]]),
            dst_port: u16::from_be_bytes([segment[2], segment[3]]),
            seq: u32::from_be_bytes([segment[4], segment[5], segment[6], segment[7]]),
            ack: u32::from_be_bytes([segment[8], segment[9], segment[10], segment[11]]),
            data_offset,
            flags: segment[13],
            window: u16::from_be_bytes([segment[14], segment[15]]),
            checksum: u16::from_be_bytes([segment[16], segment[17]]),
            urgent: u16::from_be_bytes([segment[18], segment[19]]),
        })
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset) * 4
    }

    /// Writes a 20-byte header (checksum as stored in `self`) into `out`; returns 20.
    pub fn write(&self, out: &mut [u8]) -> Result<usize> {
        if out.len() < TCP_HEADER_LEN {
            return Err(Error::BufferTooSmall {
                need: TCP_HEADER_LEN,
                have: out.len(),
            });
        }
        out[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        out[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        out[4..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..12].copy_from_slice(&self.ack.to_be_bytes());
        out[12] = 5 << 4;
        out[13] = self.flags;
        out[14..16].copy_from_slice(&self.window.to_be_bytes());
        out[16..18].copy_from_slice(&self.checksum.to_be_bytes());
        out[18..20].copy_from_slice(&self.urgent.to_be_bytes());
        Ok(TCP_HEADER_LEN)
    }
}

/// TCP checksum of `segment` (header with its checksum field included, and payload).
pub fn tcp_checksum(src: u32, dst: u32, segment: &[u8]) -> u16 {
    finish(sum(
        segment,
        pseudo_header_sum(src, dst, PROTO_TCP, segment.len() as u16),
    ))
}

/// A parsed IPv4/TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// The IPv4 header.
    pub ip: Ipv4Header,
    /// The TCP header.
    pub tcp: TcpHeader,
    /// Offset of the TCP payload in the packet.
    pub payload_offset: usize,
    /// Length of the TCP payload.
    pub payload_len: usize,
}

/// Parses an IPv4 packet carrying an unfragmented TCP segment, verifying both checksums.
pub fn parse_tcp_segment(packet: &[u8]) -> Result<TcpSegment> {
    let ip = Ipv4Header::parse_checked(packet)?;
    if ip.protocol != PROTO_TCP {
        return Err(Error::Unsupported {
            what: "ipv4",
            reason: "payload is not TCP",
        });
    }
    if ip.is_fragment() {
        return Err(Error::Unsupported {
            what: "ipv4",
            reason: "fragments are not reassembled",
        });
    }
    let seg = &packet[ip.header_len()..usize::from(ip.total_len)];
    let tcp = TcpHeader::parse(seg)?;
    if tcp_checksum(ip.src, ip.dst, seg) != 0 {
        return Err(Error::BadChecksum { what: "tcp" });
    }
    Ok(TcpSegment {
        ip,
        tcp,
        payload_offset: ip.header_len() + tcp.header_len(),
        payload_len: seg.len() - tcp.header_len(),
    })
}

/// Builds an IPv4/TCP packet (`tcp.checksum` is ignored and computed) into `out`; returns
/// its length.
pub fn build_tcp_segment(
    src: u32,
    dst: u32,
    tcp: &TcpHeader,
    payload: &[u8],
    ttl: u8,
    out: &mut [u8],
) -> Result<usize> {
    let mut ip = Ipv4Header::new(src, dst, PROTO_TCP, TCP_HEADER_LEN + payload.len(), ttl)?;
    ip.set_dont_fragment(true);
    let total = usize::from(ip.total_len);
    if out.len() < total {
        return Err(Error::BufferTooSmall {
            need: total,
            have: out.len(),
        });
    }
    ip.write(out)?;
    let seg = &mut out[IPV4_HEADER_LEN..total];
    let mut h = *tcp;
    h.data_offset = 5;
    h.checksum = 0;
    h.write(seg)?;
    seg[TCP_HEADER_LEN..].copy_from_slice(payload);
    h.checksum = tcp_checksum(src, dst, seg);
    h.write(seg)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn() -> TcpHeader {
        TcpHeader {
            src_port: 40000,
            dst_port: 80,
            seq: 1,
            ack: 0,
            data_offset: 5,
            flags: 0x02,
            window: 65535,
            checksum: 0,
            urgent: 0,
        }
    }

    #[test]
    fn round_trip() {
        let mut out = [0u8; 100];
        let n =
            build_tcp_segment(0x0a00_0001, 0x0a00_0002, &syn(), b"GET /", 64, &mut out).unwrap();
        let s = parse_tcp_segment(&out[..n]).unwrap();
        assert_eq!(s.tcp.flags, 0x02);
        assert_eq!(s.tcp.dst_port, 80);
        assert_eq!(
            &out[s.payload_offset..s.payload_offset + s.payload_len],
            b"GET /"
        );
        let mut bad = out[..n].to_vec();
        bad[n - 1] ^= 1;
        assert!(matches!(
            parse_tcp_segment(&bad),
            Err(Error::BadChecksum { what: "tcp" })
        ));
    }

    #[test]
    fn known_answer_checksum() {
        // 10.0.0.1:40000 -> 10.0.0.2:80 SYN seq 1 win 65535, no payload. By hand: pseudo
        // 0a00+0001+0a00+0002+0006+0014 = 0x141d; header 9c40+0050+0000+0001+0000+0000
        // +5002+ffff = 0x1ec92; total 0x200af folds to 0x00b1, so the checksum is 0xff4e.
        let mut out = [0u8; 40];
        build_tcp_segment(0x0a00_0001, 0x0a00_0002, &syn(), b"", 64, &mut out).unwrap();
        assert_eq!(&out[36..38], &[0xff, 0x4e]);
    }

    #[test]
    fn rejects_bad_offsets() {
        let mut seg = [0u8; 20];
        seg[12] = 4 << 4;
        assert!(TcpHeader::parse(&seg).is_err());
        seg[12] = 6 << 4;
        assert!(TcpHeader::parse(&seg).is_err());
        seg[12] = 5 << 4;
        assert!(TcpHeader::parse(&seg).is_ok());
        assert!(TcpHeader::parse(&seg[..19]).is_err());
    }
}
