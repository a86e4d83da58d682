//! Input errors of range: values of the right type that mean nothing (zero instances, a rate
//! below zero or of 1e300, a timeout of a year, a fault that ends before it starts), each with
//! its exact `line:column`, the key, and the range of `super::ranges` with why.

use super::parse;
use super::tests_errors::{assert_error, CALL, FAULT, SERVICE};

#[test]
fn a_call_takes_one_limiter() {
    assert_error(
        &format!("{CALL}retry_budget = {{ ratio = 0.1 }}\ntoken_bucket = {{ capacity = 10 }}\n"),
        8,
        16,
        "services.web.calls[0].token_bucket",
        &["retry_budget or token_bucket, not both"],
    );
    assert_error(
        &format!("{CALL}token_bucket = {{ capacity = 10 }}\nretry_budget = {{ ratio = 0.1 }}\n"),
        8,
        16,
        "services.web.calls[0].retry_budget",
        &["not both"],
    );
}

#[test]
fn counts_that_cannot_be_zero() {
    assert_error(
        &format!("{CALL}max_attempts = 0\n"),
        7,
        16,
        "services.web.calls[0].max_attempts",
        &[
            "0 is out of range",
            "use 1 for no retries",
            "max_attempts is 1 to 100",
        ],
    );
    assert_error(
        &format!("{CALL}count = 0\n"),
        7,
        9,
        "services.web.calls[0].count",
        &[
            "0 is out of range",
            "no call; remove it",
            "a call's count is 1 to 1000",
        ],
    );
    assert_error(
        &format!("{SERVICE}instances = 0\n"),
        5,
        13,
        "services.web.instances",
        &["serves nothing", "a service's instances is 1 to 1000"],
    );
    assert_error(
        &format!("{SERVICE}concurrency = 0\n"),
        5,
        15,
        "services.web.concurrency",
        &["an instance's concurrency is 1 to 100000"],
    );
    assert_error(
        &format!("{CALL}token_bucket = {{ capacity = 0 }}\n"),
        7,
        29,
        "services.web.calls[0].token_bucket.capacity",
        &["0 is out of range", "never allows a retry", "1 to 1000000"],
    );
}

#[test]
fn whole_numbers_out_of_range_say_the_range_valid_for_the_key() {
    // A number that is not even of the key's type (negative, too large for 32 bits) is refused
    // by serde, with the key's own range.
    for (key, column, range) in [("max_attempts", 16, "1 to 100"), ("count", 9, "1 to 1000")] {
        assert_error(
            &format!("{CALL}{key} = -1\n"),
            7,
            column,
            &format!("services.web.calls[0].{key}"),
            &[&format!("expected a whole number from {range}")],
        );
    }
    assert_error(
        &format!("{SERVICE}concurrency = 4294967296\n"),
        5,
        15,
        "services.web.concurrency",
        &["from 1 to 100000"],
    );
    assert_error(
        &format!("{CALL}token_bucket = {{ capacity = -3 }}\n"),
        7,
        29,
        "services.web.calls[0].token_bucket.capacity",
        &["from 1 to 1000000"],
    );
    // Where 0 is valid (no queue, no retry cost), from 0.
    assert_error(
        &format!("{SERVICE}queue = -1\n"),
        5,
        9,
        "services.web.queue",
        &["expected a whole number from 0 to 1000000"],
    );
    assert_error(
        &format!("{CALL}token_bucket = {{ capacity = 10, retry_cost = -1 }}\n"),
        7,
        46,
        "services.web.calls[0].token_bucket.retry_cost",
        &["from 0 to 1000000"],
    );
    // One of the type but out of range: refused at the value with the range and why.
    assert_error(
        &format!("{CALL}count = 1001\n"),
        7,
        9,
        "services.web.calls[0].count",
        &[
            "1001 is out of range",
            "model the batch as one call",
            "1 to 1000",
        ],
    );
    assert_error(
        &format!("{SERVICE}queue = 1000001\n"),
        5,
        9,
        "services.web.queue",
        &["1000001 is out of range", "a queue is 0 to 1000000"],
    );
    assert_error(
        &format!("{CALL}retry_budget = {{ min_per_sec = 10001 }}\n"),
        7,
        32,
        "services.web.calls[0].retry_budget.min_per_sec",
        &["a budget's min_per_sec is 0 to 10000"],
    );
}

#[test]
fn durations_that_cannot_be_zero() {
    assert_error(
        &format!("{CALL}rtt = \"0s\"\n"),
        7,
        7,
        "services.web.calls[0].rtt",
        &["0s is out of range", "a latency or round trip is 1us to 1h"],
    );
    assert_error(
        "[entry]\nservice = \"web\"\ntimeout = \"0ms\"\n[services.web]\n",
        3,
        11,
        "entry.timeout",
        &[
            "0s is out of range",
            "fires before any network answers",
            "a timeout is 1ms to 1h",
        ],
    );
    // The same rule for a call's timeout and the entry's (once a call's 0ms was accepted).
    for key in ["timeout", "request_timeout", "connect_timeout"] {
        assert_error(
            &format!("{CALL}{key} = \"0ms\"\n"),
            7,
            key.len() + 4,
            &format!("services.web.calls[0].{key}"),
            &["0s is out of range", "a timeout is 1ms to 1h"],
        );
    }
    // A tiny but nonzero round trip is a value, not a mistake.
    let graph = parse("g.toml", &format!("{CALL}rtt = \"1us\"\n")).unwrap();
    assert_eq!(
        graph.services["web"].calls[0].rtt,
        std::time::Duration::from_micros(1)
    );
}

/// Every duration is bounded above: a value of a year parsed once, then overflowed a clock.
#[test]
fn durations_too_long_to_mean_anything() {
    for (key, column) in [
        ("timeout", 11),
        ("request_timeout", 19),
        ("connect_timeout", 19),
    ] {
        assert_error(
            &format!("{CALL}{key} = \"5000000000000000h\"\n"),
            7,
            column,
            &format!("services.web.calls[0].{key}"),
            &[
                "5000000000000000h is out of range",
                "a job, not a call",
                "1ms to 1h",
            ],
        );
    }
    assert_error(
        &format!("{CALL}timeout = \"3600000000001ns\"\n"),
        7,
        11,
        "services.web.calls[0].timeout",
        &["3600000000001ns is out of range"],
    );
    assert!(parse("g.toml", &format!("{CALL}timeout = \"1h\"\n")).is_ok());
    assert_error(
        &format!("{CALL}backoff = \"constant(5000000000000000h)\"\n"),
        7,
        11,
        "services.web.calls[0].backoff",
        &[
            "delay 5000000000000000h in `constant` is out of range",
            "1ms to 1h",
        ],
    );
    assert_error(
        &format!("{CALL}hedge = {{ delay = \"2h\" }}\n"),
        7,
        19,
        "services.web.calls[0].hedge.delay",
        &["hedge delay 2h is out of range", "1ms to 1h"],
    );
    assert_error(
        &format!("{SERVICE}latency = {{ p50 = \"1ms\", p99 = \"2h\" }}\n"),
        5,
        32,
        "services.web.latency.p99",
        &["2h is out of range", "1us to 1h"],
    );
    assert_error(
        &format!("{SERVICE}contention = \"2h\"\n"),
        5,
        14,
        "services.web.contention",
        &["an added delay is 0s to 1h"],
    );
    assert_error(
        "[entry]\nservice = \"web\"\n[services.web]\n[scenarios.s]\nduration = \"25h\"\n",
        5,
        12,
        "scenarios.s.duration",
        &["25h is out of range", "a simulated run is 1s to 24h"],
    );
    assert_error(
        &format!("{FAULT}service = \"web\"\nfrom = \"1s\"\nto = \"1000000h\"\n"),
        10,
        6,
        "scenarios.s.faults[0].to",
        &["a time in a scenario is 0s to 24h"],
    );
}

/// Zero means "no wait" in one spelling only: `none`, for every backoff kind alike.
#[test]
fn a_zero_backoff_is_refused_for_every_kind() {
    for (text, key) in [
        ("constant(0ms)", "delay"),
        ("full-jitter(base=0ms, cap=1s)", "base"),
        ("exponential(base=0ms, cap=1s)", "base"),
    ] {
        assert_error(
            &format!("{CALL}backoff = \"{text}\"\n"),
            7,
            11,
            "services.web.calls[0].backoff",
            &[&format!("{key} 0s in"), "write `none` to retry at once"],
        );
    }
}

#[test]
fn token_bucket_costs_fit_the_capacity() {
    assert_error(
        &format!("{CALL}token_bucket = {{ capacity = 10, retry_cost = 11 }}\n"),
        7,
        46,
        "services.web.calls[0].token_bucket.retry_cost",
        &["11 is above the capacity 10", "use at most 10"],
    );
    assert_error(
        &format!("{CALL}token_bucket = {{ capacity = 8, retry_cost = 1 }}\n"),
        7,
        29,
        "services.web.calls[0].token_bucket.capacity",
        &["below the default timeout_cost 10"],
    );
}

#[test]
fn rates_must_be_finite_and_at_most_a_million() {
    let entry = |rate: &str| format!("[entry]\nservice = \"web\"\nrate = {rate}\n[services.web]\n");
    assert_error(
        &entry("-5"),
        3,
        8,
        "entry.rate",
        &[
            "-5 is out of range",
            "never negative",
            "a rate is 0 to 1000000",
        ],
    );
    assert_error(&entry("nan"), 3, 8, "entry.rate", &["NaN (not a number)"]);
    assert_error(&entry("inf"), 3, 8, "entry.rate", &["inf is out of range"]);
    assert_error(
        &entry("1e300"),
        3,
        8,
        "entry.rate",
        &["1e300 is out of range", "`sim`'s work grows with it"],
    );
    let scenario = |body: &str| FAULT.replace("[[scenarios.s.faults]]\n", body);
    assert_error(
        &scenario("rate = -1.5\n"),
        7,
        8,
        "scenarios.s.rate",
        &["-1.5 is out of range"],
    );
    assert_error(
        &scenario("[[scenarios.s.load]]\nfrom = \"1s\"\nto = \"2s\"\nrate = -inf\n"),
        10,
        8,
        "scenarios.s.load[0].rate",
        &["-inf is out of range"],
    );
}

/// A ratio is retries per request: above 1, retries could outnumber the requests (it was
/// accepted up to 1000 once).
#[test]
fn budget_ratios_outside_0_to_1() {
    for ratio in ["1500", "1.01", "-0.1", "nan"] {
        assert_error(
            &format!("{CALL}retry_budget = {{ ratio = {ratio} }}\n"),
            7,
            26,
            "services.web.calls[0].retry_budget.ratio",
            &["a retry budget's ratio is 0 to 1"],
        );
    }
    assert!(parse(
        "g.toml",
        &format!("{CALL}retry_budget = {{ ratio = 1.0 }}\n")
    )
    .is_ok());
}

#[test]
fn fault_values_out_of_range() {
    let fault =
        |extra: &str| format!("{FAULT}service = \"web\"\nfrom = \"1s\"\nto = \"2s\"\n{extra}\n");
    assert_error(
        &fault("error_rate = 1.5"),
        11,
        14,
        "scenarios.s.faults[0].error_rate",
        &["1.5 is out of range", "a share is 0 to 1"],
    );
    assert_error(
        &fault("error_rate = -0.1"),
        11,
        14,
        "scenarios.s.faults[0].error_rate",
        &["-0.1 is out of range"],
    );
    assert_error(
        &fault("slowdown = 0.0"),
        11,
        12,
        "scenarios.s.faults[0].slowdown",
        &["a slowdown is above 0, at most 1000"],
    );
    assert_error(
        &fault("slowdown = -2"),
        11,
        12,
        "scenarios.s.faults[0].slowdown",
        &["-2 is out of range"],
    );
    assert_error(
        &fault("instances = 0"),
        11,
        13,
        "scenarios.s.faults[0].instances",
        &["0 is out of range", "1 to 1000"],
    );
    assert_error(
        &fault("instances = 3"),
        11,
        13,
        "scenarios.s.faults[0].instances",
        &["3 is not valid"],
    );
}

#[test]
fn windows_end_after_they_start() {
    assert_error(
        &format!("{FAULT}service = \"web\"\nfrom = \"45s\"\nto = \"30s\"\n"),
        10,
        6,
        "scenarios.s.faults[0].to",
        &["30s is not after from 45s", "use to > from"],
    );
    assert_error(
        &format!("{FAULT}service = \"web\"\nfrom = \"5s\"\nto = \"5s\"\n"),
        10,
        6,
        "scenarios.s.faults[0].to",
        &["5s is not after from 5s"],
    );
    let load = FAULT.replace(
        "[[scenarios.s.faults]]\n",
        "[[scenarios.s.load]]\nfrom = \"9s\"\nto = \"1s\"\nrate = 5\n",
    );
    assert_error(
        &load,
        9,
        6,
        "scenarios.s.load[0].to",
        &["a load step ends after it starts"],
    );
    assert_error(
        &format!("{FAULT}service = \"web\"\nto = \"5s\"\n"),
        7,
        1,
        "scenarios.s.faults[0].from",
        &["missing"],
    );
    let no_rate = FAULT.replace(
        "[[scenarios.s.faults]]\n",
        "[[scenarios.s.load]]\nfrom = \"1s\"\nto = \"2s\"\n",
    );
    assert_error(
        &no_rate,
        7,
        1,
        "scenarios.s.load[0].rate",
        &["missing", "rate = 600"],
    );
}

#[test]
fn latencies_that_no_lognormal_fits() {
    let latency = |value: &str| format!("{SERVICE}latency = {value}\n");
    assert_error(
        &latency("{ p50 = \"40ms\", p99 = \"5ms\" }"),
        5,
        33,
        "services.web.latency.p99",
        &["p99 5ms is below p50 40ms", "use p99 >= p50"],
    );
    assert_error(
        &latency("{ p50 = \"0s\", p99 = \"5ms\" }"),
        5,
        19,
        "services.web.latency.p50",
        &["0s is out of range", "in under a microsecond"],
    );
    assert_error(
        &latency("{ p50 = \"4ms\" }"),
        5,
        11,
        "services.web.latency.p99",
        &["missing", "give both"],
    );
    assert!(parse("g.toml", &latency("{ p50 = \"4ms\", p99 = \"4ms\" }")).is_ok());
}

#[test]
fn check_thresholds_out_of_range() {
    let check = |line: &str| format!("{SERVICE}[check]\n{line}\n");
    assert_error(
        &check("max_amplification = 0.5"),
        6,
        21,
        "check.max_amplification",
        &["0.5 is out of range", "max_amplification is 1 to 1000000"],
    );
    assert_error(
        &check("connect_timeout_rtt_multiple = inf"),
        6,
        32,
        "check.connect_timeout_rtt_multiple",
        &["inf is out of range", "1 to 1000"],
    );
    assert_error(
        &check("false_timeout_rate = 1.0"),
        6,
        22,
        "check.false_timeout_rate",
        &["above 0, below 1"],
    );
}
