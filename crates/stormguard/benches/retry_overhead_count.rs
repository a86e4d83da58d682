//! Instruction counts and interleaved timings of the no-failure path, for `bench/retry_overhead.sh`.
//!
//! `retry_overhead_count VARIANT N` sends N requests through one variant (run it under
//! `valgrind --tool=callgrind` twice with different N: the difference divided by the difference
//! in N is the instructions per request, free of start-up cost). Without arguments it times all
//! variants in interleaved rounds and prints the median of each, so that a noisy neighbour slows
//! every variant alike.

mod support;

use std::time::Instant;

use tower::ServiceExt;

fn run(rt: &tokio::runtime::Runtime, service: &support::Variant, n: u64) {
    rt.block_on(async {
        for _ in 0..n {
            service.clone().oneshot(support::request()).await.unwrap();
        }
    });
}

#[allow(clippy::disallowed_methods)] // wall-clock timing is the point here
fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let variants = support::variants();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let [variant, n] = &args[..] {
        let n: u64 = n.parse().expect("N is a count");
        let (_, service) = variants
            .iter()
            .find(|(name, _)| name == variant)
            .unwrap_or_else(|| panic!("no variant {variant:?}"));
        run(&rt, service, n);
        return;
    }
    const ROUNDS: usize = 15;
    const PER_ROUND: u64 = 20_000;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for (_, service) in &variants {
        run(&rt, service, PER_ROUND / 4); // warm up
    }
    for _ in 0..ROUNDS {
        for (i, (_, service)) in variants.iter().enumerate() {
            let start = Instant::now();
            run(&rt, service, PER_ROUND);
            samples[i].push(start.elapsed().as_nanos() as f64 / PER_ROUND as f64);
        }
    }
    println!(
        "{:<45} {:>12} {:>12}",
        "variant (interleaved rounds)", "median ns", "vs bare"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let bare = median(&mut samples[0].clone());
    for ((name, _), mut s) in variants.iter().zip(samples) {
        let m = median(&mut s);
        println!("{name:<45} {m:>12.0} {:>+12.0}", m - bare);
    }
}
