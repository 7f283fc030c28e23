//! Times the Internet checksum over 1460-byte payloads:
//! `cargo run --release -p kubetrio-datapath --example checksum_speed`.

use kubetrio_datapath::checksum::sum;
use std::time::Instant;

fn main() {
    let data: Vec<u8> = (0..1460u32).map(|i| (i * 31) as u8).collect();
    let reps = 2_000_000;
    let t = Instant::now();
    let mut acc = 0u32;
    for i in 0..reps {
        acc = acc.wrapping_add(sum(std::hint::black_box(&data), i));
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / f64::from(reps);
    println!(
        "checksum of 1460 bytes: {ns:.1} ns ({:.1} GB/s) [{acc}]",
        1460.0 / ns
    );
}
