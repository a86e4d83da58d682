//! Hedging in whole runs: it cuts a heavy tail within its budget, never copies a call that is
//! not idempotent, and wins the race when the first copy went to an instance that never answers.

use super::tests::{origin, run};
use super::{simulate, Outcome};

/// `web` calls a `db` with a heavy tail (p99 twenty times the p50); `HEDGE` is the call's hedge
/// setting, `IDEMPOTENT` whether the call may be sent twice.
const TAIL: &str = r#"
    [entry]
    service = "web"
    timeout = "10s"
    rate = 200
    [services.web]
    concurrency = 1000
    latency = { p50 = "1ms", p99 = "2ms" }
    [[services.web.calls]]
    to = "db"
    timeout = "5s"
    idempotent = IDEMPOTENT
    HEDGE
    [services.db]
    instances = 4
    concurrency = 200
    latency = { p50 = "10ms", p99 = "200ms" }
    [scenarios.steady]
    duration = "60s"
"#;

fn tail(hedge: &str, idempotent: bool) -> Outcome {
    let toml = TAIL
        .replace("HEDGE", hedge)
        .replace("IDEMPOTENT", &idempotent.to_string());
    run(&toml, Some("steady"), 17)
}

fn p999(outcome: &Outcome) -> u64 {
    let latencies = &outcome.users.latency_ns;
    latencies[(latencies.len() * 999).div_ceil(1000) - 1]
}

#[test]
fn hedging_at_the_p95_cuts_the_p999_for_a_few_percent_more_attempts() {
    let plain = tail("", true);
    let hedged = tail(r#"hedge = { delay = "p95", max_extra = 0.05 }"#, true);
    let (before, after) = (p999(&plain), p999(&hedged));
    assert!(
        (after as f64) < 0.7 * before as f64,
        "p99.9 {before} ns without hedging, {after} ns with"
    );
    let users = hedged.users.requests;
    let call = &hedged.calls[0];
    let extra = call.hedges as f64 / users as f64;
    assert!(
        call.hedges > 0 && extra <= 0.055,
        "{call:?} for {users} users"
    );
    assert_eq!(hedged.services["db"].attempts, users + call.hedges);
    assert_eq!(call.attempts, users + call.hedges);
    assert_eq!(hedged.users.succeeded, users);
    // Same seed, same hedges: the estimator and the budget run on virtual time.
    assert_eq!(
        hedged,
        tail(r#"hedge = { delay = "p95", max_extra = 0.05 }"#, true)
    );
}

#[test]
fn a_call_that_is_not_idempotent_is_never_hedged() {
    let outcome = tail(r#"hedge = { delay = "20ms", max_extra = 1.0 }"#, false);
    assert_eq!(outcome.calls[0].hedges, 0);
    assert_eq!(outcome.services["db"].attempts, outcome.users.requests);
    let hedged = tail(r#"hedge = { delay = "20ms", max_extra = 1.0 }"#, true);
    assert!(hedged.calls[0].hedges > hedged.users.requests / 10);
}

/// Half of `db`'s instances never answer; the call's 300 ms timeout is its only way out, then a
/// retry to another instance.
const BLACKHOLE: &str = r#"
    [entry]
    service = "web"
    rate = 100
    [services.web]
    concurrency = 1000
    [[services.web.calls]]
    to = "db"
    timeout = "300ms"
    max_attempts = 2
    backoff = "none"
    retry_budget = "none"
    HEDGE
    [services.db]
    instances = 2
    [scenarios.half]
    duration = "20s"
    [[scenarios.half.faults]]
    service = "db"
    from = "0s"
    to = "1000s"
    blackhole = true
    instances = 1
"#;

#[test]
fn a_hedge_to_another_instance_wins_over_one_that_never_answers() {
    let run_with = |hedge: &str| run(&BLACKHOLE.replace("HEDGE", hedge), Some("half"), 9);
    let plain = run_with("");
    let hedged = run_with(r#"hedge = { delay = "20ms", max_extra = 1.0 }"#);
    assert_eq!(plain.users.succeeded, plain.users.requests);
    assert_eq!(hedged.users.succeeded, hedged.users.requests);
    // Without the hedge, about half the requests wait out the timeout before their retry.
    assert!(p999(&plain) > 300_000_000, "{}", p999(&plain));
    assert!(p999(&hedged) < 50_000_000, "{}", p999(&hedged));
    let call = &hedged.calls[0];
    assert_eq!((call.retries, call.timeouts), (0, 0), "{call:?}");
    // A hedge goes out for every request that went to the dark instance, and only those:
    // measured 613 of 2 033, the dark one drawing a choice whenever fewer of the caller's
    // attempts wait there than at the other.
    let dark = hedged.services["db"].unreachable;
    assert_eq!(call.hedges, dark);
    assert!(
        dark > hedged.users.requests / 5,
        "{dark} of {}",
        hedged.users.requests
    );
}

#[test]
fn a_hedge_the_policy_core_refuses_is_an_error_naming_the_call() {
    let toml = TAIL
        .replace("HEDGE", r#"hedge = { delay = "p95" }"#)
        .replace("IDEMPOTENT", "true");
    let mut graph = stormguard_graph::parse("t.toml", &toml).unwrap();
    let call = &mut graph.services.get_mut("web").unwrap().calls[0];
    call.hedge.as_mut().unwrap().max_extra = 1.5;
    let error = simulate(&graph, None, 1, None, origin()).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("call web->db: invalid hedge max_extra 1.5"),
        "{error}"
    );
}

#[test]
fn retries_earn_no_hedge_budget() {
    // `db` fails half its attempts at once with a 503, so nearly half the attempts are retries,
    // and answers the others after some 10 ms, past the 1 ms hedge delay: every attempt asks
    // for a hedge, and the budget alone decides.
    let hedge = r#"max_attempts = 3
    retry_budget = "none"
    hedge = { delay = "1ms", max_extra = 0.1 }"#;
    let failing = r#"
    [[scenarios.steady.faults]]
    service = "db"
    from = "0s"
    to = "60s"
    error_rate = 0.5"#;
    let toml = TAIL.replace("HEDGE", hedge).replace("IDEMPOTENT", "true") + failing;
    let outcome = run(&toml, Some("steady"), 5);
    let requests = outcome.users.requests;
    let call = &outcome.calls[0];
    assert!(call.retries > requests / 2, "{call:?} for {requests} users");
    // Each user request is one caller request on web->db, earning a tenth of a hedge; its
    // retries earn nothing, as in the proxy, so hedges stay within a tenth of the requests
    // (where counting every attempt allowed a tenth of the attempts).
    let share = call.hedges as f64 / requests as f64;
    assert!(
        (0.09..=0.1).contains(&share),
        "{} hedges for {requests} requests",
        call.hedges
    );
}
