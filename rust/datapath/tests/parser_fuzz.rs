//! Property tests standing in for a fuzzer: every parser and encapsulator must return an
//! error rather than panic on any input, and what they accept must lie inside the input.

use kubetrio_datapath::checksum::{adjust16, internet_checksum};
use kubetrio_datapath::packet::batch::{decap_batch, encap_batch, TunnelKind};
use kubetrio_datapath::packet::ipip::{ipip_decap, IpipEncap};
use kubetrio_datapath::packet::tcp::{parse_tcp_segment, TcpHeader};
use kubetrio_datapath::packet::udp::{build_udp_datagram, parse_udp_datagram, UdpHeader};
use kubetrio_datapath::packet::vxlan::{vxlan_decap, VxlanEncap, VXLAN_PORT};
use kubetrio_datapath::packet::{ethernet_flow_hash, ipv4_flow_hash, Ipv4Header};
use proptest::prelude::*;

fn parse_everything(data: &[u8]) {
    if let Ok(h) = Ipv4Header::parse(data) {
        assert!(usize::from(h.total_len) <= data.len());
        assert!(h.header_len() <= usize::from(h.total_len));
    }
    let _ = Ipv4Header::parse_checked(data);
    let _ = UdpHeader::parse(data);
    let _ = TcpHeader::parse(data);
    if let Ok(d) = parse_udp_datagram(data) {
        assert!(d.payload_offset + d.payload_len <= data.len());
    }
    if let Ok(s) = parse_tcp_segment(data) {
        assert!(s.payload_offset + s.payload_len <= data.len());
    }
    if let Ok(v) = vxlan_decap(data) {
        assert!(v.inner_offset + v.inner_len <= data.len());
    }
    if let Ok(p) = ipip_decap(data) {
        assert!(p.inner_offset + p.inner_len <= data.len());
    }
    let _ = ipv4_flow_hash(data, 1);
    let _ = ethernet_flow_hash(data, 1);
}

/// A valid VXLAN packet around a UDP datagram, for mutation.
fn vxlan_packet(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 28 + payload.len()];
    frame[12] = 0x08;
    build_udp_datagram(1, 2, 3, 4, payload, 64, &mut frame[14..]).unwrap();
    let e = VxlanEncap::new(5, 6, 7, VXLAN_PORT, 64).unwrap();
    let mut out = vec![0u8; frame.len() + 36];
    let n = e.encap(&frame, 0, &mut out).unwrap();
    out.truncate(n);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        parse_everything(&data);
    }

    #[test]
    fn ipv4_shaped_bytes_never_panic(
        mut data in proptest::collection::vec(any::<u8>(), 20..120),
        ihl in 0u8..16,
        proto in prop_oneof![Just(4u8), Just(6u8), Just(17u8), any::<u8>()],
    ) {
        // Bias towards inputs that get past the first checks of each parser.
        data[0] = 0x40 | ihl;
        data[9] = proto;
        let len = data.len() as u16;
        data[2..4].copy_from_slice(&len.to_be_bytes());
        data[6] &= 0x40;
        data[7] = 0;
        data[10] = 0;
        data[11] = 0;
        let hl = (usize::from(ihl) * 4).min(data.len());
        let c = internet_checksum(&data[..hl]);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        parse_everything(&data);
    }

    #[test]
    fn mutated_vxlan_never_panics(
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut p = vxlan_packet(&payload);
        for (i, b) in flips {
            let n = p.len();
            p[i % n] ^= b;
        }
        let keep = cut % (p.len() + 1);
        parse_everything(&p[..keep]);
        parse_everything(&p);
    }

    #[test]
    fn vxlan_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..1400), vni in 0u32..(1 << 24)) {
        let mut frame = vec![0u8; 14 + 28 + payload.len()];
        frame[12] = 0x08;
        build_udp_datagram(0x0a00_0001, 0x0a00_0002, 1, 2, &payload, 64, &mut frame[14..]).unwrap();
        let e = VxlanEncap::new(9, 10, vni, VXLAN_PORT, 64).unwrap();
        let mut out = vec![0u8; frame.len() + 36];
        let n = e.encap(&frame, 0, &mut out).unwrap();
        let d = vxlan_decap(&out[..n]).unwrap();
        prop_assert_eq!(d.vni, vni);
        prop_assert_eq!(&out[d.inner_offset..d.inner_offset + d.inner_len], &frame[..]);
        let inner = parse_udp_datagram(&frame[14..]).unwrap();
        prop_assert_eq!(&frame[14 + inner.payload_offset..], &payload[..]);
    }

    #[test]
    fn ipip_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..1400), ttl in any::<u8>()) {
        let mut inner = vec![0u8; 28 + payload.len()];
        build_udp_datagram(0x0a00_0001, 0x0a00_0002, 1, 2, &payload, 64, &mut inner).unwrap();
        let e = IpipEncap { local: 3, remote: 4, ttl };
        let mut out = vec![0u8; inner.len() + 20];
        let n = e.encap(&inner, 0, &mut out).unwrap();
        let d = ipip_decap(&out[..n]).unwrap();
        prop_assert_eq!(d.outer.ttl, ttl);
        prop_assert_eq!(&out[d.inner_offset..d.inner_offset + d.inner_len], &inner[..]);
    }

    #[test]
    fn encap_of_anything_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..100),
        out_len in 0usize..200,
    ) {
        let mut out = vec![0u8; out_len];
        let _ = VxlanEncap::new(1, 2, 3, VXLAN_PORT, 64).unwrap().encap(&data, 0, &mut out);
        let _ = VxlanEncap::new(1, 2, 3, VXLAN_PORT, 64).unwrap().encap_ipv4(&data, [0; 6], [1; 6], 0, &mut out);
        let _ = IpipEncap { local: 1, remote: 2, ttl: 64 }.encap(&data, 0, &mut out);
    }

    #[test]
    fn batches_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        lens in proptest::collection::vec(0u32..300, 0..8),
        stride in 0usize..150,
        dst_stride in 0usize..200,
    ) {
        let mut dst = vec![0u8; 8 * 200];
        let mut dl = vec![0u32; lens.len()];
        let e = IpipEncap { local: 1, remote: 2, ttl: 64 };
        let _ = encap_batch(&e, &data, stride, &lens, &mut dst, dst_stride, &mut dl, 0);
        let (mut a, mut b, mut c) = (vec![0u32; 8], vec![0u32; 8], vec![0u32; 8]);
        let _ = decap_batch(TunnelKind::Vxlan, &data, stride, &lens, &mut a, &mut b, &mut c);
        let _ = decap_batch(TunnelKind::Ipip, &data, stride, &lens, &mut a, &mut b, &mut c);
    }

    #[test]
    fn incremental_checksum_verifies(
        mut words in proptest::collection::vec(any::<u16>(), 2..30),
        idx in any::<usize>(),
        new in any::<u16>(),
    ) {
        // words[0] is the checksum field.
        words[0] = 0;
        let bytes = |w: &[u16]| w.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
        words[0] = internet_checksum(&bytes(&words));
        let i = 1 + idx % (words.len() - 1);
        let old = words[i];
        words[i] = new;
        words[0] = adjust16(words[0], old, new);
        prop_assert_eq!(internet_checksum(&bytes(&words)), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn offload_paths_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        mss in 0usize..2000,
        k in 0usize..8,
        start in any::<u16>(),
        offset in any::<u16>(),
    ) {
        use kubetrio_datapath::packet::offload::{
            complete_checksum, finish_tcpv4, gso_tcpv4_header, segment_count, segment_tcpv4,
            TcpCoalescer, VnetHdr,
        };
        let _ = VnetHdr::parse(&data);
        let _ = segment_count(&data, mss);
        let mut out = vec![0u8; 2100];
        let _ = segment_tcpv4(&data, mss, k, &mut out);
        let mut m = data.clone();
        let _ = complete_checksum(&mut m, usize::from(start), usize::from(offset));
        let _ = finish_tcpv4(&mut m);
        let _ = gso_tcpv4_header(&data, mss);
        let mut c = TcpCoalescer::new();
        if c.start(&data) {
            let _ = c.append(&data);
        }
        let _ = c.take();
    }
}
