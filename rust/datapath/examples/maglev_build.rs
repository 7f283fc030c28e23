//! Times Maglev table builds without Python in the way:
//! `cargo run --release -p kubetrio-datapath --example maglev_build`.

use kubetrio_datapath::maglev::Maglev;
use std::time::Instant;

fn main() {
    for (n, m) in [
        (10usize, 65_537u32),
        (100, 65_537),
        (1000, 65_537),
        (100, 16_381),
    ] {
        let names: Vec<String> = (0..n)
            .map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250))
            .collect();
        let mut times = Vec::new();
        for _ in 0..51 {
            let t = Instant::now();
            let table = Maglev::new(names.clone(), None, m, 0).expect("valid arguments");
            times.push(t.elapsed().as_secs_f64());
            std::hint::black_box(table);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{n:5} backends, M={m}: median {:.3} ms",
            times[times.len() / 2] * 1e3
        );
    }
}
