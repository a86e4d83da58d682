//! Cycles: reported once per closing call, left out of the figures, never a hang.

use super::*;

#[test]
fn a_cycle_is_reported_on_its_closing_call_and_left_out_of_the_figures() {
    let report = Builder::new("a")
        .call("a", "b", |c| c.max_attempts = 2)
        .call("b", "c", |c| c.max_attempts = 2)
        .call("c", "a", |c| c.max_attempts = 2)
        .call("c", "d", |_| {})
        .check();
    let finding = only(&report, "call-cycle");
    assert_eq!(place(finding), "c->a");
    assert!(
        finding.message.contains("a -> b -> c -> a"),
        "{}",
        finding.message
    );
    assert_eq!(finding.value, Some(3.0));
    assert_eq!(report.services["a"].amplification, 1.0);
    assert_eq!(report.services["d"].amplification, 4.0);
    assert_eq!(report.services["d"].depth, 3);
}

#[test]
fn a_service_calling_itself_is_a_cycle() {
    let report = Builder::new("a").call("a", "a", timed(100)).check();
    let finding = only(&report, "call-cycle");
    assert_eq!(place(finding), "a->a");
    assert!(finding
        .message
        .contains("a -> a form a cycle of 1 service:"));
    assert!(report.services["a"].worst_case_ms.is_finite());
}

#[test]
fn a_cycle_away_from_the_entry_is_reported_too() {
    let report = Builder::new("a")
        .call("x", "y", timed(100))
        .call("y", "x", timed(100))
        .check();
    assert_eq!(fired(&report, "call-cycle"), ["y->x"]);
}

#[test]
fn a_diamond_is_not_a_cycle() {
    let report = Builder::new("a")
        .call("a", "b", timed(100))
        .call("a", "c", timed(100))
        .call("b", "d", timed(10))
        .call("c", "d", timed(10))
        .check();
    assert!(fired(&report, "call-cycle").is_empty());
}

#[test]
fn a_long_cycle_is_cut_short_in_its_message() {
    let n = 10_000;
    let name = |k: usize| format!("s{k:05}");
    let mut builder = Builder::new(&name(0));
    for k in 0..n {
        builder = builder.call(&name(k), &name((k + 1) % n), timed(100));
    }
    let report = builder.check();
    let finding = only(&report, "call-cycle");
    assert_eq!(place(finding), "s09999->s00000");
    assert!(finding
        .message
        .contains("s00000 -> s00001 -> s00002 -> s00003 -> ... -> s09996 -> s09997 -> s09998 -> s09999 -> s00000"));
    assert_eq!(finding.value, Some(10_000.0));
}

#[test]
fn a_call_closing_a_cycle_gets_call_cycle_only() {
    // a works 200 ms and calls itself with 100: were the call weighed against a's figures, it
    // would be an inversion and cut into a's latency.
    let report = Builder::new("a")
        .service("a", |s| {
            s.latency = fixed_latency(200);
            s.instances = 2;
        })
        .call("a", "a", timed(100))
        .entry(|e| e.timeout = ms(150))
        .check();
    assert_eq!(
        found(&report),
        [
            ("entry-budget", "a".to_string()),
            // Its own 200 ms x a full queue of 64 over 16 workers: 800 ms, past the users' 150.
            ("queue-outlives-caller", "a".to_string()),
            ("call-cycle", "a->a".to_string())
        ]
    );
    // The entry's own work is over budget; the cycle's call is never named as the place to cut.
    let finding = only(&report, "entry-budget");
    assert!(
        finding.fix.starts_with("a's own work alone"),
        "{}",
        finding.fix
    );
    assert!(!finding.fix.contains("a -> a"), "{}", finding.fix);
}
