//! TUN offloads: the virtio-net header of `IFF_VNET_HDR`, segmentation of TSO packets read
//! from a TUN device, completion of partial checksums, and coalescing of received TCP
//! segments into one GSO packet for a TUN write.
//!
//! Why: without offloads the kernel hands a TUN reader one MTU-sized packet per `read` and
//! takes one per `write`, and each crosses the whole TCP stack alone. With TSO enabled on
//! the device, one `read` returns up to 64 KiB of a TCP stream that the engine cuts into
//! MTU-sized segments itself ([`segment_tcpv4`]); on the way in, consecutive segments of
//! one flow are glued back together ([`TcpCoalescer`]) and written once, as a GSO packet
//! the receiving stack treats like a GRO aggregate. Kernel VXLAN gets the same effect from
//! GSO/GRO, which is why it is the baseline to beat.

use super::ipv4::Ipv4Header;
use super::tcp::TcpHeader;
use super::PROTO_TCP;
use crate::checksum::{finish, pseudo_header_sum, sum};
use crate::error::{need, Error, Result};

/// Length of the (legacy) virtio-net header in front of each TUN packet.
pub const VNET_HDR_LEN: usize = 10;
/// `flags`: the checksum at `csum_start + csum_offset` must be completed.
pub const VNET_F_NEEDS_CSUM: u8 = 1;
/// `gso_type`: not a GSO packet.
pub const VNET_GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4 segmentation.
pub const VNET_GSO_TCPV4: u8 = 1;
/// `gso_type` bit: the packet carries ECN CWR (masked off before matching the type).
pub const VNET_GSO_ECN: u8 = 0x80;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_URG: u8 = 0x20;
const TCP_CWR: u8 = 0x80;
const MAX_IP_LEN: usize = 65_535;

/// The virtio-net header (fields in host byte order, as TUN uses them on this host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// [`VNET_F_NEEDS_CSUM`] or 0.
    pub flags: u8,
    /// [`VNET_GSO_NONE`], [`VNET_GSO_TCPV4`], ... possibly with [`VNET_GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers (IP + TCP) of a GSO packet.
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO packet (the MSS).
    pub gso_size: u16,
    /// Where checksumming starts (the L4 header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Parses the header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        need("virtio-net header", buf, VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_ne_bytes([buf[i], buf[i + 1]]);
        Ok(VnetHdr {
            flags: buf[0],
            gso_type: buf[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// The header as the 10 bytes TUN expects.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

/// Completes a partial checksum: the field at `start + offset` holds the pseudo-header sum
/// (as the kernel leaves it for `CHECKSUM_PARTIAL`); summing from `start` to the end and
/// inverting gives the final value.
pub fn complete_checksum(packet: &mut [u8], start: usize, offset: usize) -> Result<()> {
    let field = start.checked_add(offset).ok_or(Error::Malformed {
        what: "virtio-net header",
        reason: "checksum offset overflows",
    })?;
    need("partial checksum", packet, field + 2)?;
    let c = finish(sum(&packet[start..], 0));
    packet[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Headers of a TCP/IPv4 packet that segmentation and coalescing need.
struct TcpIp {
    ip: Ipv4Header,
    tcp: TcpHeader,
    /// IP + TCP header length.
    hdr_len: usize,
    /// Payload range end (the IP total length).
    end: usize,
}

fn tcp_ip(packet: &[u8]) -> Result<TcpIp> {
    let ip = Ipv4Header::parse(packet)?;
    if ip.protocol != PROTO_TCP || ip.is_fragment() {
        return Err(Error::Unsupported {
            what: "offload",
            reason: "not an unfragmented TCP/IPv4 packet",
        });
    }
    let end = usize::from(ip.total_len);
    let tcp = TcpHeader::parse(&packet[ip.header_len()..end])?;
    Ok(TcpIp {
        ip,
        tcp,
        hdr_len: ip.header_len() + tcp.header_len(),
        end,
    })
}

/// Number of segments [`segment_tcpv4`] makes of `packet` with `mss` payload bytes each.
pub fn segment_count(packet: &[u8], mss: usize) -> Result<usize> {
    if mss == 0 {
        return Err(Error::Malformed {
            what: "virtio-net header",
            reason: "GSO size 0",
        });
    }
    let h = tcp_ip(packet)?;
    Ok((h.end - h.hdr_len).div_ceil(mss).max(1))
}

/// Writes segment `k` of the TSO packet `packet` into `out` and returns its length: the
/// headers copied, payload bytes `k·mss..`, then IP total length, identification (+k) and
/// checksum, TCP sequence (+k·mss), flags (FIN/PSH only on the last segment, CWR only on
/// the first) and a full TCP checksum.
pub fn segment_tcpv4(packet: &[u8], mss: usize, k: usize, out: &mut [u8]) -> Result<usize> {
    let count = segment_count(packet, mss)?;
    let h = tcp_ip(packet)?;
    if k >= count {
        return Err(Error::InvalidArgument(format!("segment {k} of {count}")));
    }
    let payload = &packet[h.hdr_len..h.end];
    let chunk = &payload[(k * mss).min(payload.len())..((k + 1) * mss).min(payload.len())];
    let total = h.hdr_len + chunk.len();
    if out.len() < total {
        return Err(Error::BufferTooSmall {
            need: total,
            have: out.len(),
        });
    }
    out[..h.hdr_len].copy_from_slice(&packet[..h.hdr_len]);
    out[h.hdr_len..total].copy_from_slice(chunk);
    let ihl = h.ip.header_len();
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    out[4..6].copy_from_slice(&h.ip.ident.wrapping_add(k as u16).to_be_bytes());
    let t = &mut out[ihl..total];
    let seq = h.tcp.seq.wrapping_add((k * mss) as u32);
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    let mut flags = h.tcp.flags;
    if k + 1 < count {
        flags &= !(TCP_FIN | TCP_PSH);
    }
    if k > 0 {
        flags &= !TCP_CWR;
    }
    t[13] = flags;
    write_checksums(&mut out[..total], ihl, h.ip.src, h.ip.dst);
    Ok(total)
}

/// Fills in both checksums of a TCP/IPv4 packet of any length, e.g. a TSO packet that is
/// sent whole instead of segmented: the IPv4 header checksum and the full TCP checksum
/// (whatever the TCP checksum field held, such as a partial sum, is replaced).
pub fn finish_tcpv4(packet: &mut [u8]) -> Result<()> {
    let h = tcp_ip(packet)?;
    write_checksums(&mut packet[..h.end], h.ip.header_len(), h.ip.src, h.ip.dst);
    Ok(())
}

/// Writes the IPv4 header checksum and the full TCP checksum of `packet` (exactly one
/// TCP/IPv4 packet with an `ihl`-byte IP header).
fn write_checksums(packet: &mut [u8], ihl: usize, src: u32, dst: u32) {
    packet[10..12].copy_from_slice(&[0, 0]);
    let ipc = finish(sum(&packet[..ihl], 0));
    packet[10..12].copy_from_slice(&ipc.to_be_bytes());
    let t = &mut packet[ihl..];
    t[16..18].copy_from_slice(&[0, 0]);
    let ps = pseudo_header_sum(src, dst, PROTO_TCP, t.len() as u16);
    let c = finish(sum(t, ps));
    t[16..18].copy_from_slice(&c.to_be_bytes());
}

/// The virtio-net header that hands `packet`, a TCP/IPv4 packet with complete checksums
/// carrying more than one `mss`-sized segment, to TUN as one GSO packet; the kernel verifies
/// the checksum once and cuts the packet at `mss` only if it must (an all-zero header when
/// the payload fits one segment). This is how a reassembled outer-fragmented IPIP packet
/// (see [`crate::packet::ipip`]) goes back into the stack.
pub fn gso_tcpv4_header(packet: &[u8], mss: usize) -> Result<VnetHdr> {
    let h = tcp_ip(packet)?;
    if mss == 0 || h.end - h.hdr_len <= mss {
        return Ok(VnetHdr::default());
    }
    let ecn = if h.tcp.flags & TCP_CWR != 0 {
        VNET_GSO_ECN
    } else {
        0
    };
    Ok(VnetHdr {
        flags: 0,
        gso_type: VNET_GSO_TCPV4 | ecn,
        hdr_len: h.hdr_len as u16,
        gso_size: mss as u16, // below the payload length, so it fits
        csum_start: 0,
        csum_offset: 0,
    })
}

/// The virtio-net header for `packet`, a TCP/IPv4 packet that the kernel's GRO merged from
/// segments of `mss` payload bytes (what a raw IPIP socket receives behind an underlay with
/// GRO): such a packet carries only the pseudo-header sum in its TCP checksum field, so the
/// header asks the kernel to finish the checksum (`NEEDS_CSUM`), which it treats as
/// verified. The pseudo-header sum is written here, so the result does not depend on what
/// the field held. A GSO header when the payload exceeds `mss`.
pub fn gro_tcpv4_header(packet: &mut [u8], mss: usize) -> Result<VnetHdr> {
    let h = tcp_ip(packet)?;
    let ihl = h.ip.header_len();
    let tcp_len = (h.end - ihl) as u16; // below the u16 total length
    let ps = !finish(pseudo_header_sum(h.ip.src, h.ip.dst, PROTO_TCP, tcp_len));
    packet[ihl + 16..ihl + 18].copy_from_slice(&ps.to_be_bytes());
    let mut hdr = gso_tcpv4_header(packet, mss)?;
    hdr.flags = VNET_F_NEEDS_CSUM;
    hdr.csum_start = ihl as u16;
    hdr.csum_offset = 16;
    Ok(hdr)
}

/// Glues consecutive TCP/IPv4 segments of one flow into one GSO packet.
///
/// Segments join while they continue the sequence exactly, carry the same addresses,
/// ports, ACK, window and TCP options, the previous ones were all full-sized (the MSS is
/// the first payload length) and no PSH has been seen; SYN/FIN/RST/URG never join.
/// [`TcpCoalescer::take`] returns the virtio-net header and packet to write.
#[derive(Debug)]
pub struct TcpCoalescer {
    buf: Vec<u8>,
    count: usize,
    hdr_len: usize,
    mss: usize,
    last_len: usize,
    next_seq: u32,
    pushed: bool,
}

impl Default for TcpCoalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl TcpCoalescer {
    /// An empty coalescer with room for one maximal IP packet.
    pub fn new() -> Self {
        TcpCoalescer {
            buf: Vec::with_capacity(MAX_IP_LEN),
            count: 0,
            hdr_len: 0,
            mss: 0,
            last_len: 0,
            next_seq: 0,
            pushed: false,
        }
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn eligible(packet: &[u8]) -> Option<TcpIp> {
        let h = tcp_ip(packet).ok()?;
        let bad = TCP_SYN | TCP_FIN | TCP_RST | TCP_URG;
        (h.tcp.flags & bad == 0 && h.end > h.hdr_len).then_some(h)
    }

    /// Starts a new aggregate with `packet` (the coalescer must be empty). Returns false,
    /// holding nothing, if the packet cannot be coalesced; write it on its own then.
    pub fn start(&mut self, packet: &[u8]) -> bool {
        debug_assert!(self.is_empty());
        let Some(h) = Self::eligible(packet) else {
            return false;
        };
        self.buf.clear();
        self.buf.extend_from_slice(&packet[..h.end]);
        self.count = 1;
        self.hdr_len = h.hdr_len;
        self.mss = h.end - h.hdr_len;
        self.last_len = self.mss;
        self.next_seq = h.tcp.seq.wrapping_add(self.mss as u32);
        self.pushed = h.tcp.flags & TCP_PSH != 0;
        true
    }

    /// Appends `packet` if it continues the held aggregate; false otherwise (then
    /// [`TcpCoalescer::take`] and [`TcpCoalescer::start`] it).
    pub fn append(&mut self, packet: &[u8]) -> bool {
        if self.count == 0 || self.pushed || self.last_len != self.mss {
            return false;
        }
        let Some(h) = Self::eligible(packet) else {
            return false;
        };
        let len = h.end - h.hdr_len;
        let ihl = h.ip.header_len();
        let held = &self.buf[..self.hdr_len];
        let same = h.hdr_len == self.hdr_len
            && len <= self.mss
            && self.buf.len() + len <= MAX_IP_LEN
            && h.tcp.seq == self.next_seq
            // addresses; ports; ack; flags, window; options
            && packet[12..20] == held[12..20]
            && packet[ihl..ihl + 4] == held[ihl..ihl + 4]
            && packet[ihl + 8..ihl + 12] == held[ihl + 8..ihl + 12]
            && (packet[ihl + 13] & !TCP_PSH) == (held[ihl + 13] & !TCP_PSH)
            && packet[ihl + 14..ihl + 16] == held[ihl + 14..ihl + 16]
            && packet[ihl + 20..h.hdr_len] == held[ihl + 20..self.hdr_len];
        if !same {
            return false;
        }
        self.buf.extend_from_slice(&packet[h.hdr_len..h.end]);
        self.count += 1;
        self.last_len = len;
        self.next_seq = self.next_seq.wrapping_add(len as u32);
        if h.tcp.flags & TCP_PSH != 0 {
            self.pushed = true;
            let ihl = usize::from(self.buf[0] & 0x0f) * 4;
            self.buf[ihl + 13] |= TCP_PSH;
        }
        true
    }

    /// Hands out the aggregate (header + packet) and empties the coalescer. A single
    /// segment comes back unchanged with an all-zero header.
    pub fn take(&mut self) -> Option<(VnetHdr, &[u8])> {
        match self.count {
            0 => None,
            1 => {
                self.count = 0;
                Some((VnetHdr::default(), &self.buf[..]))
            }
            _ => {
                self.count = 0;
                let b = &mut self.buf[..];
                let ihl = usize::from(b[0] & 0x0f) * 4;
                let total = b.len();
                b[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                b[10..12].copy_from_slice(&[0, 0]);
                let ipc = finish(sum(&b[..ihl], 0));
                b[10..12].copy_from_slice(&ipc.to_be_bytes());
                // CHECKSUM_PARTIAL convention: the field holds the folded, non-inverted
                // pseudo-header sum over the aggregate's TCP length.
                let src = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
                let dst = u32::from_be_bytes([b[16], b[17], b[18], b[19]]);
                let ps = pseudo_header_sum(src, dst, PROTO_TCP, (total - ihl) as u16);
                b[ihl + 16..ihl + 18].copy_from_slice(&(!finish(ps)).to_be_bytes());
                let hdr = VnetHdr {
                    flags: VNET_F_NEEDS_CSUM,
                    gso_type: VNET_GSO_TCPV4,
                    hdr_len: self.hdr_len as u16,
                    gso_size: self.mss as u16,
                    csum_start: ihl as u16,
                    csum_offset: 16,
                };
                Some((hdr, &self.buf[..]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::internet_checksum;
    use crate::packet::tcp::{build_tcp_segment, parse_tcp_segment};

    fn tcp(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let h = TcpHeader {
            src_port: 40000,
            dst_port: 5201,
            seq,
            ack: 99,
            data_offset: 5,
            flags,
            window: 500,
            checksum: 0,
            urgent: 0,
        };
        let mut out = vec![0u8; 40 + payload.len()];
        let n = build_tcp_segment(0x0a00_0001, 0x0a00_0002, &h, payload, 64, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn vnet_header_round_trip() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 1,
            hdr_len: 40,
            gso_size: 1400,
            csum_start: 20,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()).unwrap(), h);
        assert!(VnetHdr::parse(&[0; 9]).is_err());
    }

    #[test]
    fn gro_header_lets_the_kernel_finish_the_checksum() {
        let payload: Vec<u8> = (0..4000u32).map(|i| (i * 13) as u8).collect();
        let full = tcp(7, 0x18, &payload); // built with a complete checksum
        for garbage in [[0u8, 0], [0xde, 0xad]] {
            // Whatever the field held (GRO leaves the pseudo-header sum there) ...
            let mut merged = full.clone();
            merged[36..38].copy_from_slice(&garbage);
            let h = gro_tcpv4_header(&mut merged, 1400).unwrap();
            assert_eq!(h.flags, VNET_F_NEEDS_CSUM);
            assert_eq!(
                (h.gso_type, h.gso_size, h.hdr_len),
                (VNET_GSO_TCPV4, 1400, 40)
            );
            assert_eq!((h.csum_start, h.csum_offset), (20, 16));
            // ... finishing as the kernel does gives the complete checksum.
            let (start, offset) = (usize::from(h.csum_start), usize::from(h.csum_offset));
            complete_checksum(&mut merged, start, offset).unwrap();
            assert_eq!(merged, full);
        }
        let mut one = tcp(7, 0x10, &payload[..1000]);
        assert_eq!(
            gro_tcpv4_header(&mut one, 1400).unwrap().gso_type,
            VNET_GSO_NONE
        );
    }

    #[test]
    fn segmentation_reassembles_to_the_original_stream() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let big = tcp(1000, 0x18 | TCP_CWR, &payload); // PSH|ACK|CWR
        assert_eq!(segment_count(&big, 1400).unwrap(), 4);
        let mut stream = Vec::new();
        for k in 0..4 {
            let mut out = [0u8; 1500];
            let n = segment_tcpv4(&big, 1400, k, &mut out).unwrap();
            let s = parse_tcp_segment(&out[..n]).unwrap(); // both checksums verify
            assert_eq!(s.tcp.seq, 1000 + 1400 * k as u32);
            assert_eq!(s.tcp.flags & TCP_PSH != 0, k == 3);
            assert_eq!(s.tcp.flags & TCP_CWR != 0, k == 0);
            assert_eq!(s.ip.ident, k as u16);
            stream.extend_from_slice(&out[s.payload_offset..n]);
        }
        assert_eq!(stream, payload);
        assert!(segment_tcpv4(&big, 1400, 4, &mut [0u8; 1500]).is_err());
        assert!(segment_tcpv4(&big, 1400, 0, &mut [0u8; 100]).is_err());
        assert!(segment_count(&big, 0).is_err());
        assert_eq!(segment_count(&tcp(1, 0x10, b""), 1400).unwrap(), 1);
    }

    #[test]
    fn complete_partial_checksum() {
        let mut p = tcp(5, 0x10, b"hello world");
        let ps = pseudo_header_sum(0x0a00_0001, 0x0a00_0002, PROTO_TCP, (p.len() - 20) as u16);
        p[36..38].copy_from_slice(&(!finish(ps)).to_be_bytes());
        complete_checksum(&mut p, 20, 16).unwrap();
        assert!(parse_tcp_segment(&p).is_ok());
        assert!(complete_checksum(&mut p, 40, 16).is_err());
        assert!(complete_checksum(&mut p, usize::MAX, 16).is_err());
    }

    #[test]
    fn coalesces_a_segmented_stream_back() {
        let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        let big = tcp(7, 0x18, &payload);
        let mut c = TcpCoalescer::new();
        for k in 0..segment_count(&big, 1000).unwrap() {
            let mut out = [0u8; 1100];
            let n = segment_tcpv4(&big, 1000, k, &mut out).unwrap();
            if k == 0 {
                assert!(c.start(&out[..n]));
            } else {
                assert!(c.append(&out[..n]), "segment {k}");
            }
        }
        let (hdr, pkt) = c.take().unwrap();
        assert_eq!(
            (hdr.gso_type, hdr.gso_size, hdr.hdr_len),
            (VNET_GSO_TCPV4, 1000, 40)
        );
        assert_eq!(&pkt[40..], &payload[..]);
        assert_eq!(internet_checksum(&pkt[..20]), 0);
        let h = tcp_ip(pkt).unwrap();
        assert_eq!((h.tcp.seq, h.tcp.flags & TCP_PSH), (7, TCP_PSH));
        // Completing the partial checksum yields a valid packet.
        let mut full = pkt.to_vec();
        complete_checksum(&mut full, 20, 16).unwrap();
        assert!(parse_tcp_segment(&full).is_ok());
        assert!(c.is_empty());
    }

    #[test]
    fn whole_tso_packet_gets_both_checksums() {
        let payload: Vec<u8> = (0..60_000u32).map(|i| (i * 13) as u8).collect();
        let mut big = tcp(77, 0x18, &payload);
        big[10] ^= 0xff; // a stale IP checksum
        let ps = pseudo_header_sum(0x0a00_0001, 0x0a00_0002, PROTO_TCP, (big.len() - 20) as u16);
        big[36..38].copy_from_slice(&(!finish(ps)).to_be_bytes()); // partial, as TUN has it
        finish_tcpv4(&mut big).unwrap();
        let s = parse_tcp_segment(&big).unwrap(); // both checksums verify
        assert_eq!((s.tcp.seq, s.payload_len), (77, 60_000));
        let mut udp = [0u8; 40];
        let n = crate::packet::udp::build_udp_datagram(1, 2, 3, 4, b"x", 64, &mut udp).unwrap();
        assert!(finish_tcpv4(&mut udp[..n]).is_err());
    }

    #[test]
    fn gso_header_of_an_aggregate() {
        let payload = vec![7u8; 4000];
        let h = gso_tcpv4_header(&tcp(1, 0x10, &payload), 1448).unwrap();
        assert_eq!(
            h,
            VnetHdr {
                flags: 0, // the checksum is complete: the kernel verifies it
                gso_type: VNET_GSO_TCPV4,
                hdr_len: 40,
                gso_size: 1448,
                csum_start: 0,
                csum_offset: 0,
            }
        );
        let cwr = gso_tcpv4_header(&tcp(1, 0x10 | TCP_CWR, &payload), 1448).unwrap();
        assert_eq!(cwr.gso_type, VNET_GSO_TCPV4 | VNET_GSO_ECN);
        // One segment or less is a plain packet.
        let one = gso_tcpv4_header(&tcp(1, 0x10, &payload[..1448]), 1448).unwrap();
        assert_eq!(one, VnetHdr::default());
        assert!(gso_tcpv4_header(&[0x45; 30], 1448).is_err());
        let huge = gso_tcpv4_header(&tcp(1, 0x10, &payload), 70_000).unwrap();
        assert_eq!(huge, VnetHdr::default());
    }

    #[test]
    fn refuses_what_must_not_merge() {
        let mut c = TcpCoalescer::new();
        assert!(!c.start(&tcp(1, 0x02, b"")), "SYN");
        assert!(!c.start(&tcp(1, 0x10, b"")), "no payload");
        assert!(!c.append(&tcp(1, 0x10, b"x")), "nothing held");
        assert!(c.take().is_none());
        assert!(c.start(&tcp(1, 0x10, b"abcd")));
        assert!(!c.append(&tcp(9, 0x10, b"efgh")), "gap");
        assert!(!c.append(&tcp(5, 0x11, b"efgh")), "FIN");
        assert!(!c.append(&tcp(5, 0x10, b"efghi")), "longer than MSS");
        assert!(c.append(&tcp(5, 0x10, b"ef")));
        assert!(!c.append(&tcp(7, 0x10, b"gh")), "after a short segment");
        let (hdr, pkt) = c.take().unwrap();
        assert_eq!(hdr.gso_size, 4);
        assert_eq!(&pkt[40..], b"abcdef");
        assert!(c.start(&tcp(1, 0x18, b"abcd")));
        assert!(!c.append(&tcp(5, 0x10, b"efgh")), "after PSH");
        let (hdr, pkt) = c.take().unwrap();
        assert_eq!(hdr, VnetHdr::default());
        assert_eq!(pkt, &tcp(1, 0x18, b"abcd")[..]);
        let mut udp = [0u8; 40];
        let n = crate::packet::udp::build_udp_datagram(1, 2, 3, 4, b"x", 64, &mut udp).unwrap();
        assert!(!c.start(&udp[..n]));
    }
}
