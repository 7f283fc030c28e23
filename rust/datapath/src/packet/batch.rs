//! Batch encapsulation and decapsulation over fixed-stride packet buffers.
//!
//! A batch is one contiguous buffer holding packet `i` at `i * stride` plus an array of
//! lengths, the layout `recvmmsg`/`sendmmsg` use and the one Python hands over as two
//! buffers. A bad packet does not fail the batch: its output length is set to 0 and it is
//! counted as dropped, as a datapath would drop it. Only an inconsistent layout (buffers
//! too short for the stride and count) is an error.

use super::ipip::{ipip_decap, IpipEncap, IPIP_OVERHEAD};
use super::vxlan::{vxlan_decap, VxlanEncap, VXLAN_OVERHEAD};
use crate::error::{Error, Result};

/// Outcome of a batch call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Packets processed successfully.
    pub ok: usize,
    /// Packets rejected (output length 0).
    pub dropped: usize,
}

/// An encapsulation usable in [`encap_batch`].
pub trait Encapsulation {
    /// Bytes the encapsulation adds in front of a packet.
    const OVERHEAD: usize;
    /// Encapsulates `inner` into `out`; returns the output length.
    fn encap_into(&self, inner: &[u8], ident: u16, out: &mut [u8]) -> Result<usize>;
}

impl Encapsulation for VxlanEncap {
    const OVERHEAD: usize = VXLAN_OVERHEAD;
    fn encap_into(&self, inner: &[u8], ident: u16, out: &mut [u8]) -> Result<usize> {
        self.encap(inner, ident, out)
    }
}

impl Encapsulation for IpipEncap {
    const OVERHEAD: usize = IPIP_OVERHEAD;
    fn encap_into(&self, inner: &[u8], ident: u16, out: &mut [u8]) -> Result<usize> {
        self.encap(inner, ident, out)
    }
}

/// Which tunnel format [`decap_batch`] parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    /// VXLAN; the per-packet tag is the VNI.
    Vxlan,
    /// IPIP; the per-packet tag is the outer source address.
    Ipip,
}

fn check_layout(what: &str, buf_len: usize, stride: usize, count: usize) -> Result<()> {
    let need = stride.checked_mul(count).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{what}: stride {stride} × {count} packets overflows"
        ))
    })?;
    if buf_len < need {
        return Err(Error::BufferTooSmall {
            need,
            have: buf_len,
        });
    }
    Ok(())
}

fn check_outputs(count: usize, lens: &[&[u32]]) -> Result<()> {
    for l in lens {
        if l.len() < count {
            return Err(Error::InvalidArgument(format!(
                "output array holds {} entries for {count} packets",
                l.len()
            )));
        }
    }
    Ok(())
}

/// Encapsulates `src_lens.len()` packets from `src` (stride `src_stride`) into `dst`
/// (stride `dst_stride`), writing output lengths to `dst_lens`. IPv4 identifications count
/// up from `first_ident`.
#[allow(clippy::too_many_arguments)]
pub fn encap_batch<E: Encapsulation>(
    enc: &E,
    src: &[u8],
    src_stride: usize,
    src_lens: &[u32],
    dst: &mut [u8],
    dst_stride: usize,
    dst_lens: &mut [u32],
    first_ident: u16,
) -> Result<BatchStats> {
    let count = src_lens.len();
    check_layout("source", src.len(), src_stride, count)?;
    check_layout("destination", dst.len(), dst_stride, count)?;
    check_outputs(count, &[dst_lens])?;
    let mut stats = BatchStats::default();
    let mut ident = first_ident;
    for (i, (&len, out_len)) in src_lens.iter().zip(dst_lens.iter_mut()).enumerate() {
        let len = len as usize;
        let r = if len > src_stride {
            Err(Error::InvalidArgument(
                "packet longer than its stride".into(),
            ))
        } else {
            let inner = &src[i * src_stride..i * src_stride + len];
            let out = &mut dst[i * dst_stride..(i + 1) * dst_stride];
            enc.encap_into(inner, ident, out)
        };
        match r {
            Ok(n) => {
                *out_len = n as u32;
                stats.ok += 1;
                ident = ident.wrapping_add(1);
            }
            Err(_) => {
                *out_len = 0;
                stats.dropped += 1;
            }
        }
    }
    Ok(stats)
}

/// Copies `src_lens.len()` packets from `src` to `dst` (re-striding them), each at offset
/// `dst_offset` in its slot: the same memory traffic as [`encap_batch`] without the headers,
/// which makes it the baseline encapsulation is measured against.
pub fn copy_batch(
    src: &[u8],
    src_stride: usize,
    src_lens: &[u32],
    dst: &mut [u8],
    dst_stride: usize,
    dst_lens: &mut [u32],
    dst_offset: usize,
) -> Result<BatchStats> {
    let count = src_lens.len();
    check_layout("source", src.len(), src_stride, count)?;
    check_layout("destination", dst.len(), dst_stride, count)?;
    check_outputs(count, &[dst_lens])?;
    let mut stats = BatchStats::default();
    for (i, (&len, out_len)) in src_lens.iter().zip(dst_lens.iter_mut()).enumerate() {
        let len = len as usize;
        if len > src_stride || dst_offset + len > dst_stride {
            *out_len = 0;
            stats.dropped += 1;
            continue;
        }
        let d = i * dst_stride + dst_offset;
        dst[d..d + len].copy_from_slice(&src[i * src_stride..i * src_stride + len]);
        *out_len = len as u32;
        stats.ok += 1;
    }
    Ok(stats)
}

/// Decapsulates `src_lens.len()` packets in place: for packet `i`, writes where its inner
/// packet starts (relative to the packet) to `offsets[i]`, its length to `inner_lens[i]`
/// (0 when rejected) and the tag (VNI or outer source) to `tags[i]`. Nothing is copied.
pub fn decap_batch(
    kind: TunnelKind,
    src: &[u8],
    src_stride: usize,
    src_lens: &[u32],
    offsets: &mut [u32],
    inner_lens: &mut [u32],
    tags: &mut [u32],
) -> Result<BatchStats> {
    let count = src_lens.len();
    check_layout("source", src.len(), src_stride, count)?;
    check_outputs(count, &[offsets, inner_lens, tags])?;
    let mut stats = BatchStats::default();
    for (i, &len) in src_lens.iter().enumerate() {
        let len = len as usize;
        let r = if len > src_stride {
            Err(Error::InvalidArgument(
                "packet longer than its stride".into(),
            ))
        } else {
            let p = &src[i * src_stride..i * src_stride + len];
            match kind {
                TunnelKind::Vxlan => vxlan_decap(p).map(|d| (d.inner_offset, d.inner_len, d.vni)),
                TunnelKind::Ipip => {
                    ipip_decap(p).map(|d| (d.inner_offset, d.inner_len, d.outer.src))
                }
            }
        };
        match r {
            Ok((off, n, tag)) => {
                offsets[i] = off as u32;
                inner_lens[i] = n as u32;
                tags[i] = tag;
                stats.ok += 1;
            }
            Err(_) => {
                offsets[i] = 0;
                inner_lens[i] = 0;
                tags[i] = 0;
                stats.dropped += 1;
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::udp::build_udp_datagram;
    use crate::packet::vxlan::VXLAN_PORT;

    const STRIDE: usize = 256;

    fn inner_batch(n: usize, eth: bool) -> (Vec<u8>, Vec<u32>) {
        let mut buf = vec![0u8; n * STRIDE];
        let mut lens = vec![0u32; n];
        for i in 0..n {
            let slot = &mut buf[i * STRIDE..(i + 1) * STRIDE];
            let off = if eth { 14 } else { 0 };
            if eth {
                slot[12..14].copy_from_slice(&[0x08, 0x00]);
            }
            let m = build_udp_datagram(
                1,
                2,
                i as u16,
                80,
                &vec![i as u8; i * 3],
                64,
                &mut slot[off..],
            )
            .unwrap();
            lens[i] = (off + m) as u32;
        }
        (buf, lens)
    }

    #[test]
    fn vxlan_batch_round_trip() {
        let (src, mut lens) = inner_batch(40, true);
        lens[5] = 3; // too short for Ethernet: dropped
        let e = VxlanEncap::new(7, 8, 42, VXLAN_PORT, 64).unwrap();
        let mut dst = vec![0u8; 40 * STRIDE];
        let mut dst_lens = vec![0u32; 40];
        let s = encap_batch(
            &e,
            &src,
            STRIDE,
            &lens,
            &mut dst,
            STRIDE,
            &mut dst_lens,
            100,
        )
        .unwrap();
        assert_eq!(s, BatchStats { ok: 39, dropped: 1 });
        assert_eq!(dst_lens[5], 0);
        let (mut off, mut il, mut tag) = (vec![0u32; 40], vec![0u32; 40], vec![0u32; 40]);
        let s = decap_batch(
            TunnelKind::Vxlan,
            &dst,
            STRIDE,
            &dst_lens,
            &mut off,
            &mut il,
            &mut tag,
        )
        .unwrap();
        assert_eq!(s, BatchStats { ok: 39, dropped: 1 });
        for i in (0..40).filter(|&i| i != 5) {
            let o = i * STRIDE + off[i] as usize;
            assert_eq!(
                &dst[o..o + il[i] as usize],
                &src[i * STRIDE..i * STRIDE + lens[i] as usize]
            );
            assert_eq!(tag[i], 42);
        }
    }

    #[test]
    fn ipip_batch_round_trip() {
        let (src, lens) = inner_batch(10, false);
        let e = IpipEncap {
            local: 0x0a00_0001,
            remote: 2,
            ttl: 64,
        };
        let mut dst = vec![0u8; 10 * STRIDE];
        let mut dst_lens = vec![0u32; 10];
        encap_batch(&e, &src, STRIDE, &lens, &mut dst, STRIDE, &mut dst_lens, 0).unwrap();
        let (mut off, mut il, mut tag) = (vec![0u32; 10], vec![0u32; 10], vec![0u32; 10]);
        let s = decap_batch(
            TunnelKind::Ipip,
            &dst,
            STRIDE,
            &dst_lens,
            &mut off,
            &mut il,
            &mut tag,
        )
        .unwrap();
        assert_eq!(s.ok, 10);
        assert!(tag.iter().all(|&t| t == 0x0a00_0001));
        assert!(il.iter().zip(&lens).all(|(a, b)| a == b));
    }

    #[test]
    fn copy_batch_copies_and_drops() {
        let (src, lens) = inner_batch(4, false);
        let mut dst = vec![0u8; 4 * STRIDE];
        let mut dl = vec![0u32; 4];
        let s = copy_batch(&src, STRIDE, &lens, &mut dst, STRIDE, &mut dl, 36).unwrap();
        assert_eq!(s.ok, 4);
        for i in 0..4 {
            let n = lens[i] as usize;
            assert_eq!(
                &dst[i * STRIDE + 36..i * STRIDE + 36 + n],
                &src[i * STRIDE..i * STRIDE + n]
            );
        }
        let s = copy_batch(&src, STRIDE, &lens, &mut dst, STRIDE, &mut dl, STRIDE).unwrap();
        assert_eq!(s.dropped, 4);
    }

    #[test]
    fn layout_errors() {
        let e = IpipEncap {
            local: 1,
            remote: 2,
            ttl: 64,
        };
        let mut dst = vec![0u8; 100];
        let mut dl = vec![0u32; 1];
        assert!(encap_batch(&e, &[0u8; 10], 20, &[5], &mut dst, 100, &mut dl, 0).is_err());
        assert!(encap_batch(&e, &[0u8; 20], 20, &[5], &mut dst, 200, &mut dl, 0).is_err());
        assert!(encap_batch(&e, &[0u8; 40], 20, &[5, 5], &mut dst, 50, &mut dl, 0).is_err());
        assert!(encap_batch(
            &e,
            &[0u8; 20],
            usize::MAX,
            &[5, 5],
            &mut dst,
            50,
            &mut [0; 2],
            0
        )
        .is_err());
        // Length beyond the stride: dropped, not an error.
        let s = encap_batch(&e, &[0u8; 20], 20, &[21], &mut dst, 100, &mut dl, 0).unwrap();
        assert_eq!(s.dropped, 1);
    }
}
