//! The cost of one backoff computation, and of the other decisions taken on every request.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use stormguard::backoff::{seeded, Backoff};
use stormguard::budget::{RetryBudget, TokenBucket, TokenBucketConfig};
use stormguard::classify::{AttemptResult, Classifier};
use stormguard::policy::{Limiter, RetryPolicy};

fn backoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("backoff_next_delay");
    for text in [
        "exponential(base=25ms, cap=1s)",
        "full-jitter(base=25ms, cap=1s)",
        "equal-jitter(base=25ms, cap=1s)",
        "decorrelated-jitter(base=25ms, cap=1s)",
    ] {
        let backoff: Backoff = text.parse().unwrap();
        let mut rng = seeded(1);
        group.bench_function(text, |b| {
            // A fresh schedule per 4 retries keeps the retry number in a realistic range.
            let mut schedule = backoff.schedule();
            let mut n = 0u32;
            b.iter(|| {
                if n % 4 == 0 {
                    schedule = backoff.schedule();
                }
                n += 1;
                black_box(schedule.next_delay(&mut rng))
            })
        });
    }
    group.bench_function("parse full-jitter text", |b| {
        b.iter(|| {
            black_box("full-jitter(base=25ms, cap=1s)")
                .parse::<Backoff>()
                .unwrap()
        })
    });
    group.finish();
}

#[allow(clippy::disallowed_methods)] // a bench needs an arbitrary origin
fn origin() -> Instant {
    Instant::now()
}

fn per_request(c: &mut Criterion) {
    let t0 = origin();
    let mut group = c.benchmark_group("per_request");
    let budget = RetryBudget::recommended();
    let mut i = 0u64;
    group.bench_function("retry budget deposit", |b| {
        b.iter(|| {
            i += 1;
            budget.deposit(t0 + Duration::from_micros(i));
        })
    });
    let bucket = TokenBucket::new(TokenBucketConfig::default()).unwrap();
    group.bench_function("token bucket acquire + refund", |b| {
        b.iter(|| {
            let cost = bucket.try_acquire(false);
            bucket.on_success(black_box(cost));
        })
    });
    let classifier = Classifier::default();
    let ok = AttemptResult::Response {
        status: 200,
        retry_after: None,
    };
    group.bench_function("classify a 200", |b| {
        b.iter(|| classifier.classify(black_box(ok), true, None))
    });
    let policy = RetryPolicy::recommended().with_limiter(Limiter::Unlimited);
    let failed = AttemptResult::Response {
        status: 503,
        retry_after: None,
    };
    let mut rng = seeded(2);
    group.bench_function("begin + decide a 503 (retry granted)", |b| {
        b.iter(|| {
            let mut state = policy.begin(t0);
            black_box(policy.decide(&mut state, black_box(failed), true, None, t0, &mut rng))
        })
    });
    group.finish();
}

criterion_group!(benches, backoff, per_request);
criterion_main!(benches);
