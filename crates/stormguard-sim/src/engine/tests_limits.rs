//! No graph, rate or duration makes a run run away: cycles and runs over a bound of
//! [`super::limits`] are refused before the first event, and a run that grows past one stops.

use std::time::Duration;

use super::limits::{self, MAX_ATTEMPTS, MAX_PENDING};
use super::model::build;
use super::tests::origin;
use super::{run, Setup, SimError};

fn graph(toml: &str) -> stormguard_graph::Graph {
    stormguard_graph::parse("limits.toml", toml).expect("test graphs parse")
}

/// Why `toml`'s run (through its scenario `day`, if it has one) is refused, under `setup`.
fn refused(toml: &str, setup: impl FnOnce(Setup<'_>) -> Setup<'_>) -> SimError {
    let graph = graph(toml);
    let setup = setup(Setup {
        scenario: graph.scenarios.get("day"),
        ..Setup::new(1, origin())
    });
    match run(&graph, &setup, &mut |_| {}) {
        Ok(outcome) => panic!("ran {} user requests", outcome.users.requests),
        Err(error) => error,
    }
}

/// Each of these once ran until it was killed (a call cycle with enough workers to keep
/// circling), or grew to gigabytes (a rate of 1e300 before rates were bounded; a count of a
/// thousand below another); each is now refused before its first event.
#[test]
fn a_call_cycle_is_refused_with_checks_message_and_the_call() {
    let cycle = r#"
[entry]
service = "a"
[services.a]
instances = 1000
concurrency = 1000
[[services.a.calls]]
to = "b"
timeout = "1h"
propagate_deadline = false
[services.b]
[[services.b.calls]]
to = "a"
count = 3
parallel = true
propagate_deadline = false
"#;
    let error = refused(cycle, |s| s);
    let SimError::CallCycle { span, call, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(call, "b -> a");
    assert_eq!(span.map(|s| (s.line, s.column)), Some((12, 1)));
    let message = error.to_string();
    assert!(
        message.contains("the calls a -> b -> a form a cycle"),
        "{message}"
    );
    assert!(message.contains("error[call-cycle]"), "{message}");
    let itself = refused(
        "[entry]\nservice = \"a\"\n[services.a]\n[[services.a.calls]]\nto = \"a\"\n",
        |s| s,
    );
    assert!(itself
        .to_string()
        .contains("the calls a -> a form a cycle of 1 service"));
}

#[test]
fn more_user_requests_than_a_run_may_bring_are_refused() {
    let error = refused(
        "[entry]\nservice = \"a\"\nrate = 1000000\n[services.a]\n",
        |s| s,
    );
    assert_eq!(
        error.to_string(),
        "60,000,000 user requests over 1m (1000000 a second) are more than the 10,000,000 one \
         run may bring: lower the rate or the duration (e.g. --duration)"
    );
}

#[test]
fn a_fan_out_of_counts_over_the_attempts_a_run_may_simulate_is_refused() {
    let fan_out = r#"
[entry]
service = "a"
rate = 1000
[services.a]
[[services.a.calls]]
to = "b"
count = 1000
[services.b]
[[services.b.calls]]
to = "c"
count = 1000
[services.c]
"#;
    let message = refused(fan_out, |s| s).to_string();
    assert!(
        message.starts_with(
            "60,000 user requests over 1m at 1,001,001 attempts each (the calls' counts, \
             without a single retry) are 60,060,060,000 attempts"
        ),
        "{message}"
    );
}

#[test]
fn a_duration_or_rate_given_in_code_is_held_to_the_files_ranges() {
    let small = "[entry]\nservice = \"a\"\n[services.a]\n";
    let long = refused(small, |s| Setup {
        duration: Some(Duration::from_secs(1_000_000 * 3600)),
        ..s
    });
    assert!(
        long.to_string()
            .starts_with("duration: 1000000h is out of range"),
        "{long}"
    );
    let fast = refused(small, |s| Setup {
        rate: Some(1e300),
        ..s
    });
    assert!(
        fast.to_string().starts_with("rate: 1e300 is out of range"),
        "{fast}"
    );
}

#[test]
fn a_timeline_or_balancers_too_large_to_keep_are_refused() {
    let mut many =
        String::from("[entry]\nservice = \"s0\"\n[scenarios.day]\nduration = \"24h\"\nrate = 0\n");
    for i in 0..200 {
        many.push_str(&format!("[services.s{i}]\n"));
    }
    let error = refused(&many, |s| s);
    assert_eq!(
        error.to_string(),
        "a timeline of 200 services over 86400 seconds is 17280000 cells, more than the \
         10000000 one run may keep: shorten the run (e.g. --duration) or simulate fewer services"
    );
    let mut fleets =
        String::from("[entry]\nservice = \"a\"\nrate = 1\n[services.a]\ninstances = 1000\n");
    for callee in ["b", "c", "d", "e", "f", "g"] {
        fleets.push_str(&format!(
            "[[services.a.calls]]\nto = \"{callee}\"\n[services.{callee}]\ninstances = 1000\n"
        ));
    }
    let error = refused(&fleets, |s| s);
    assert!(
        error
            .to_string()
            .starts_with("the calls' balancers hold 6000000 counts"),
        "{error}"
    );
}

#[test]
fn a_run_that_grows_past_a_bound_stops_and_says_where() {
    let graph = graph("[entry]\nservice = \"a\"\n[services.a]\n");
    let model = build(&graph, None, None, None).unwrap();
    let at = 12_500_000_000;
    let attempts = limits::stop(&model, MAX_ATTEMPTS + 1, 0, at).unwrap_err();
    assert!(
        attempts
            .to_string()
            .starts_with("stopped at 12500ms of virtual time, of a 1m run: 200000000 attempts"),
        "{attempts}"
    );
    let pending = limits::stop(&model, 0, MAX_PENDING + 1, at).unwrap_err();
    assert!(
        pending.to_string().contains("events pending at once"),
        "{pending}"
    );
    assert!(limits::stop(&model, MAX_ATTEMPTS, MAX_PENDING, at).is_ok());
}
