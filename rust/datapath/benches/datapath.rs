//! Criterion benchmarks of the pure-Rust datapath: `cargo bench -p kubetrio-datapath`.
//! The Python benchmarks in `benchmarks/datapath_*.py` measure the same work through the
//! binding against in-run baselines; these isolate the Rust cost.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kubetrio_datapath::checksum::internet_checksum;
use kubetrio_datapath::lpm::PrefixTable;
use kubetrio_datapath::maglev::{Maglev, DEFAULT_TABLE_SIZE};
use kubetrio_datapath::packet::batch::{decap_batch, encap_batch, TunnelKind};
use kubetrio_datapath::packet::udp::build_udp_datagram;
use kubetrio_datapath::packet::vxlan::{VxlanEncap, VXLAN_PORT};
use std::hint::black_box;

fn names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{}.{}.{}:8080", i >> 16 & 255, i >> 8 & 255, i & 255))
        .collect()
}

fn maglev(c: &mut Criterion) {
    let mut g = c.benchmark_group("maglev_build_m65537");
    for n in [10, 100, 1000] {
        let backends = names(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &backends, |b, backends| {
            b.iter(|| Maglev::new(backends.clone(), None, DEFAULT_TABLE_SIZE, 0).unwrap())
        });
    }
    // Unequal weights take the turn-skipping path.
    let weights: Vec<u32> = (0..100).map(|i| 1 + i % 4).collect();
    g.bench_function("100_weighted", |b| {
        b.iter(|| Maglev::new(names(100), Some(weights.clone()), DEFAULT_TABLE_SIZE, 0).unwrap())
    });
    g.finish();
    let table = Maglev::new(names(100), None, DEFAULT_TABLE_SIZE, 0).unwrap();
    let hashes: Vec<u64> = (0..1024u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let mut out = vec![0u32; 1024];
    let mut g = c.benchmark_group("maglev_lookup");
    g.throughput(Throughput::Elements(1024));
    g.bench_function("batch_1024", |b| {
        b.iter(|| table.lookup_batch(black_box(&hashes), &mut out).unwrap())
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    const N: usize = 256;
    const STRIDE: usize = 2048;
    let mut src = vec![0u8; N * STRIDE];
    let mut lens = vec![0u32; N];
    for i in 0..N {
        let slot = &mut src[i * STRIDE..(i + 1) * STRIDE];
        slot[12..14].copy_from_slice(&[0x08, 0x00]);
        let n = build_udp_datagram(1, 2, i as u16, 80, &[7u8; 1372], 64, &mut slot[14..]).unwrap();
        lens[i] = (14 + n) as u32;
    }
    let e = VxlanEncap::new(0xac1e_0001, 0xac1e_0002, 4096, VXLAN_PORT, 64).unwrap();
    let mut dst = vec![0u8; N * STRIDE];
    let mut dst_lens = vec![0u32; N];
    let (mut off, mut il, mut tag) = (vec![0u32; N], vec![0u32; N], vec![0u32; N]);
    let mut g = c.benchmark_group("vxlan_1414B");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("encap_batch_256", |b| {
        b.iter(|| encap_batch(&e, &src, STRIDE, &lens, &mut dst, STRIDE, &mut dst_lens, 0).unwrap())
    });
    g.bench_function("decap_batch_256", |b| {
        b.iter(|| {
            decap_batch(
                TunnelKind::Vxlan,
                &dst,
                STRIDE,
                &dst_lens,
                &mut off,
                &mut il,
                &mut tag,
            )
            .unwrap()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(1460));
    g.bench_function("1460B", |b| {
        b.iter(|| internet_checksum(black_box(&src[..1460])))
    });
    g.finish();
}

fn lpm(c: &mut Criterion) {
    let mut t = PrefixTable::new();
    for node in 0..1000u32 {
        t.insert(0x0af4_0000 | (node << 8) & 0x00ff_ff00, 24, node)
            .unwrap();
    }
    t.insert(0, 0, u32::MAX).unwrap();
    let addrs: Vec<u32> = (0..1024u32)
        .map(|i| 0x0af4_0000 | i.wrapping_mul(2_654_435_761) & 0xffff)
        .collect();
    let mut out = vec![0u32; 1024];
    let mut g = c.benchmark_group("lpm_1000_routes");
    g.throughput(Throughput::Elements(1024));
    g.bench_function("lookup_batch_1024", |b| {
        b.iter(|| t.lookup_batch(black_box(&addrs), &mut out, 0).unwrap())
    });
    g.finish();
}

criterion_group!(benches, maglev, codec, lpm);
criterion_main!(benches);
