//! Input errors of range: values of the right type that mean nothing (zero instances, a rate
//! below zero, a fault that ends before it starts), each with its exact `line:column`.

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
        &["0 is not valid", "use 1 for no retries"],
    );
    assert_error(
        &format!("{CALL}count = 0\n"),
        7,
        9,
        "services.web.calls[0].count",
        &["0 is not valid", "use 1 or more"],
    );
    assert_error(
        &format!("{SERVICE}instances = 0\n"),
        5,
        13,
        "services.web.instances",
        &["at least 1 instance"],
    );
    assert_error(
        &format!("{SERVICE}concurrency = 0\n"),
        5,
        15,
        "services.web.concurrency",
        &["use 1 or more"],
    );
    assert_error(
        &format!("{CALL}token_bucket = {{ capacity = 0 }}\n"),
        7,
        29,
        "services.web.calls[0].token_bucket.capacity",
        &["0 is not valid", "500"],
    );
}

#[test]
fn whole_numbers_out_of_range_say_the_range_valid_for_the_key() {
    // Where 0 is refused, the range starts at 1.
    for (key, column) in [("max_attempts", 16), ("count", 9)] {
        assert_error(
            &format!("{CALL}{key} = -1\n"),
            7,
            column,
            &format!("services.web.calls[0].{key}"),
            &["expected a whole number from 1 to 4294967295"],
        );
    }
    assert_error(
        &format!("{SERVICE}concurrency = 4294967296\n"),
        5,
        15,
        "services.web.concurrency",
        &["from 1 to 4294967295"],
    );
    assert_error(
        &format!("{CALL}token_bucket = {{ capacity = -3 }}\n"),
        7,
        29,
        "services.web.calls[0].token_bucket.capacity",
        &["from 1 to 4294967295"],
    );
    // Where 0 is valid (no queue, no retry cost), from 0.
    assert_error(
        &format!("{SERVICE}queue = -1\n"),
        5,
        9,
        "services.web.queue",
        &["expected a whole number from 0 to 4294967295"],
    );
    assert_error(
        &format!("{CALL}token_bucket = {{ capacity = 10, retry_cost = -1 }}\n"),
        7,
        46,
        "services.web.calls[0].token_bucket.retry_cost",
        &["from 0 to 4294967295"],
    );
}

#[test]
fn durations_that_cannot_be_zero() {
    assert_error(
        &format!("{CALL}rtt = \"0s\"\n"),
        7,
        7,
        "services.web.calls[0].rtt",
        &["0s is not valid", "round trip", "e.g. \"1ms\""],
    );
    assert_error(
        "[entry]\nservice = \"web\"\ntimeout = \"0ms\"\n[services.web]\n",
        3,
        11,
        "entry.timeout",
        &[
            "0s is not valid",
            "a user who waits no time",
            "e.g. \"10s\"",
        ],
    );
    // A tiny but nonzero round trip is a value, not a mistake.
    let graph = parse("g.toml", &format!("{CALL}rtt = \"1ns\"\n")).unwrap();
    assert_eq!(
        graph.services["web"].calls[0].rtt,
        std::time::Duration::from_nanos(1)
    );
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
fn rates_must_be_finite_and_not_negative() {
    let entry = |rate: &str| format!("[entry]\nservice = \"web\"\nrate = {rate}\n[services.web]\n");
    assert_error(
        &entry("-5"),
        3,
        8,
        "entry.rate",
        &["rate -5 is not valid", "a finite number >= 0"],
    );
    assert_error(&entry("nan"), 3, 8, "entry.rate", &["rate NaN"]);
    assert_error(&entry("inf"), 3, 8, "entry.rate", &["rate inf"]);
    let scenario = |body: &str| FAULT.replace("[[scenarios.s.faults]]\n", body);
    assert_error(
        &scenario("rate = -1.5\n"),
        7,
        8,
        "scenarios.s.rate",
        &["rate -1.5"],
    );
    assert_error(
        &scenario("[[scenarios.s.load]]\nfrom = \"1s\"\nto = \"2s\"\nrate = -inf\n"),
        10,
        8,
        "scenarios.s.load[0].rate",
        &["rate -inf"],
    );
}

#[test]
fn budget_ratios_outside_0_to_1000() {
    for (ratio, column) in [("1500", 26), ("-0.1", 26), ("nan", 26)] {
        assert_error(
            &format!("{CALL}retry_budget = {{ ratio = {ratio} }}\n"),
            7,
            column,
            "services.web.calls[0].retry_budget.ratio",
            &["ratio must be a finite number between 0 and 1000"],
        );
    }
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
        &["from 0 to 1"],
    );
    assert_error(
        &fault("error_rate = -0.1"),
        11,
        14,
        "scenarios.s.faults[0].error_rate",
        &["-0.1 is not valid"],
    );
    assert_error(
        &fault("slowdown = 0.0"),
        11,
        12,
        "scenarios.s.faults[0].slowdown",
        &["above 0"],
    );
    assert_error(
        &fault("slowdown = -2"),
        11,
        12,
        "scenarios.s.faults[0].slowdown",
        &["-2 is not valid"],
    );
    assert_error(
        &fault("instances = 0"),
        11,
        13,
        "scenarios.s.faults[0].instances",
        &["web has 2 instance(s); use 1 to 2"],
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
        &["p50 is 0s"],
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
        &["0.5 is not valid", "at least 1"],
    );
    assert_error(
        &check("connect_timeout_rtt_multiple = inf"),
        6,
        32,
        "check.connect_timeout_rtt_multiple",
        &["inf is not valid"],
    );
    assert_error(
        &check("false_timeout_rate = 1.0"),
        6,
        22,
        "check.false_timeout_rate",
        &["strictly between 0 and 1"],
    );
}
