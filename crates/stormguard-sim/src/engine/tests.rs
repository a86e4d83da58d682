//! The engine against closed forms (the issue's "Proof"), and its determinism.

use std::time::{Duration, Instant};

use stormguard::estimate::LogNormal;

use super::{only_scenario, simulate, Outcome};

/// Any instant will do as virtual time's origin: the outcome depends only on differences.
#[allow(clippy::disallowed_methods)]
pub(super) fn origin() -> Instant {
    Instant::now()
}

pub(super) fn run(toml: &str, scenario: Option<&str>, seed: u64) -> Outcome {
    let graph = stormguard_graph::parse("test.toml", toml).expect("test graphs parse");
    simulate(&graph, scenario, seed, None, origin()).expect("test graphs simulate")
}

fn within(measured: f64, expected: f64, tolerance: f64) -> bool {
    ((measured - expected) / expected).abs() <= tolerance
}

/// `api` calls `leaf` with `max_attempts`, no backoff, no limiter and `call_extra`, under a
/// scenario `errors` of 100 s whose fault on `leaf` (for the whole run) is `fault`.
fn leaf_errors(max_attempts: u32, call_extra: &str, fault: &str) -> String {
    format!(
        r#"
        [entry]
        service = "api"
        timeout = "60s"
        rate = 200
        [services.api]
        [[services.api.calls]]
        to = "leaf"
        timeout = "10s"
        max_attempts = {max_attempts}
        backoff = "none"
        retry_budget = "none"
        {call_extra}
        [services.leaf]
        [scenarios.errors]
        duration = "100s"
        [[scenarios.errors.faults]]
        service = "leaf"
        from = "0s"
        to = "1000s"
        {fault}
        "#
    )
}

#[test]
fn error_rate_p_with_four_attempts_gives_the_geometric_sums() {
    let p: f64 = 0.2;
    let toml = leaf_errors(4, "", &format!("error_rate = {p}"));
    let outcome = run(&toml, Some("errors"), 7);
    let users = outcome.users.requests as f64;
    assert!(users > 19_000.0, "{users} user requests");
    let attempts = outcome.amplification("leaf").unwrap();
    let success = outcome.users.succeeded as f64 / users;
    let expected_attempts = 1.0 + p + p * p + p * p * p;
    let expected_success = 1.0 - p.powi(4);
    assert!(
        within(attempts, expected_attempts, 0.02),
        "attempts per request {attempts}, expected {expected_attempts}"
    );
    assert!(
        within(success, expected_success, 0.02),
        "success {success}, expected {expected_success}"
    );
    let call = &outcome.calls[0];
    assert_eq!(call.attempts, outcome.services["leaf"].attempts);
    assert_eq!(call.retries, call.attempts - outcome.users.requests);
}

#[test]
fn five_layers_of_three_attempts_over_a_down_service_make_243_attempts() {
    let layers = ["a", "b", "c", "d", "e", "f"];
    let mut toml = String::from(
        "[entry]\nservice = \"a\"\ntimeout = \"600s\"\nrate = 20\n\
         [scenarios.down]\nduration = \"20s\"\n\
         [[scenarios.down.faults]]\nservice = \"f\"\nfrom = \"0s\"\nto = \"10000s\"\ndown = true\n",
    );
    for pair in layers.windows(2) {
        toml += &format!(
            "[services.{0}]\n[[services.{0}.calls]]\nto = \"{1}\"\ntimeout = \"60s\"\nmax_attempts = 3\nbackoff = \"none\"\nretry_budget = \"none\"\n",
            pair[0], pair[1]
        );
    }
    toml += "[services.f]\n";
    let outcome = run(&toml, Some("down"), 3);
    let users = outcome.users.requests;
    assert!(users > 300, "{users} user requests");
    assert_eq!(outcome.users.succeeded, 0);
    for (depth, name) in layers.iter().enumerate() {
        assert_eq!(
            outcome.services[*name].attempts,
            users * 3u64.pow(depth as u32),
            "attempts at {name}"
        );
    }
    assert_eq!(outcome.amplification("f"), Some(243.0));
}

#[test]
fn one_worker_at_utilisation_0_8_waits_as_pollaczek_khinchine_says() {
    let (p50, p99) = (Duration::from_millis(1), Duration::from_millis(3));
    let model = LogNormal::fit(p50, p99).unwrap();
    let (mu, sigma) = (model.mu, model.sigma);
    let mean = (mu + sigma * sigma / 2.0).exp();
    let second_moment = (2.0 * mu + 2.0 * sigma * sigma).exp();
    let rho = 0.8;
    let rate = rho / mean;
    let customers = if cfg!(debug_assertions) {
        200_000.0
    } else {
        1_000_000.0
    };
    let seconds = (customers / rate).ceil();
    let toml = format!(
        r#"
        [entry]
        service = "server"
        timeout = "1h"
        rate = {rate}
        [services.server]
        concurrency = 1
        queue = 100000
        latency = {{ p50 = "1ms", p99 = "3ms" }}
        [scenarios.steady]
        duration = "{seconds}s"
        "#
    );
    let outcome = run(&toml, Some("steady"), 11);
    let server = &outcome.services["server"];
    assert_eq!(server.started, outcome.users.requests);
    let measured = server.queue_wait_s / server.started as f64;
    let expected = rate * second_moment / (2.0 * (1.0 - rho));
    assert!(
        within(measured, expected, 0.05),
        "mean wait {measured}, Pollaczek-Khinchine {expected}"
    );
    assert!(
        within(server.utilization, rho, 0.05),
        "utilisation {}",
        server.utilization
    );
}

const STORMY: &str = r#"
    [entry]
    service = "web"
    timeout = "2s"
    rate = 300
    [services.web]
    instances = 2
    concurrency = 64
    queue = 64
    contention = "1ms"
    [[services.web.calls]]
    to = "api"
    timeout = "300ms"
    connect_timeout = "20ms"
    max_attempts = 3
    backoff = "full-jitter(base=10ms, cap=100ms)"
    retry_budget = { ratio = 0.2, min_per_sec = 5 }
    [[services.web.calls]]
    to = "cache"
    timeout = "50ms"
    parallel = true
    required = false
    [[services.web.calls]]
    to = "api"
    timeout = "300ms"
    parallel = true
    count = 2
    max_attempts = 2
    backoff = "none"
    retry_budget = "none"
    propagate_deadline = true
    [services.api]
    instances = 3
    concurrency = 4
    queue = 8
    latency = { p50 = "5ms", p99 = "50ms" }
    [services.cache]
    [scenarios.storm]
    duration = "10s"
    [[scenarios.storm.faults]]
    service = "api"
    from = "2s"
    to = "5s"
    slowdown = 5.0
    error_rate = 0.1
    [[scenarios.storm.faults]]
    service = "cache"
    from = "3s"
    to = "4s"
    blackhole = true
    [[scenarios.storm.load]]
    from = "6s"
    to = "7s"
    rate = 900
"#;

#[test]
fn the_same_graph_scenario_and_seed_give_the_same_outcome() {
    let first = run(STORMY, Some("storm"), 42);
    assert_eq!(first, run(STORMY, Some("storm"), 42));
    assert_ne!(first, run(STORMY, Some("storm"), 43));
    // The storm really exercises the model, or the comparison would prove little.
    let api = &first.services["api"];
    assert!(
        api.rejected > 0 && api.timed_out > 0 && api.failed > 0,
        "{api:?}"
    );
    assert!(first.services["cache"].unreachable > 0);
    assert!(
        first.calls.iter().any(|c| c.retries_denied > 0),
        "{:?}",
        first.calls
    );
}

#[test]
fn abandoned_work_is_wasted_unless_the_deadline_is_propagated() {
    let graph = |propagate: bool| {
        format!(
            r#"
            [entry]
            service = "web"
            rate = 60
            [services.web]
            [[services.web.calls]]
            to = "db"
            timeout = "20ms"
            propagate_deadline = {propagate}
            [services.db]
            concurrency = 1
            queue = 1000
            latency = {{ p50 = "10ms", p99 = "60ms" }}
            [scenarios.slow]
            duration = "10s"
            "#
        )
    };
    let without = run(&graph(false), Some("slow"), 5);
    let with = run(&graph(true), Some("slow"), 5);
    let (db_without, db_with) = (&without.services["db"], &with.services["db"]);
    // Work is drawn from the same stream in both runs, so the difference is the drops alone.
    assert!(
        db_without.wasted_work_s > 0.7 * db_without.work_s,
        "{db_without:?}"
    );
    assert_eq!(db_without.dropped, 0);
    assert!(db_with.dropped > 0, "{db_with:?}");
    assert!(
        db_with.wasted_work_s < 0.6 * db_without.wasted_work_s,
        "{db_with:?}"
    );
    assert!(with.users.succeeded > without.users.succeeded);
}

#[test]
fn an_unknown_scenario_names_the_ones_there_are() {
    let graph = stormguard_graph::parse("t.toml", STORMY).unwrap();
    let error = simulate(&graph, Some("nope"), 1, None, origin()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "no scenario named \"nope\"; the file defines: storm"
    );
    let mut bare = graph.clone();
    bare.scenarios.clear();
    let error = simulate(&bare, Some("nope"), 1, None, origin()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "no scenario named \"nope\"; the file defines no scenarios; add a [scenarios.NAME] \
         table or run without --scenario"
    );
}

#[test]
fn only_a_file_of_one_scenario_has_a_default_one() {
    let graph = stormguard_graph::parse("t.toml", STORMY).unwrap();
    assert_eq!(only_scenario(&graph).map(|(name, _)| name), Some("storm"));
    let mut two = graph.clone();
    let storm = two.scenarios["storm"].clone();
    two.scenarios.insert("calm".to_string(), storm);
    assert!(only_scenario(&two).is_none(), "several: no guess");
    two.scenarios.clear();
    assert!(only_scenario(&two).is_none());
}

/// `retry_on` reaches the simulator through the policy core: a 409 is retried only where the
/// call lists it, and a call that lists only 409 no longer retries a 503.
#[test]
fn retry_on_decides_which_injected_errors_are_retried() {
    let graph = |retry_on: &str, status: u16| {
        leaf_errors(
            2,
            retry_on,
            &format!("error_rate = 0.3\nerror_status = {status}"),
        )
    };
    let figures = |retry_on: &str, status: u16| {
        let outcome = run(&graph(retry_on, status), Some("errors"), 11);
        let users = outcome.users.requests as f64;
        (
            outcome.amplification("leaf").unwrap(),
            outcome.users.succeeded as f64 / users,
        )
    };
    // By default a 409 is final: one attempt, 70% success.
    let (attempts, success) = figures("", 409);
    assert!(within(attempts, 1.0, 0.001), "{attempts}");
    assert!(within(success, 0.7, 0.03), "{success}");
    // Listed, it is retried: 1 + 0.3 attempts, 1 - 0.3^2 success.
    let (attempts, success) = figures(r#"retry_on = ["409"]"#, 409);
    assert!(within(attempts, 1.3, 0.03), "{attempts}");
    assert!(within(success, 0.91, 0.02), "{success}");
    // The list replaces the default: a 503 is no longer retried.
    let (attempts, _) = figures(r#"retry_on = ["409"]"#, 503);
    assert!(within(attempts, 1.0, 0.001), "{attempts}");
    let (attempts, _) = figures("", 503);
    assert!(within(attempts, 1.3, 0.03), "{attempts}");
}
