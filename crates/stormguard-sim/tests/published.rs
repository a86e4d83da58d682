//! The engine against published results on retries (`/work/shared/REFERENCES.md`, "Published
//! results the simulator should reproduce"), as far as a graph file can express the published
//! models.
//!
//! Where our model differs from a published one, the test says how, and its tolerance is widened
//! by what that difference can move, never tuned to the number: the engine is not changed to
//! fit any figure here. Where a published figure is a matter of chance (simple_collapse_sim), a
//! transcription of the published simulator was run with many seeds beside ours, to tell a
//! difference of model from one of chance.
//!
//! - Brooker 2022, "Fixing retries with token buckets and circuit breakers" (retry_sim): see
//!   [`retry_sim_graph`].
//! - Brooker's simple_collapse_sim: see [`collapse_graph`].
//! - Bronson et al., HotOS'21, "Metastable failures in distributed systems": see
//!   [`bronson_graph`].
//! - Dean and Barroso, "The Tail at Scale", CACM 2013: the fan-out tail and Bigtable's hedged
//!   requests, see [`fan_out_graph`].

use std::time::Instant;

use stormguard_sim::engine::{find_scenario, run, Outcome, Setup};

/// Any instant will do as virtual time's origin: the outcome depends only on differences.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

/// Runs the graph `toml` through its scenario `scenario`.
fn simulate(toml: &str, scenario: &str, seed: u64) -> Outcome {
    let graph = stormguard_graph::parse("published.toml", toml).unwrap_or_else(|e| panic!("{e}"));
    let setup = Setup {
        scenario: Some(find_scenario(&graph, scenario).expect("the graph's scenario")),
        ..Setup::new(seed, origin())
    };
    run(&graph, &setup, &mut |_| {}).expect("published models simulate")
}

/// Share of the user requests answered in time.
fn success(outcome: &Outcome) -> f64 {
    outcome.users.succeeded as f64 / outcome.users.requests as f64
}

/// `|measured - expected| <= tolerance * expected`.
fn within(measured: f64, expected: f64, tolerance: f64) -> bool {
    (measured - expected).abs() <= tolerance * expected
}

/// Brooker's retry_sim: 1000 calls a second (100 clients of 10/s: one Poisson stream of 1000/s,
/// since his clients share nothing but the server), 10 s, a server that fails each attempt with
/// probability `p`, and up to 4 tries. His network delay is Exp(10 ms) each way, ours a fixed
/// 10 ms: neither load nor success depends on it. His server answers at once; ours works 1 us.
/// `limiter` is the call's `retry_budget` or `token_bucket` line, or empty for none.
fn retry_sim_graph(p: f64, limiter: &str) -> String {
    let limiter = if limiter.is_empty() {
        "retry_budget = \"none\""
    } else {
        limiter
    };
    format!(
        r#"
        [entry]
        service = "client"
        timeout = "10s"
        rate = 1000
        [services.client]
        concurrency = 100000
        latency = {{ p50 = "1us", p99 = "1us" }}
        [[services.client.calls]]
        to = "server"
        timeout = "1s"
        rtt = "20ms"
        max_attempts = 4
        backoff = "none"
        propagate_deadline = false
        {limiter}
        [services.server]
        concurrency = 100000
        latency = {{ p50 = "1us", p99 = "1us" }}
        [scenarios.failing]
        duration = "10s"
        # Past the run, so that the retries of the last requests fail as often as the others.
        [[scenarios.failing.faults]]
        service = "server"
        from = "0s"
        to = "60s"
        error_rate = {p}
        "#
    )
}

/// The published (load, success) of Brooker's token bucket at each failure rate.
const BROOKER_BUCKET: [(f64, f64, f64); 3] = [
    (0.1, 1.096, 0.992),
    (0.2, 1.134, 0.905),
    (0.5, 1.143, 0.570),
];

/// Without a limiter, load and success are the closed forms Brooker's "three_retries" curve
/// follows: 1 + p + p^2 + p^3 attempts per call and 1 - p^4 successes, within 2% over 10 000
/// calls (measured: 1.110, 1.253, 1.872 attempts; 0.9998, 0.9986, 0.9379 success).
#[test]
fn four_tries_without_a_limiter_give_the_geometric_sums() {
    for p in [0.1_f64, 0.2, 0.5] {
        let outcome = simulate(&retry_sim_graph(p, ""), "failing", 1);
        let load = outcome.amplification("server").unwrap();
        let expected = 1.0 + p + p * p + p * p * p;
        assert!(
            within(load, expected, 0.02),
            "p={p}: load {load}, expected {expected}"
        );
        let expected = 1.0 - p.powi(4);
        let success = success(&outcome);
        assert!(
            within(success, expected, 0.02),
            "p={p}: success {success}, expected {expected}"
        );
    }
}

/// A retry budget of ratio r bounds the load at 1 + r, whatever fails: it is its guarantee,
/// and at p = 0.5 the demand (0.875 retries a call) uses all of it (measured: 1.0998, 1.0999,
/// 1.0999).
#[test]
fn a_retry_budget_bounds_load_at_one_plus_its_ratio() {
    for p in [0.1, 0.2, 0.5] {
        let outcome = simulate(
            &retry_sim_graph(p, "retry_budget = { ratio = 0.1, min_per_sec = 0 }"),
            "failing",
            2,
        );
        let load = outcome.amplification("server").unwrap();
        assert!(load <= 1.1 + 1e-3, "p={p}: load {load}");
        if p == 0.5 {
            assert!(load > 1.09, "the budget was not used: load {load}");
        }
    }
}

/// Brooker's bucket, per client: size 5 and full at start, +0.1 token per call, a retry costs 1.
/// Summed over his 100 clients that is 0.1 retry earned per call plus 500 tokens to start with,
/// which over his 10 s run is exactly a Finagle retry budget of ratio 0.1 with a reserve of
/// `min_per_sec * ttl` = 50/s * 10 s = 500 retries. What remains different: his per-client cap
/// of 5 throws away tokens a client earns beyond it, which only binds when few calls fail.
///
/// Measured (load, success; the mean of four seeds), published in brackets: p=0.1 1.114, 99.99%
/// (1.096, 99.2%); p=0.2 1.150, 92.0% (1.134, 90.5%); p=0.5 1.152, 57.4% (1.143, 57.0%). Load
/// within 2% and success within 2.5 points at every p.
#[test]
fn brookers_bucket_summed_over_his_clients_is_a_budget_with_a_reserve() {
    const SEEDS: u64 = 4;
    for (p, load_published, success_published) in BROOKER_BUCKET {
        // Four seeds, averaged: at p = 0.1 the bucket never binds, the load is the closed form
        // 1.111, 1.4% above Brooker's figure, and one seed's sampling noise (about 0.4%) would
        // take half of what is left of the 2%.
        let graph = retry_sim_graph(p, "retry_budget = { ratio = 0.1, min_per_sec = 50 }");
        let outcomes: Vec<Outcome> = (1..=SEEDS)
            .map(|seed| simulate(&graph, "failing", seed))
            .collect();
        let mean = |f: &dyn Fn(&Outcome) -> f64| outcomes.iter().map(f).sum::<f64>() / SEEDS as f64;
        let load = mean(&|o| o.amplification("server").unwrap());
        let success = mean(&|o| success(o));
        println!("p={p}: load {load:.3}, success {success:.4}");
        assert!(within(load, load_published, 0.02), "p={p}: load {load}");
        assert!(
            (success - success_published).abs() <= 0.025,
            "p={p}: success {success}"
        );
    }
}

/// `token_bucket = { capacity, retry_cost, timeout_cost }` is the core's `TokenBucket`, in the
/// AWS SDKs' standard mode: one bucket for every caller of the edge, a retry costs `retry_cost`,
/// a success at the first try refunds 1 token, and a success after retries refunds what its last
/// retry cost. Capacity 50 and cost 10 give Brooker's sizes in retries (5 in the bucket, 0.1
/// earned per first-try success), but not his rule: he earns 0.1 per call whatever its outcome,
/// and a retry is never refunded.
///
/// So the two agree where retries mostly fail, and part where they mostly succeed: a retry that
/// succeeds costs AWS nothing, so at p = 0.2 the bucket drains at 2 tokens per retry (10 times
/// the 20% that fail) and refills at 0.8 per call, and allows far more retries than Brooker's.
/// Measured (load, success), published in brackets: p=0.1 1.110, 99.75% (1.096, 99.2%); p=0.2
/// 1.217, 97.3% (1.134, 90.5%) — not reproduced, by the refund; p=0.5 1.100, 54.7% (1.143,
/// 57.0%), within 4% of load and 2.5 points of success, the gap being Brooker's 500 starting
/// tokens, which our one bucket of 50 does not have.
#[test]
fn the_aws_token_bucket_matches_brookers_where_retries_fail_and_allows_more_where_they_succeed() {
    let bucket = "token_bucket = { capacity = 50, retry_cost = 10, timeout_cost = 10 }";
    for (p, load_published, success_published) in BROOKER_BUCKET {
        let outcome = simulate(&retry_sim_graph(p, bucket), "failing", 1);
        let load = outcome.amplification("server").unwrap();
        let success = success(&outcome);
        let unlimited = 1.0 + p + p * p + p * p * p;
        assert!(load <= unlimited * 1.02, "p={p}: load {load}");
        match p {
            0.1 => {
                assert!(within(load, load_published, 0.02), "p={p}: load {load}");
                assert!(
                    (success - success_published).abs() <= 0.01,
                    "p={p}: {success}"
                );
            }
            0.2 => {
                // Between Brooker's bucket and no limiter at all, by the refunds.
                assert!(load > load_published * 1.03, "p={p}: load {load}");
                assert!(
                    success > success_published + 0.03,
                    "p={p}: success {success}"
                );
            }
            _ => {
                assert!(within(load, load_published, 0.05), "p={p}: load {load}");
                assert!(
                    (success - success_published).abs() <= 0.03,
                    "p={p}: {success}"
                );
            }
        }
    }
}

/// Brooker's simple_collapse_sim: a server whose work is 1.0 s + 0.01 s per request in flight
/// (its own included), no cancellation, clients that time out after 3 s and try 3 times, 40
/// calls a second with a spike to 80 for t in [20 s, 25 s], 80 s. `backoff` is the call's.
///
/// Ours counts the *other* requests in flight (`contention`), so the request's own 0.01 s is in
/// its own work, 1.01 s. His network delay is Exp(0.1 s) each way, ours a fixed 0.1 s: a tail of
/// network delay tips a few more attempts over the timeout at the peak. His clients wait for
/// ever; our users give up after 200 s, longer than three attempts and both backoffs.
fn collapse_graph(backoff: &str) -> String {
    format!(
        r#"
        [entry]
        service = "client"
        timeout = "200s"
        rate = 40
        [services.client]
        concurrency = 100000
        latency = {{ p50 = "1us", p99 = "1us" }}
        [[services.client.calls]]
        to = "server"
        timeout = "3s"
        rtt = "200ms"
        max_attempts = 3
        backoff = "{backoff}"
        retry_budget = "none"
        propagate_deadline = false
        [services.server]
        concurrency = 100000
        queue = 0
        latency = {{ p50 = "1010ms", p99 = "1010ms" }}
        contention = "10ms"
        [scenarios.spike]
        duration = "80s"
        [[scenarios.spike.load]]
        from = "20s"
        to = "25s"
        rate = 80
        "#
    )
}

/// Users answered per second over whole seconds `from..to` of the timeline.
fn answered_per_second(outcome: &Outcome, from: usize, to: usize) -> f64 {
    let steps = &outcome.timeline[from..to];
    steps.iter().map(|s| s.succeeded).sum::<u64>() as f64 / steps.len() as f64
}

/// Published: without backoff goodput does not recover (a mean over 10 runs of ~16/s after the
/// spike against 39/s before); with backoff and jitter it recovers by ~35 s.
///
/// The spike sits on a knife edge: at its peak a new attempt takes just about the 3 s timeout,
/// so whether the retries tip the server into collapse is chance, and the published mean of
/// 16/s is a mix of runs that collapsed (0/s) and runs that did not (~40/s). A transcription of
/// his simulator, run with 20 seeds, collapsed in 15 (Exp network) and 13 (fixed network); ours
/// collapses in 15 of seeds 1 to 20, and in 7 of the 10 seeds here: a mean of 12.0/s from 40 s
/// to 80 s. Each run that tips the other way moves a mean of 10 by 4/s, so the tolerance on the
/// mean is two runs, 8/s.
///
/// With backoff (U(0, 20 s), then U(0, 40 s): full jitter of base 20 s and cap 40 s) no seed
/// collapses and every user is answered. His goodput counts answers by the second they arrive
/// in and is back by ~35 s; ours counts users by the second they arrived in, and since every
/// one is answered in the end, each second's goodput is whole and the run counts as recovered
/// when the spike ends, at 25 s.
#[test]
fn without_backoff_a_spike_collapses_most_runs_and_with_backoff_none() {
    let runs = 1..=10;
    let mut after_spike = Vec::new();
    for seed in runs.clone() {
        let outcome = simulate(&collapse_graph("none"), "spike", seed);
        let (before, after) = (
            answered_per_second(&outcome, 5, 20),
            answered_per_second(&outcome, 40, 80),
        );
        assert!(
            (35.0..45.0).contains(&before),
            "seed {seed}: {before}/s before"
        );
        // Bimodal: collapsed for good, or back to the load.
        assert!(
            !(1.0..=35.0).contains(&after),
            "seed {seed}: {after}/s after"
        );
        assert_eq!(after < 1.0, outcome.recovered_at.is_none(), "seed {seed}");
        after_spike.push(after);
    }
    let collapses = after_spike.iter().filter(|&&a| a < 1.0).count();
    assert!((5..=9).contains(&collapses), "{collapses} of 10 collapsed");
    let mean = after_spike.iter().sum::<f64>() / after_spike.len() as f64;
    assert!((mean - 16.0).abs() <= 8.0, "{mean}/s after the spike");

    for seed in runs {
        let outcome = simulate(
            &collapse_graph("full-jitter(base=20s, cap=40s)"),
            "spike",
            seed,
        );
        assert!(
            success(&outcome) > 0.99,
            "seed {seed}: {}",
            success(&outcome)
        );
        let recovered = outcome.recovered_at.expect("backoff recovers");
        assert!(recovered.as_secs() <= 35, "seed {seed}: {recovered:?}");
    }
}

/// Bronson et al.: a database that answers in under 100 ms below 300 queries a second and far
/// worse above, clients that retry once after a 1 s timeout; at 280 QPS a 10 s outage leaves it
/// stuck at 560 QPS with no goodput, while below 150 QPS (where even a retry of every query
/// fits in 300 QPS) it recovers.
///
/// Ours: 15 workers of 50 ms (300 QPS), an unbounded queue, no backoff; the outage is a 20x
/// slowdown from 10 s to 20 s, so that queries pile up behind it as they do behind a stalled
/// database. The paper gives no latency distribution; ours is constant.
fn bronson_graph(rate: f64, duration: &str) -> String {
    format!(
        r#"
        [entry]
        service = "web"
        timeout = "10s"
        rate = {rate}
        [services.web]
        concurrency = 100000
        latency = {{ p50 = "1us", p99 = "1us" }}
        [[services.web.calls]]
        to = "db"
        timeout = "1s"
        rtt = "1ms"
        max_attempts = 2
        backoff = "none"
        retry_budget = "none"
        propagate_deadline = false
        [services.db]
        concurrency = 15
        queue = 1000000
        latency = {{ p50 = "50ms", p99 = "50ms" }}
        [scenarios.outage]
        duration = "{duration}"
        [[scenarios.outage.faults]]
        service = "db"
        from = "10s"
        to = "20s"
        slowdown = 20.0
        "#
    )
}

/// Attempts at `service` per user request over whole seconds `from..to` of the timeline.
fn amplification_over(outcome: &Outcome, service: &str, from: usize, to: usize) -> f64 {
    let steps = &outcome.timeline[from..to];
    let attempts: u64 = steps.iter().map(|s| s.attempts[service]).sum();
    attempts as f64 / steps.iter().map(|s| s.users).sum::<u64>() as f64
}

/// Measured at 280 QPS: before the outage the slowest query of a second takes ~85 ms; from the
/// outage on no query is answered, and from 20 s to 60 s db gets 2.00 attempts per query (560
/// QPS) while its queue keeps growing. At 160 QPS the same (2.00). At 120 QPS db drains the
/// outage's backlog at 60 QPS and answers again from 50 s, at 1.00 attempt per query.
#[test]
fn a_10s_outage_leaves_the_database_stuck_at_twice_its_load_above_150_qps() {
    for (rate, duration, stuck) in [
        (280.0, "60s", true),
        (160.0, "80s", true),
        (120.0, "80s", false),
    ] {
        let outcome = simulate(&bronson_graph(rate, duration), "outage", 1);
        let end = outcome.timeline.len();
        if stuck {
            assert_eq!(outcome.recovered_at, None, "{rate} QPS");
            assert!(
                outcome.timeline[11..].iter().all(|s| s.succeeded == 0),
                "{rate} QPS"
            );
            let load = amplification_over(&outcome, "db", 20, end);
            assert!(within(load, 2.0, 0.02), "{rate} QPS: x{load}");
        } else {
            let recovered = outcome.recovered_at.expect("below 150 QPS db recovers");
            assert!(recovered.as_secs() <= 60, "{rate} QPS: {recovered:?}");
            let load = amplification_over(&outcome, "db", end - 10, end);
            assert!(within(load, 1.0, 0.02), "{rate} QPS: x{load} at the end");
        }
    }
}

/// Dean and Barroso's fan-out: `root` sends one request to each of `leaves` leaves at once (as
/// many `parallel = true` calls: a call's `count` repeats in sequence) and answers when the last
/// has answered. The leaf's work is a lognormal of quantiles `p50` and `p99`; `hedge` is each
/// call's hedge line, or empty.
///
/// Nothing else takes time: `root` works 1 us, the network 2 us a round trip, and no worker or
/// queue is ever short, so a user request takes its slowest leaf's time and nothing more. The
/// leaves are independent draws: `leaf` has 2 instances, so that a hedge has another to go to,
/// and an instance is no slower for having been slow before.
fn fan_out_graph(leaves: usize, rate: f64, p50: &str, p99: &str, hedge: &str) -> String {
    let mut toml = format!(
        r#"
        [entry]
        service = "root"
        timeout = "1h"
        rate = {rate}
        [services.root]
        concurrency = 100000
        latency = {{ p50 = "1us", p99 = "1us" }}
        [services.leaf]
        instances = 2
        concurrency = 100000
        latency = {{ p50 = "{p50}", p99 = "{p99}" }}
        [scenarios.steady]
        duration = "20s"
        "#
    );
    for _ in 0..leaves {
        toml.push_str(&format!(
            r#"
        [[services.root.calls]]
        to = "leaf"
        timeout = "1h"
        rtt = "2us"
        parallel = true
        idempotent = true
        {hedge}
        "#
        ));
    }
    toml
}

/// The user-request latency at quantile `q`, in milliseconds; every request must have been
/// answered, or the quantile would leave the slowest out.
fn user_quantile_ms(outcome: &Outcome, q: f64) -> f64 {
    let latencies = &outcome.users.latency_ns;
    assert_eq!(latencies.len() as u64, outcome.users.requests);
    let rank = ((latencies.len() as f64 * q).ceil() as usize).max(1);
    latencies[rank - 1] as f64 / 1e6
}

/// Published: a leaf that answers in 10 ms but in 1 s one time in a hundred makes a user request
/// that waits for n of them slow with probability 1 - 0.99^n: 63.4% at n = 100 (9.56% at 10).
///
/// How ours differs: their leaf is bimodal, 10 ms or 1 s; ours is a lognormal of p50 10 ms and
/// p99 1 s, so 1% of leaves take over 1 s as theirs do, but a slow leaf takes from 1 s to tens of
/// seconds and a fast one anything below (its p90 is 126 ms). The share of slow user requests
/// reads only P(leaf > 1 s), so it is the same figure; what differs is how slow a slow request
/// is and how fast a fast one is, which the test does not compare. A user request counts as slow
/// over 1 s, 3 us of network and root work above the leaf's p99.
///
/// Measured: 61.9% of 1 955 user requests at n = 100 (2.4% under 63.4%), 9.11% of 10 059 at
/// n = 10 (4.7% under 9.56%); within 10% of the formula at both. One standard error of the share
/// is 1.7% and 3.0% of it at these counts; over seeds 1 to 6 the share at n = 100 is 61.2% to
/// 65.1%.
#[test]
fn a_fan_out_of_100_with_1_percent_slow_leaves_makes_63_percent_of_requests_slow() {
    for (leaves, rate) in [(10, 500.0), (100, 100.0)] {
        let outcome = simulate(&fan_out_graph(leaves, rate, "10ms", "1s", ""), "steady", 1);
        let slow = outcome
            .users
            .latency_ns
            .iter()
            .filter(|&&latency| latency > 1_000_000_000)
            .count() as f64;
        assert_eq!(outcome.users.succeeded, outcome.users.requests);
        let share = slow / outcome.users.requests as f64;
        let expected = 1.0 - 0.99_f64.powi(leaves as i32);
        assert!(
            within(share, expected, 0.10),
            "{leaves} leaves: {share} slow, expected {expected}"
        );
    }
}

/// Published (Bigtable, reading 1 000 keys spread over 100 servers): a hedged request after
/// 10 ms cuts the p99.9 of the whole read from 1 800 ms to 74 ms, for 2% more requests.
///
/// Ours: one request to each of 100 leaves, each leaf a lognormal fitted to the two published
/// figures that say what the leaf is: 2% of leaf requests outlast 10 ms (so a 10 ms hedge adds
/// 2% of requests), and a read without hedging has its p99.9 at 1 800 ms, which at a fan-out of
/// 100 is the leaf's 1 - 10^-5 quantile. That gives sigma 2.349, p50 0.0804 ms and p99
/// 18.97 ms. The third figure is then a prediction: with a hedge after 10 ms a leaf outlasts t
/// only if both copies do, P(X > t) P(X > t - 10 ms) = 10^-5, so p99.9 = 54 ms, against the
/// published 74 ms.
///
/// How ours differs: Bigtable's slow requests come from servers that are slow for a while
/// (queues, compactions, other tenants), so a hedge is more often slow too; our copies are
/// independent draws, which is why the model predicts a deeper cut than Bigtable's. The
/// lognormal matches the tail beyond 10 ms only: its median (0.08 ms) is far below a real read's.
/// The hedge budget (`max_extra = 0.1`) binds only at the start, when it is empty and a call's
/// first hedge waits for its 10th request: 2% are asked for.
///
/// Measured (3 018 user requests, so the p99.9 is the 4th slowest): p99.9 2 086 ms unhedged
/// (published 1 800), 73.3 ms hedged (published 74, model 54), x28.5 (published x24), for 1.95%
/// more leaf requests (published 2%). Resting on four requests, the p99.9 moves from seed to seed:
/// over seeds 1 to 6, 1 179 to 2 086 ms unhedged and 62 to 77 ms hedged, never less than x17,
/// and 1.97% to 2.05% more requests. The engine follows the model: over 10 059 requests (seed
/// 1, 3.5 s in debug, so not run here) the share of reads hedged over 15, 20, 30, 40 and 54 ms is
/// 5.03%, 1.92%, 0.58%, 0.23% and 0.12%, against the model's 4.98%, 1.87%, 0.55%, 0.24% and
/// 0.10%, and the p99.9 is 56 ms. Asserted on seed 1: the unhedged p99.9 within 25% of
/// 1 800 ms, the hedged one within 50% of the model's 54 ms and over ten times shorter, and the
/// extra requests within 10% of 2%.
#[test]
fn hedging_after_10ms_cuts_the_p999_of_a_100_way_read_for_2_percent_more_requests() {
    let read = |hedge: &str| {
        simulate(
            &fan_out_graph(100, 150.0, "0.0804ms", "18.97ms", hedge),
            "steady",
            1,
        )
    };
    let plain = read("");
    let hedged = read(r#"hedge = { delay = "10ms", max_extra = 0.1 }"#);
    let (before, after) = (
        user_quantile_ms(&plain, 0.999),
        user_quantile_ms(&hedged, 0.999),
    );
    assert!(within(before, 1800.0, 0.25), "p99.9 {before} ms unhedged");
    assert!(
        after < before / 10.0,
        "p99.9 {after} ms hedged, {before} ms not"
    );
    assert!(within(after, 54.0, 0.5), "p99.9 {after} ms hedged");
    let hedges: u64 = hedged.calls.iter().map(|call| call.hedges).sum();
    let sent: u64 = hedged.calls.iter().map(|call| call.attempts).sum();
    let extra = hedges as f64 / (sent - hedges) as f64;
    assert!(within(extra, 0.02, 0.10), "{extra} more requests");
    assert_eq!(plain.calls.iter().map(|call| call.hedges).sum::<u64>(), 0);
}
