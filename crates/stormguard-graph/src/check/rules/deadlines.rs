//! Rules on deadlines: a caller must wait as long as its callee may work, and the entry's worst
//! case must fit in what a user waits. Both weigh a timeout against the model's worst cases, so
//! both name the timeout that makes the figures fit, computed from the same cost formula the
//! figures use.

use std::time::Duration;

use stormguard::duration::format;

use super::timeouts::suggested_timeout;
use super::{call_name, ceil_ms, listed, ms_text, CallAt, Findings, Said};
use crate::check::figure::Figure;
use crate::check::figures::{backoff_ms, ms, Model};
use crate::model::Call;
use crate::report::Severity;

/// Every per-call deadline rule.
pub(super) fn on_call(at: &CallAt<'_, '_>, out: &mut Findings) {
    timeout_inversion(at, out);
}

/// Every per-service deadline rule.
pub(super) fn on_service(model: &Model<'_>, s: usize, out: &mut Findings) {
    entry_budget(model, s, out);
}

/// `timeout-inversion` (error; info when the call propagates its deadline): the callee may keep
/// working longer than this call waits (its worst case above the timeout), so the caller gives
/// up while the back end still works, and retries if anything below it retries (Cockcroft).
/// With `propagate_deadline` the callee can stop when the caller does, if it honours the
/// deadline, so it is only worth knowing. A call that closes a cycle is `call-cycle`'s: the
/// callee's worst case leaves that call out, so weighing the two says nothing.
///
/// The fix is the timeout that covers the callee's worst case (and its latency at
/// `1 - false_timeout_rate`), which stops the rule; when the callee has calls of its own,
/// cutting their timeouts or attempts, or propagating the deadline, are the alternatives.
fn timeout_inversion(at: &CallAt<'_, '_>, out: &mut Findings) {
    let (Some(timeout), Some(callee)) = (at.call.timeout, at.callee) else {
        return;
    };
    let worst = at.model.worst_case_ms[callee];
    if at.closes_cycle() || worst <= ms(timeout) {
        return;
    }
    let (to, from) = (&at.call.to, at.from());
    let covering = format!(
        "timeout = \"{}\" on {}, which covers {to}'s worst case",
        format(suggested_timeout(at, callee)),
        at.edge()
    );
    let has_calls =
        (0..at.model.services[callee].calls.len()).any(|i| !at.model.in_cycle[callee][i]);
    let cut = format!(
        "cut the timeouts or attempts of {to}'s calls until its worst case is under {}",
        format(timeout)
    );
    let (severity, message, fix) = if at.call.propagate_deadline {
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
        )
    } else {
        let still = if at.model.retries_below[callee] {
            "still works and retries"
        } else {
            "still works"
        };
        let fix = if has_calls {
            format!(
                "{covering}; or {cut}; or propagate_deadline = true, so that {to} can stop when \
                 {from} gives up"
            )
        } else {
            covering
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
        },
    );
}

/// `entry-budget` (error): the entry's worst case exceeds `entry.timeout`, so users give up (and
/// often retry) while the graph still works for them. Calls that close a cycle add nothing to
/// the worst case, so they are never named.
///
/// The fix names timeouts: for the costliest call, or parallel run of calls, that can absorb the
/// whole excess alone, the timeout each of its calls needs (given its count, attempts, connect
/// timeout and backoff) for the entry's worst case to fit, rounded down to a whole ms (a µs
/// below 1 ms) and checked against the model's own sum, so setting it stops the rule. When no one call or run can, it says how much to cut in total and where the
/// time goes.
fn entry_budget(model: &Model<'_>, s: usize, out: &mut Findings) {
    if model.entry != Some(s) {
        return;
    }
    let budget = model.graph.entry.timeout;
    let worst = model.worst_case_ms[s];
    if worst <= ms(budget) {
        return;
    }
    let name = &model.services[s].name;
    let excess = worst - ms(budget);
    let mut groups: Vec<(Vec<usize>, f64)> = model
        .groups(s)
        .into_iter()
        .map(|group| {
            let cost = model.group_cost_ms(s, &group);
            (group, cost)
        })
        .collect();
    // Stable: of two runs that cost the same, the earlier in the file is named first.
    groups.sort_by(|a, b| b.1.total_cmp(&a.1));
    let one_cut = groups.iter().find_map(|(group, cost)| {
        let cuts = cut_group(model, s, group, cost - excess)?;
        Some((group, *cost, cuts))
    });
    let fix = match one_cut {
        Some((group, cost, cuts)) => {
            let settings: Vec<String> = cuts
                .iter()
                .map(|&(i, timeout)| {
                    format!(
                        "timeout = \"{}\" on {}",
                        format(timeout),
                        call_name(model, s, i)
                    )
                })
                .collect();
            let new_cost = model.group_cost_ms_with(s, group, &cuts);
            let what = if group.len() == 1 {
                "the call"
            } else {
                "the parallel run"
            };
            format!(
                "{}: {what} may take {} now, and {name} then works at most {}, within the {} a \
                 user waits",
                listed(&settings),
                ms_text(cost),
                ms_text(worst - cost + new_cost),
                format(budget)
            )
        }
        None => spread_fix(model, s, &groups, excess),
    };
    out.on_service(
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
        },
    );
}

/// The timeouts that bring every call of `group` (of service `s`) to cost at most `target`
/// ms, for the calls above it, checked against the entry's worst case as the model computes it
/// (one unit lower when float noise puts the exact value a hair over); `None` when one of them
/// cannot get there with a timeout of at least a µs.
fn cut_group(
    model: &Model<'_>,
    s: usize,
    group: &[usize],
    target: f64,
) -> Option<Vec<(usize, Duration)>> {
    if target <= 0.0 {
        return None;
    }
    let mut cuts: Vec<(usize, Duration)> = group
        .iter()
        .filter(|&&i| model.call_cost_ms(s, i) > target)
        .map(|&i| Some((i, timeout_within(&model.services[s].calls[i], target)?)))
        .collect::<Option<_>>()?;
    let budget = ms(model.graph.entry.timeout);
    if model.worst_case_ms_with(s, &cuts) <= budget {
        return Some(cuts);
    }
    for cut in &mut cuts {
        cut.1 = step_down(cut.1)?;
    }
    (model.worst_case_ms_with(s, &cuts) <= budget).then_some(cuts)
}

/// The longest timeout, a whole ms (or µs below 1 ms), with which `call` costs at most
/// `target` ms; `None` when even a µs is too long.
fn timeout_within(call: &Call, target: f64) -> Option<Duration> {
    let attempts = f64::from(call.max_attempts.max(1));
    let connect = call.connect_timeout.map_or(0.0, ms);
    let waited = (target / f64::from(call.count) - backoff_ms(call)) / attempts - connect;
    // A whole value computed as 74.99999999999999 is still 75.
    let whole_ms = (waited + 1e-9).floor();
    if whole_ms >= 1.0 {
        return Some(Duration::from_millis(whole_ms as u64));
    }
    let micros = (waited * 1000.0 + 1e-6).floor();
    (micros >= 1.0).then(|| Duration::from_micros(micros as u64))
}

/// One unit (a ms, or a µs below 2 ms) shorter, the precision [`timeout_within`] gives.
fn step_down(timeout: Duration) -> Option<Duration> {
    let unit = if timeout >= Duration::from_millis(2) && timeout.subsec_micros() % 1000 == 0 {
        Duration::from_millis(1)
    } else {
        Duration::from_micros(1)
    };
    timeout.checked_sub(unit).filter(|t| !t.is_zero())
}

/// The fix when no one call or run can absorb the excess: the total to cut and the costliest
/// places, or, when the service's own work alone is over the budget, that.
fn spread_fix(model: &Model<'_>, s: usize, groups: &[(Vec<usize>, f64)], excess: f64) -> String {
    let name = &model.services[s].name;
    let budget = model.graph.entry.timeout;
    let raise = format!(
        "entry.timeout = \"{}\"",
        format(ceil_ms(model.worst_case_ms[s]))
    );
    let own = model.own_worst_ms(s);
    if own >= ms(budget) || groups.is_empty() {
        return format!(
            "{name}'s own work alone may take {} (its p99.9), against the {} a user waits: make \
             it faster, or {raise}",
            ms_text(own),
            format(budget)
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
         calls, costliest first: {}; or {raise}",
        ms_text(excess),
        places.join(", ")
    )
}
