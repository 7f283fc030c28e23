//! The Internet checksum (RFC 1071) used by IPv4, UDP and TCP headers, and its incremental
//! update (RFC 1624) for rewriting a field without summing the whole header again.

/// Adds `data` to a running ones'-complement sum (not yet folded). Chain calls to checksum
/// discontiguous pieces (pseudo-header, header, payload); each piece but the last must have
/// even length.
pub fn sum(data: &[u8], initial: u32) -> u32 {
    // Ones'-complement addition is byte-order independent up to a final byte swap
    // (RFC 1071 §2(B)), so add native-endian 32-bit words into a u64 (no overflow below
    // 16 GiB of input; LLVM vectorises the widening adds) and swap once at the end. This is
    // several times faster than adding big-endian 16-bit words one by one.
    let mut acc = 0u64;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // Zero padding keeps each byte in its 16-bit lane, and an odd last byte is the
        // high byte of a word padded with zero, as RFC 1071 wants.
        let mut tail = [0u8; 4];
        tail[..rest.len()].copy_from_slice(rest);
        acc += u64::from(u32::from_ne_bytes(tail));
    }
    let native = fold64(acc) as u16;
    let be = if cfg!(target_endian = "little") {
        native.swap_bytes()
    } else {
        native
    };
    fold64(u64::from(be) + u64::from(initial))
}

fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// Folds a running sum to 16 bits and inverts it: the value to store in a checksum field.
pub fn finish(sum: u32) -> u16 {
    !(fold64(u64::from(sum)) as u16)
}

/// Ones'-complement sum of `data` folded to 16 bits and inverted (RFC 1071).
pub fn internet_checksum(data: &[u8]) -> u16 {
    finish(sum(data, 0))
}

/// Running sum of the IPv4 pseudo-header used by UDP and TCP checksums (RFC 768, RFC 793).
pub fn pseudo_header_sum(src: u32, dst: u32, protocol: u8, length: u16) -> u32 {
    (src >> 16)
        + (src & 0xffff)
        + (dst >> 16)
        + (dst & 0xffff)
        + u32::from(protocol)
        + u32::from(length)
}

/// New checksum after one 16-bit field changes from `old` to `new` (RFC 1624, eqn. 3:
/// `HC' = ~(~HC + ~m + m')`), without touching the rest of the data.
pub fn adjust16(checksum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    !(fold64(u64::from(s)) as u16)
}

/// [`adjust16`] for a 32-bit field such as an IPv4 address (two 16-bit words).
pub fn adjust32(checksum: u16, old: u32, new: u32) -> u16 {
    let c = adjust16(checksum, (old >> 16) as u16, (new >> 16) as u16);
    adjust16(c, old as u16, new as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ipv4_header() {
        // A header from RFC 1071 examples' style: checksum field zeroed.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&header), 0xb861);
    }

    #[test]
    fn valid_header_sums_to_zero() {
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = internet_checksum(&header);
        header[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(internet_checksum(&header), 0);
    }

    #[test]
    fn rfc1071_example_sum() {
        // RFC 1071 §3 worked example: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data, 0), 0xddf2);
        assert_eq!(internet_checksum(&data), !0xddf2);
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 §4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(adjust16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn adjust_matches_recompute() {
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let mut state = 0x1234_5678u32;
        for _ in 0..10_000 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let old_ttl = u16::from_be_bytes([header[8], header[9]]);
            let old_dst = u32::from_be_bytes([header[16], header[17], header[18], header[19]]);
            let c = u16::from_be_bytes([header[10], header[11]]);
            header[8] = (state >> 24) as u8;
            let new_ttl = u16::from_be_bytes([header[8], header[9]]);
            let c = adjust16(c, old_ttl, new_ttl);
            header[16..20].copy_from_slice(&state.to_be_bytes());
            let c = adjust32(c, old_dst, state);
            header[10..12].copy_from_slice(&c.to_be_bytes());
            assert_eq!(internet_checksum(&header), 0, "{header:02x?}");
        }
    }

    #[test]
    fn matches_word_by_word_definition() {
        fn reference(data: &[u8], initial: u32) -> u32 {
            let mut acc = u64::from(initial);
            for pair in data.chunks(2) {
                let hi = u64::from(pair[0]) << 8;
                acc += hi | pair.get(1).map_or(0, |&b| u64::from(b));
            }
            while acc > 0xffff {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            acc as u32
        }
        let data: Vec<u8> = (0..3001u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..40).chain([1459, 1460, 1461, 3000, 3001]) {
            for initial in [0u32, 1, 0xffff, 0x1_2345] {
                assert_eq!(
                    sum(&data[..len], initial),
                    reference(&data[..len], initial),
                    "len {len}"
                );
            }
        }
        assert_eq!(sum(&[0xff; 64], 0), 0xffff);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(internet_checksum(&[0x01]), internet_checksum(&[0x01, 0x00]));
    }
}
