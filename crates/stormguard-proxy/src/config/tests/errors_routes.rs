//! Refusals inside `[[routes]]`: names, upstreams, timeouts and the policy core's values, each
//! at its exact `line:column` (MINIMAL's lines 1-6, so the appended key is on line 7).

use super::*;

#[test]
fn a_route_needs_a_unique_name() {
    assert_error(
        "[upstreams.api]\ninstances = [\"a:1\"]\n[[routes]]\nupstream = \"api\"\n",
        3,
        1,
        "routes[0].name",
        &["missing: name the route"],
    );
    assert_error(
        "[upstreams.api]\ninstances = [\"a:1\"]\n[[routes]]\nname = \"\"\nupstream = \"api\"\n",
        4,
        8,
        "routes[0].name",
        &["an empty name cannot label metrics"],
    );
    assert_error(
        &format!("{MINIMAL}[[routes]]\nupstream = \"api\"\ntimeout = \"1s\"\nname = \"api\"\n"),
        10,
        8,
        "routes[1].name",
        &["route name \"api\" is already used by routes[0]"],
    );
}

#[test]
fn a_route_names_a_known_upstream() {
    const UPSTREAMS: &str = "[upstreams.api]\ninstances = [\"a:1\"]\n\
                             [upstreams.web]\ninstances = [\"b:1\"]\n";
    assert_error(
        &format!("{UPSTREAMS}[[routes]]\nname = \"x\"\n"),
        5,
        1,
        "routes[0].upstream",
        &["missing: name the upstream this route sends to; known upstreams: api, web"],
    );
    assert_error(
        &format!("{UPSTREAMS}[[routes]]\nname = \"x\"\nupstream = \"apu\"\n"),
        7,
        12,
        "routes[0].upstream",
        &["unknown upstream \"apu\": there is no [upstreams.apu]; known upstreams: api, web"],
    );
}

#[test]
fn timeouts_are_nonzero_and_connecting_fits_in_an_attempt() {
    assert_error(
        &format!("{UNTIMED}timeout = \"0s\"\n"),
        6,
        11,
        "routes[0].timeout",
        &["0s is out of range", "a timeout is 1ms to 1h"],
    );
    assert_error(
        &format!("{MINIMAL}connect_timeout = \"0ms\"\n"),
        7,
        19,
        "routes[0].connect_timeout",
        &["0s is out of range", "a timeout is 1ms to 1h"],
    );
    assert_error(
        &format!("{UNTIMED}timeout = \"1s\"\nconnect_timeout = \"2s\"\n"),
        7,
        19,
        "routes[0].connect_timeout",
        &["connect_timeout 2s is above timeout 1s", "use at most 1s"],
    );
    // A hedge that waits out the attempt's timeout never sends its copy: the same reader
    // refuses it here as in a graph file.
    assert_error(
        &format!("{UNTIMED}timeout = \"1s\"\nhedge = {{ delay = \"2s\" }}\n"),
        7,
        9,
        "routes[0].hedge.delay",
        &["2s is not below timeout 1s", "would never fire"],
    );
    assert_error(
        &format!("{MINIMAL}deadline_reserve = 5\n"),
        7,
        20,
        "routes[0].deadline_reserve",
        &["the bare number 5 is not a duration"],
    );
    assert_error(
        &format!("{MINIMAL}retry_body_limit = \"1.5MiB\"\n"),
        7,
        20,
        "routes[0].retry_body_limit",
        &["fractions are not accepted"],
    );
}

#[test]
fn attempts_and_backoff_use_the_core_rules() {
    assert_error(
        &format!("{MINIMAL}max_attempts = 0\n"),
        7,
        16,
        "routes[0].max_attempts",
        &["0 is out of range", "use 1 for no retries"],
    );
    assert_error(
        &format!("{MINIMAL}max_attempts = -1\n"),
        7,
        16,
        "routes[0].max_attempts",
        &["expected a whole number from 1 to 100"],
    );
    assert_error(
        &format!("{MINIMAL}backoff = \"jitter\"\n"),
        7,
        11,
        "routes[0].backoff",
        &["unknown backoff kind \"jitter\"; valid forms: none,"],
    );
}

#[test]
fn limiters_use_the_core_rules() {
    assert_error(
        &format!("{MINIMAL}retry_budget = {{}}\ntoken_bucket = {{}}\n"),
        8,
        16,
        "routes[0].token_bucket",
        &["a route takes retry_budget or token_bucket, not both: keep one"],
    );
    assert_error(
        &format!("{MINIMAL}retry_budget = {{ ratio = -0.5 }}\n"),
        7,
        26,
        "routes[0].retry_budget.ratio",
        &["-0.5 is out of range", "a retry budget's ratio is 0 to 1"],
    );
    assert_error(
        &format!("{MINIMAL}token_bucket = {{ capacity = 0 }}\n"),
        7,
        29,
        "routes[0].token_bucket.capacity",
        &["0 is out of range", "never allows a retry"],
    );
    assert_error(
        &format!("{MINIMAL}token_bucket = {{ capacity = 10, retry_cost = 11 }}\n"),
        7,
        46,
        "routes[0].token_bucket.retry_cost",
        &["retry_cost must be at most the capacity 10, got 11"],
    );
    // The default timeout cost (10) does not fit a capacity of 8: the capacity is at fault.
    assert_error(
        &format!("{MINIMAL}token_bucket = {{ capacity = 8, retry_cost = 1 }}\n"),
        7,
        29,
        "routes[0].token_bucket.capacity",
        &["timeout_retry_cost must be at most the capacity 8, got 10"],
    );
}

#[test]
fn hedges_use_the_core_rules() {
    assert_error(
        &format!("{MINIMAL}hedge = {{ max_extra = 0.1 }}\n"),
        7,
        9,
        "routes[0].hedge.delay",
        &["missing: say when to send the hedge"],
    );
    assert_error(
        &format!("{MINIMAL}hedge = {{ delay = \"p100\" }}\n"),
        7,
        19,
        "routes[0].hedge.delay",
        &["invalid hedge delay \"p100\""],
    );
    assert_error(
        &format!("{MINIMAL}hedge = {{ delay = \"p95\", max_extra = 2.0 }}\n"),
        7,
        38,
        "routes[0].hedge.max_extra",
        &["2 is out of range", "a hedge's max_extra is 0 to 1"],
    );
    assert_error(
        &format!("{MINIMAL}idempotent = false\nhedge = {{ delay = \"p95\" }}\n"),
        7,
        14,
        "routes[0].idempotent",
        &[
            "a route with idempotent = false takes no hedge",
            "remove hedge, or remove idempotent = false if running a request twice is safe",
        ],
    );
}

#[test]
fn a_deadline_reserve_of_the_whole_request_timeout_is_refused() {
    // A review: "3s" for "3ms" validated and reloaded into a route that answered every request
    // 504 without an attempt.
    assert_error(
        &format!("{MINIMAL}request_timeout = \"3s\"\ndeadline_reserve = \"3s\"\n"),
        8,
        20,
        "routes[0].deadline_reserve",
        &[
            "3s is all of the route's request_timeout (3s) or more",
            "no attempt would ever start",
        ],
    );
    // Less than all of it is a reserve, however large; without a request_timeout the deadline
    // comes with each request.
    config(&format!(
        "{MINIMAL}request_timeout = \"3s\"\ndeadline_reserve = \"2s\"\n"
    ));
    config(&format!("{MINIMAL}deadline_reserve = \"3s\"\n"));
}

#[test]
fn adaptive_timeouts_use_the_core_rules_within_the_timeout() {
    assert_error(
        &format!("{MINIMAL}adaptive_timeout = {{ false_timeout_rate = 0.9 }}\n"),
        7,
        43,
        "routes[0].adaptive_timeout.false_timeout_rate",
        &["0.9 is out of range", "above 0, at most 0.5"],
    );
    assert_error(
        &format!("{MINIMAL}adaptive_timeout = {{ min = \"0s\" }}\n"),
        7,
        28,
        "routes[0].adaptive_timeout.min",
        &["0s is out of range", "a timeout is 1ms to 1h"],
    );
    assert_error(
        &format!("{MINIMAL}adaptive_timeout = {{ min = \"3s\", max = \"2s\" }}\n"),
        7,
        28,
        "routes[0].adaptive_timeout.min",
        &["minimum timeout 3s is above maximum 2s"],
    );
    assert_error(
        &format!("{UNTIMED}timeout = \"1s\"\nadaptive_timeout = {{ max = \"2s\" }}\n"),
        7,
        28,
        "routes[0].adaptive_timeout.max",
        &[
            "max 2s is above the route's timeout 1s",
            "use a max of at most 1s",
        ],
    );
}

#[test]
fn matches_are_paths_and_host_names() {
    assert_error(
        &format!("{MINIMAL}match = {{ path_prefix = \"api\" }}\n"),
        7,
        25,
        "routes[0].match.path_prefix",
        &["\"api\" does not start with '/'"],
    );
    assert_error(
        &format!("{MINIMAL}match = {{ host = \"api.internal:8080\" }}\n"),
        7,
        18,
        "routes[0].match.host",
        &["is not a host name", "compared without port and case"],
    );
}

#[test]
fn faults_are_shares_and_final_statuses() {
    assert_error(
        &format!("{MINIMAL}fault = {{}}\n"),
        7,
        9,
        "routes[0].fault",
        &["a fault with neither delay nor abort_status does nothing"],
    );
    assert_error(
        &format!("{MINIMAL}fault = {{ delay_percent = 5.0, abort_status = 500 }}\n"),
        7,
        27,
        "routes[0].fault.delay_percent",
        &["delay_percent without delay"],
    );
    assert_error(
        &format!("{MINIMAL}fault = {{ delay = \"1s\", delay_percent = 150.0 }}\n"),
        7,
        41,
        "routes[0].fault.delay_percent",
        &["150 is out of range", "a percentage is 0 to 100"],
    );
    assert_error(
        &format!("{MINIMAL}fault = {{ abort_status = 503, abort_percent = -1.0 }}\n"),
        7,
        47,
        "routes[0].fault.abort_percent",
        &["-1 is out of range"],
    );
    for status in ["100", "199", "600", "-503"] {
        assert_error(
            &format!("{MINIMAL}fault = {{ abort_status = {status} }}\n"),
            7,
            26,
            "routes[0].fault.abort_status",
            &[
                &format!("{status} is out of range"),
                "an abort's status is 200 to 599",
            ],
        );
    }
    assert_error(
        &format!("{MINIMAL}fault = {{ delay = 200 }}\n"),
        7,
        19,
        "routes[0].fault.delay",
        &["the bare number 200 is not a duration"],
    );
}

#[test]
fn a_fault_while_faults_are_off_is_kept_and_inert() {
    // `[faults] enabled = false` is the kill switch: flipping it must never make a file invalid.
    let config = config(&format!("{MINIMAL}fault = {{ abort_status = 503 }}\n"));
    assert!(!config.faults.enabled);
    assert!(config.routes[0].fault.is_some());
}

#[test]
fn latency_buckets_are_durations_in_range_and_few() {
    let read = config(&format!(
        "{MINIMAL}latency_buckets = [\"300ms\", \"1.5s\"]\n"
    ));
    assert_eq!(
        read.routes[0].latency_buckets,
        [
            std::time::Duration::from_millis(300),
            std::time::Duration::from_millis(1500)
        ]
    );
    assert!(config(MINIMAL).routes[0].latency_buckets.is_empty());
    assert_error(
        &format!("{MINIMAL}latency_buckets = [\"300ms\", \"0s\"]\n"),
        7,
        29,
        "routes[0].latency_buckets",
        &["a latency or round trip"],
    );
    let many: Vec<String> = (1..=17).map(|ms| format!("\"{ms}ms\"")).collect();
    assert_error(
        &format!("{MINIMAL}latency_buckets = [{}]\n", many.join(", ")),
        7,
        19,
        "routes[0].latency_buckets",
        &["17 bounds, and at most 16 are taken"],
    );
}
