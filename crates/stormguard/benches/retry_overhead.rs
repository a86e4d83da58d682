//! The cost of the retry layer when nothing fails, against `tower::retry` with its `TpsBudget`.
//!
//! Target (issue 2): `RetryLayer` no slower than `tower::retry` on the no-failure path. Every
//! variant wraps the same ready inner service that answers 200 at once, on a current-thread tokio
//! runtime, so what is measured is the layer itself: deciding, cloning what a retry would need,
//! the budget deposit, the per-try timeout, and the future. `tower::retry` enforces no timeout,
//! so it is also measured with `tower::timeout` in front, which is what doing the same job takes.
//! The machines are shared and noisy: compare the variants as ratios within one run, and see
//! `bench/retry_overhead.sh` for instruction counts, which noise does not move.

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::ServiceExt;

fn no_failure_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("no_failure_path");
    for (name, service) in support::variants() {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                service.clone().oneshot(support::request()).await.unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, no_failure_path);
criterion_main!(benches);
