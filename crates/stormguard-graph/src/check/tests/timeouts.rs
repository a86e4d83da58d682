//! Each timeout rule, firing and not.

use stormguard::estimate::LogNormal;

use super::*;
use crate::report::Severity;

#[test]
fn missing_timeout_fires_without_one_and_names_a_timeout_covering_the_callee() {
    let report = Builder::new("a")
        .service("b", |s| s.latency = fixed_latency(7))
        .call("a", "b", |c| c.connect_timeout = Some(ms(5)))
        .call("a", "c", timed(100))
        .check();
    let finding = only(&report, "missing-timeout");
    assert_eq!(place(finding), "a->b");
    assert_eq!(finding.severity, Severity::Error);
    // max(b's worst case 7 ms, its p99.9 7 ms + 1 ms round trip).
    assert_eq!(finding.fix, "timeout = \"8ms\"");
}

#[test]
fn missing_connect_timeout_fires_without_one_only() {
    let report = Builder::new("a")
        .call("a", "b", |c| c.timeout = Some(ms(100)))
        .call("a", "c", timed(100))
        .check();
    let finding = only(&report, "missing-connect-timeout");
    assert_eq!(place(finding), "a->b");
    assert_eq!(finding.severity, Severity::Warning);
    assert_eq!(finding.fix, "connect_timeout = \"3ms\"");
}

#[test]
fn connect_timeout_below_rtt_fires_at_or_below_one_round_trip() {
    let report = Builder::new("a")
        .call("a", "b", |c| {
            timed(100)(c);
            c.connect_timeout = Some(ms(1));
        })
        .call("a", "c", |c| {
            timed(100)(c);
            c.connect_timeout = Some(ms(2));
        })
        .check();
    let finding = only(&report, "connect-timeout-below-rtt");
    assert_eq!(place(finding), "a->b");
    assert_eq!((finding.value, finding.limit), (Some(1.0), Some(1.0)));
    assert_eq!(finding.fix, "connect_timeout = \"3ms\"");
}

#[test]
fn connect_timeout_too_long_fires_above_the_configured_multiple() {
    let graph = |multiple: f64| {
        Builder::new("a")
            .call("a", "b", |c| {
                timed(100)(c);
                c.connect_timeout = Some(ms(11));
            })
            .call("a", "c", |c| {
                timed(100)(c);
                c.connect_timeout = Some(ms(10));
            })
            .config(|k| k.connect_timeout_rtt_multiple = multiple)
            .check()
    };
    let report = graph(10.0);
    let finding = only(&report, "connect-timeout-too-long");
    assert_eq!(place(finding), "a->b");
    assert_eq!((finding.value, finding.limit), (Some(11.0), Some(10.0)));
    assert!(fired(&graph(20.0), "connect-timeout-too-long").is_empty());
}

fn inversion(timeout: u64, propagate: bool) -> Report {
    // b may work 1 ms + (5 + 100) ms = 106 ms.
    Builder::new("a")
        .service("b", |s| s.latency = fixed_latency(1))
        .call("a", "b", |c| {
            timed(timeout)(c);
            c.propagate_deadline = propagate;
        })
        .call("b", "c", timed(100))
        .check()
}

#[test]
fn timeout_inversion_fires_when_the_callee_outlasts_the_timeout() {
    let report = inversion(50, false);
    let finding = only(&report, "timeout-inversion");
    assert_eq!(place(finding), "a->b");
    assert_eq!(finding.severity, Severity::Error);
    assert!(approx(finding.value.unwrap(), 106.0));
    assert_eq!(finding.limit, Some(50.0));
    assert!(finding.message.contains("106ms"), "{}", finding.message);
    assert!(finding.fix.contains("propagate_deadline = true"));
    assert!(fired(&inversion(200, false), "timeout-inversion").is_empty());
}

#[test]
fn timeout_inversion_is_info_when_the_deadline_is_propagated() {
    let report = inversion(50, true);
    assert_eq!(only(&report, "timeout-inversion").severity, Severity::Info);
    assert_eq!(report.summary.infos, 1);
}

#[test]
fn entry_budget_fires_when_the_entry_outlasts_the_user() {
    let graph = |budget: u64| {
        Builder::new("web")
            .call("web", "api", timed(200))
            .entry(|e| e.timeout = ms(budget))
            .check()
    };
    let report = graph(100);
    let finding = only(&report, "entry-budget");
    assert_eq!(place(finding), "web");
    assert_eq!(finding.limit, Some(100.0));
    assert!(finding.value.unwrap() > 205.0);
    assert!(
        finding.fix.contains("web -> api (205ms)"),
        "{}",
        finding.fix
    );
    assert!(fired(&graph(1000), "entry-budget").is_empty());
}

fn below_latency(timeout: u64) -> Report {
    Builder::new("a")
        .service("b", |s| {
            s.latency = Latency {
                p50: ms(4),
                p99: ms(40),
            }
        })
        .call("a", "b", timed(timeout))
        .check()
}

#[test]
fn timeout_below_latency_reports_the_false_timeout_rate_and_a_timeout_that_keeps_to_it() {
    let fit = LogNormal::fit(ms(4), ms(40)).unwrap();
    let report = below_latency(40);
    let finding = only(&report, "timeout-below-latency");
    assert_eq!(place(finding), "a->b");
    // An attempt leaves 40 - 1 ms for b's work: just over the p99's 1%.
    assert!(approx(finding.value.unwrap(), fit.exceedance(ms(39))));
    assert!((0.0101..0.0115).contains(&finding.value.unwrap()));
    assert_eq!(finding.limit, Some(0.001));
    let fixed = (fit.quantile(0.999).as_secs_f64() * 1000.0 + 1.0).ceil() as u64;
    assert_eq!(fixed, 87);
    assert_eq!(finding.fix, "timeout = \"87ms\"");
    assert!(fired(&below_latency(fixed), "timeout-below-latency").is_empty());
    assert_eq!(
        fired(&below_latency(fixed - 1), "timeout-below-latency"),
        ["a->b"]
    );
}

#[test]
fn same_timeout_everywhere_fires_once_per_value_shared_across_depths() {
    let report = Builder::new("a")
        .call("a", "b", timed(1000))
        .call("b", "c", timed(500))
        .call("c", "d", timed(1000))
        .call("d", "e", timed(1000))
        .check();
    let finding = only(&report, "same-timeout-everywhere");
    assert_eq!(place(finding), "a->b");
    assert_eq!(finding.value, Some(3.0));
    assert!(finding.message.contains("(0, 2, 3)"), "{}", finding.message);
    assert!(finding
        .fix
        .contains("1s from depth 0, 500ms from depth 2, 250ms from depth 3"));
}

#[test]
fn same_timeout_everywhere_needs_three_calls_and_two_depths() {
    let one_depth = Builder::new("a")
        .call("a", "b", timed(1000))
        .call("a", "c", timed(1000))
        .call("a", "d", timed(1000))
        .check();
    assert!(fired(&one_depth, "same-timeout-everywhere").is_empty());
    let two_calls = Builder::new("a")
        .call("a", "b", timed(1000))
        .call("b", "c", timed(1000))
        .check();
    assert!(fired(&two_calls, "same-timeout-everywhere").is_empty());
}
