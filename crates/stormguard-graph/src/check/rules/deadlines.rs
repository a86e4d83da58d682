//! Rules on deadlines: a caller must wait as long as its callee may work, and the entry's worst
//! case must fit in what a user waits. Both weigh a timeout against the model's worst cases, so
//! both name the timeout that makes the figures fit, computed from the same cost formula the
//! figures use.

use std::time::Duration;

use stormguard::duration::format;

use super::fit;
use super::timeouts::{latency_floor, suggested_timeout};
use super::{call_name, ceil_ms, duration_value, listed, ms_text, CallAt, Findings, Said};
use crate::check::figure::Figure;
use crate::check::figures::{ms, Model, Target};
use crate::parse::ranges::{Bounds, TIMEOUT};
use crate::report::Severity;

/// Every per-call deadline rule.
pub(super) fn on_call(at: &CallAt<'_, '_>, out: &mut Findings) {
    timeout_inversion(at, out);
}

/// Every deadline rule on a node (a service without endpoints, or one endpoint).
pub(super) fn on_node(model: &Model<'_>, s: usize, out: &mut Findings) {
    entry_budget(model, s, out);
}

/// `timeout-inversion` (error; info when the call propagates its deadline): the callee may keep
/// working longer than this call waits (its worst case above the timeout), so the caller gives
/// up while the back end still works, and retries if anything below it retries (Cockcroft).
/// With `propagate_deadline` the callee can stop when the caller does, if it honours the
/// deadline, so it is only worth knowing. A call that closes a cycle is `call-cycle`'s: the
/// callee's worst case leaves that call out, so weighing the two says nothing.
///
/// The fix, when the callee has calls of its own, is first to cut their timeouts until its
/// worst case fits in this timeout (as `entry-budget` fits the entry in what a user waits), if
/// that cuts no timeout below its callee's latency at `1 - false_timeout_rate`: timeouts then
/// telescope from the top down, and what the user waits never grows. Otherwise it is the timeout
/// on this call that covers the callee's worst case (and its latency at `1 -
/// false_timeout_rate`), which stops the rule. Propagating the deadline is the other way out.
/// The edits are the first of these that applies.
fn timeout_inversion(at: &CallAt<'_, '_>, out: &mut Findings) {
    let (Some(own), Some(callee)) = (at.call.timeout, at.callee) else {
        return;
    };
    // The caller gives up at the earlier of the attempt's timeout and the whole call's: a
    // request_timeout below the timeout ends the attempt first.
    let timeout = at.call.request_timeout.map_or(own, |whole| whole.min(own));
    let worst = at.model.target_worst_ms(callee);
    if at.closes_cycle() || worst <= ms(timeout) {
        return;
    }
    let model = at.model;
    let (to, from) = (&at.call.to, at.from());
    let covering_timeout = suggested_timeout(at, callee);
    let covering_value = duration_value(covering_timeout);
    // Raising the timeout alone would leave a shorter request_timeout ending the attempt.
    let raise_whole = at
        .call
        .request_timeout
        .filter(|&whole| whole < covering_timeout);
    let covering = match raise_whole {
        Some(_) => format!(
            "timeout = {covering_value} and request_timeout = {covering_value} on {}, which \
             cover {to}'s worst case",
            at.edge()
        ),
        None => format!(
            "timeout = {covering_value} on {}, which covers {to}'s worst case",
            at.edge()
        ),
    };
    let covering_edits = || {
        let mut edits = vec![at.set("timeout", &covering_value)];
        if raise_whole.is_some() {
            edits.push(at.set("request_timeout", &covering_value));
        }
        edits
    };
    let has_calls = callee
        .nodes()
        .any(|c| (0..model.nodes[c].calls.len()).any(|i| !model.in_cycle[c][i]));
    let cut = format!(
        "cut the timeouts or attempts of {to}'s calls until its worst case is under {}",
        format(timeout)
    );
    let propagate =
        format!("propagate_deadline = true, so that {to} can stop when {from} gives up");
    let (severity, message, fix, edits) = if at.call.propagate_deadline {
        let otherwise = if has_calls {
            format!("{covering}, or {cut}")
        } else {
            covering
        };
        (
            Severity::Info,
            format!(
                "{to} may keep working {} on one request, longer than the {} {from} waits for \
                 it; the deadline is propagated, so {to} can stop when {from} gives up, if it \
                 honours it",
                ms_text(worst),
                format(timeout),
            ),
            format!(
                "nothing to set if {to} stops at the propagated deadline; otherwise {otherwise}"
            ),
            Vec::new(),
        )
    } else {
        let still = if callee.nodes().any(|c| model.retries_below[c]) {
            "still works and retries"
        } else {
            "still works"
        };
        let (fix, edits) = match fit_endpoints(model, callee, ms(timeout)) {
            Some((settings, edits, worst_ms)) => (
                format!(
                    "{}: {to} then works at most {}, within the {} {from} waits; or \
                     {covering}; or {propagate}",
                    listed(&settings),
                    ms_text(worst_ms),
                    format(timeout)
                ),
                edits,
            ),
            None if has_calls => (
                format!("{covering}; or {cut}; or {propagate}"),
                covering_edits(),
            ),
            None => (covering, covering_edits()),
        };
        (
            Severity::Error,
            format!(
                "{to} may keep working {} on one request, but {from} gives up on it after {}: \
                 {from} gives up while {to} {still}, spending capacity on answers no one reads \
                 (Cockcroft)",
                ms_text(worst),
                format(timeout)
            ),
            fix,
            edits,
        )
    };
    out.on_call(
        at,
        Said {
            rule: "timeout-inversion",
            severity,
            message,
            fix,
            value: Some(Figure::Ms(worst)),
            limit: Some(Figure::Ms(ms(timeout))),
            edits,
        },
    );
}

/// The timeouts that bring each endpoint `callee` reaches within `budget_ms` by cutting its own
/// calls (none below their callee's latency floor): the settings a fix names, their edits, and
/// the worst case they leave. `None` when one of those endpoints cannot be fitted.
fn fit_endpoints(
    model: &Model<'_>,
    callee: Target,
    budget_ms: f64,
) -> Option<(Vec<String>, Vec<crate::report::Edit>, f64)> {
    let mut settings = Vec::new();
    let mut edits = Vec::new();
    let mut worst_ms: f64 = 0.0;
    for c in callee.nodes() {
        if model.worst_case_ms[c] <= budget_ms {
            worst_ms = worst_ms.max(model.worst_case_ms[c]);
            continue;
        }
        let groups = fit::costly_groups(model, c);
        let viable = |i: usize, t: Duration| t >= latency_floor(model, c, i);
        let fit = fit::within(model, c, &groups, budget_ms, viable)?;
        settings.extend(fit.settings(model, c));
        edits.extend(fit.edits(model, c));
        worst_ms = worst_ms.max(fit.worst_ms);
    }
    Some((settings, edits, worst_ms))
}

/// `entry-budget` (error): the entry's worst case exceeds `entry.timeout`, so users give up (and
/// often retry) while the graph still works for them. Calls that close a cycle add nothing to
/// the worst case, so they are never named. Judged on each endpoint of an entry that has them,
/// since a user's request takes one: a slow checkout is reported as `gateway/checkout`, and its
/// fix cuts checkout's calls, not browse's.
///
/// The fix names timeouts: for the costliest call, or parallel run of calls, that can absorb the
/// whole excess alone, the timeout each of its calls needs (given its count, attempts, connect
/// timeout and backoff) for the entry's worst case to fit, rounded down to a whole ms (a µs
/// below 1 ms) and checked against the model's own sum, so setting it stops the rule. When no one call or run can, it says how much to cut in total and where the
/// time goes.
fn entry_budget(model: &Model<'_>, s: usize, out: &mut Findings) {
    if !model.entry_nodes().contains(&s) {
        return;
    }
    let budget = model.graph.entry.timeout;
    let worst = model.worst_case_ms[s];
    if worst <= ms(budget) {
        return;
    }
    let name = &model.nodes[s].name;
    let excess = worst - ms(budget);
    let groups = fit::costly_groups(model, s);
    // No call is cut below its callee's latency floor, as `fit_endpoints` keeps the calls
    // below: a fix that cut one traded this finding for timeout-below-latency, and `--fix`
    // wrote a graph that answered half its users (a review).
    let viable = |i: usize, t: Duration| t >= latency_floor(model, s, i);
    let (fix, edits) = match fit::within(model, s, &groups, ms(budget), viable) {
        Some(fit) => (
            format!(
                "{}: {} may take {} now, and {name} then works at most {}, within the {} a user \
                 waits",
                listed(&fit.settings(model, s)),
                fit.what,
                ms_text(fit.cost_ms),
                ms_text(fit.worst_ms),
                format(budget)
            ),
            fit.edits(model, s),
        ),
        // Raising what users wait is the owner's choice, not a setting to write for them.
        None => (spread_fix(model, s, &groups, excess), Vec::new()),
    };
    out.on_node(
        model,
        s,
        Said {
            rule: "entry-budget",
            severity: Severity::Error,
            message: format!(
                "{name} may work {} on one request, more than the {} a user waits \
                 (entry.timeout): users give up, and often retry, while the graph still works \
                 for them",
                ms_text(worst),
                format(budget)
            ),
            fix,
            value: Some(Figure::Ms(worst)),
            limit: Some(Figure::Ms(ms(budget))),
            edits,
        },
    );
}

/// The other way out, `entry.timeout = "WORST"`, when a file may say so (an entry timeout is
/// at most an hour); `None` when no entry timeout covers `worst`, so that a fix never proposes
/// a value the file refuses.
fn raise_entry_timeout(worst: Duration) -> Option<String> {
    (worst <= longest_timeout()).then(|| format!("entry.timeout = \"{}\"", format(worst)))
}

/// The longest timeout a file may hold.
fn longest_timeout() -> Duration {
    let Bounds::Duration(_, longest) = TIMEOUT.bounds else {
        unreachable!("a timeout's range is of durations")
    };
    longest
}

/// `raise` after `joint`, or that no entry timeout covers the worst case.
fn or(raise: &Option<String>, joint: &str) -> String {
    match raise {
        Some(raise) => format!("{joint}{raise}"),
        None => format!(
            " (no entry.timeout covers it: a file may make users wait at most {})",
            format(longest_timeout())
        ),
    }
}

/// The fix when no one call or run can absorb the excess: the total to cut and the costliest
/// places, or, when the service's own work alone is over the budget, that.
fn spread_fix(model: &Model<'_>, s: usize, groups: &[(Vec<usize>, f64)], excess: f64) -> String {
    let name = &model.nodes[s].name;
    let budget = model.graph.entry.timeout;
    let raise = raise_entry_timeout(ceil_ms(model.worst_case_ms[s]));
    let own = model.own_worst_ms(s);
    if own >= ms(budget) || groups.is_empty() {
        return format!(
            "{name}'s own work alone may take {} (its p99.9), against the {} a user waits: make \
             it faster{}",
            ms_text(own),
            format(budget),
            or(&raise, ", or ")
        );
    }
    let places: Vec<String> = groups
        .iter()
        .take(5)
        .map(|(group, cost)| {
            let names: Vec<String> = group.iter().map(|&i| call_name(model, s, i)).collect();
            let place = if names.len() == 1 {
                names[0].clone()
            } else {
                format!("the parallel run {}", names.join(", "))
            };
            format!("{place} ({})", ms_text(*cost))
        })
        .collect();
    format!(
        "no one call can absorb it: cut {} in total from the timeouts or attempts of {name}'s \
         calls, costliest first: {}{}",
        ms_text(excess),
        places.join(", "),
        or(&raise, "; or ")
    )
}
