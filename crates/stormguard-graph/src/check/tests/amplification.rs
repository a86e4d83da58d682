//! `retry-amplification`: the figure, and fixes that name the calls to change and, set, stop
//! the rule.

use super::*;
use crate::model::Graph;

/// A chain s0 -> s1 -> ... of `layers` calls, each with `set` applied.
fn chain(layers: usize, set: impl Fn(&mut Call) + Copy) -> Graph {
    let mut builder = Builder::new("s0");
    for k in 0..layers {
        builder = builder.call(&format!("s{k}"), &format!("s{}", k + 1), move |c| {
            timed(100)(c);
            set(c);
        });
    }
    builder.instances_everywhere(2).build()
}

/// Sets `max_attempts` on the call from `from` to `to`.
fn attempts_on(graph: &mut Graph, from: &str, to: &str, attempts: u32) {
    let service = graph.services.get_mut(from).unwrap();
    let call = service.calls.iter_mut().find(|c| c.to == to).unwrap();
    call.max_attempts = attempts;
}

#[test]
fn retry_amplification_fires_above_the_limit_only() {
    let report = check(&chain(3, |c| c.max_attempts = 3));
    let finding = only(&report, "retry-amplification");
    assert_eq!(place(finding), "s3");
    assert_eq!((finding.value, finding.limit), (Some(27.0), Some(10.0)));
    assert!(fired(
        &check(&chain(2, |c| c.max_attempts = 3)),
        "retry-amplification"
    )
    .is_empty());
}

#[test]
fn layered_retries_are_cut_to_one_layer_by_name_and_that_stops_the_rule() {
    let mut graph = chain(3, |c| c.max_attempts = 3);
    let report = check(&graph);
    let finding = only(&report, "retry-amplification");
    assert_eq!(
        finding.fix,
        "max_attempts = 1 on s1 -> s2 and s2 -> s3, and max_attempts = 2 on s0 -> s1: retries \
         at one layer, so s3 receives at most 2"
    );
    assert!(!finding.fix.contains("retry_budget"), "{}", finding.fix);
    attempts_on(&mut graph, "s1", "s2", 1);
    attempts_on(&mut graph, "s2", "s3", 1);
    attempts_on(&mut graph, "s0", "s1", 2);
    let fixed = check(&graph);
    assert!(fired(&fixed, "retry-amplification").is_empty());
    assert_eq!(fixed.services["s3"].amplification, 2.0);
}

#[test]
fn budgets_are_quoted_as_the_sustained_figure_and_never_offered_as_the_fix() {
    let report = check(&chain(3, |c| {
        c.max_attempts = 3;
        c.limiter = Some(budget(0.1));
    }));
    let finding = only(&report, "retry-amplification");
    // At 100 users a second, each budget lets 0.1 retries a request through plus its reserve
    // of 10 a second over the requests the call makes: s1 1.2 (100/s), s2 1.2 x (1.1 + 10 /
    // 120) = 1.42, s3 1.42 x (1.1 + 10 / 142) = 1.66.
    assert!(
        finding.message.contains(
            "27 attempts per user request when calls below s0 fail, limit 10; \
                       1.66 sustained while the retry budgets hold, but a budget does not lower \
                       this worst case"
        ),
        "{}",
        finding.message
    );
    assert!(!finding.fix.contains("retry_budget"), "{}", finding.fix);
}

#[test]
fn one_retrying_call_with_many_attempts_is_cut_to_two() {
    let mut graph = chain(1, |c| c.max_attempts = 20);
    let report = check(&graph);
    assert_eq!(
        only(&report, "retry-amplification").fix,
        "max_attempts = 2 on s0 -> s1: retries at one layer, so s1 receives at most 2"
    );
    attempts_on(&mut graph, "s0", "s1", 2);
    assert!(fired(&check(&graph), "retry-amplification").is_empty());
}

#[test]
fn when_one_layer_is_too_many_every_retry_goes() {
    // 10 items, each tried twice: 20; one attempt each leaves the 10 the limit allows.
    let mut graph = chain(1, |c| {
        c.max_attempts = 2;
        c.count = 10;
    });
    let report = check(&graph);
    assert_eq!(
        only(&report, "retry-amplification").fix,
        "max_attempts = 1 on s0 -> s1: s1 then receives 10"
    );
    attempts_on(&mut graph, "s0", "s1", 1);
    assert!(fired(&check(&graph), "retry-amplification").is_empty());
}

#[test]
fn when_the_fan_out_alone_is_over_the_limit_the_fix_says_so() {
    let mut graph = chain(2, |c| c.max_attempts = 2);
    graph.services.get_mut("s1").unwrap().calls[0].count = 20;
    let report = check(&graph);
    let finding = only(&report, "retry-amplification");
    assert_eq!(place(finding), "s2");
    assert_eq!(
        finding.fix,
        "max_attempts = 1 on s0 -> s1 and s1 -> s2; the fan-out alone then still gives 20: \
         batch the calls to lower count on s1 -> s2, or [check] max_amplification = 20"
    );
    attempts_on(&mut graph, "s0", "s1", 1);
    attempts_on(&mut graph, "s1", "s2", 1);
    graph.check.max_amplification = 20.0;
    assert!(fired(&check(&graph), "retry-amplification").is_empty());
}

#[test]
fn a_fan_out_from_count_alone_is_named_as_such() {
    let mut graph = chain(2, |c| c.count = 4);
    let report = check(&graph);
    let finding = only(&report, "retry-amplification");
    assert_eq!(place(finding), "s2");
    assert!(
        finding.message.contains(
            "s2 receives up to 16 requests per user request, limit 10, though no call on any \
             path to it retries: the load is the fan-out from count on s0 -> s1 (count 4) and \
             s1 -> s2 (count 4)"
        ),
        "{}",
        finding.message
    );
    assert_eq!(
        finding.fix,
        "batch the calls to lower count on s0 -> s1 and s1 -> s2, or [check] max_amplification \
         = 16 if this fan-out is meant"
    );
    assert!(!finding.fix.contains("max_attempts"), "{}", finding.fix);
    graph.check.max_amplification = 16.0;
    assert!(fired(&check(&graph), "retry-amplification").is_empty());
}

#[test]
fn paths_that_meet_are_a_fan_out_too() {
    let mut builder = Builder::new("a");
    for k in 0..11 {
        builder = builder.call("a", &format!("m{k:02}"), timed(100)).call(
            &format!("m{k:02}"),
            "d",
            timed(50),
        );
    }
    let report = builder.check();
    let finding = only(&report, "retry-amplification");
    assert_eq!(place(finding), "d");
    assert!(
        finding
            .message
            .contains("the fan-out from the paths from a that meet at d"),
        "{}",
        finding.message
    );
    assert_eq!(
        finding.fix,
        "call d from fewer places per request (e.g. once, passing the answer down), or [check] \
         max_amplification = 11 if this fan-out is meant"
    );
}

#[test]
fn in_a_large_graph_the_fix_names_a_few_calls_and_says_there_are_more() {
    let report = check(&scale::wide_graph());
    let bottom = report
        .findings
        .iter()
        .rfind(|f| f.rule == "retry-amplification")
        .unwrap();
    assert!(
        bottom.fix.contains("other retrying calls above s09999"),
        "{}",
        bottom.fix
    );
    let named = bottom.fix.matches(" -> ").count();
    assert_eq!(named, 6, "{}", bottom.fix);
}
