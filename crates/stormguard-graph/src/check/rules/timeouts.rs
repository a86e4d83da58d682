//! Rules on timeouts: each call has one, sized to its callee, and they telescope from the user
//! down, so that no layer keeps working on a request its caller gave up on.

use std::collections::BTreeMap;
use std::time::Duration;

use stormguard::duration::format;

use super::{ceil_ms, ms_text, percent_text, CallAt, Findings, Said};
use crate::check::figures::{ms, Model};
use crate::report::Severity;

/// Every per-call timeout rule.
pub(super) fn on_call(at: &CallAt<'_, '_>, out: &mut Findings) {
    missing_timeout(at, out);
    missing_connect_timeout(at, out);
    connect_timeout_below_rtt(at, out);
    connect_timeout_too_long(at, out);
    timeout_inversion(at, out);
    timeout_below_latency(at, out);
}

/// Every per-service timeout rule.
pub(super) fn on_service(model: &Model<'_>, s: usize, out: &mut Findings) {
    entry_budget(model, s, out);
}

/// Every timeout rule over the whole graph.
pub(super) fn on_graph(model: &Model<'_>, out: &mut Findings) {
    same_timeout_everywhere(model, out);
}

/// `missing-timeout` (error): a call without a timeout waits as long as the callee works, and
/// forever if it hangs. The fix names a timeout that covers the callee's worst case and its
/// latency at `1 - false_timeout_rate`, so that setting it fires neither `timeout-inversion` nor
/// `timeout-below-latency`.
fn missing_timeout(at: &CallAt<'_, '_>, out: &mut Findings) {
    if at.call.timeout.is_some() {
        return;
    }
    let fix = match at.callee {
        Some(c) => format!("timeout = \"{}\"", format(suggested_timeout(at, c))),
        None => format!("a timeout above {}'s worst-case latency", at.call.to),
    };
    let waits = at.callee.map_or_else(
        || "unbounded".to_string(),
        |c| ms_text(at.model.worst_case_ms[c]),
    );
    out.on_call(
        at,
        Said {
            rule: "missing-timeout",
            severity: Severity::Error,
            message: format!(
                "{} has no timeout, so {} waits as long as {} works ({waits} at worst, forever if \
                 it hangs): one stuck dependency holds every request of its callers",
                at.edge(),
                at.from(),
                at.call.to
            ),
            fix,
            value: None,
            limit: None,
        },
    );
}

/// The timeout a fix recommends for a call to `callee`: at least the callee's worst case (so the
/// caller never gives up on work still running) and its latency at `1 - false_timeout_rate`
/// plus the round trip (so good calls are not cut), rounded up to a whole ms.
fn suggested_timeout(at: &CallAt<'_, '_>, callee: usize) -> Duration {
    let worst = at.model.worst_case_ms[callee];
    let tail = latency_quantile_ms(at, callee).map_or(0.0, |q| q + ms(at.call.rtt));
    ceil_ms(worst.max(tail))
}

/// The callee's own latency at `1 - false_timeout_rate`, in ms.
fn latency_quantile_ms(at: &CallAt<'_, '_>, callee: usize) -> Option<f64> {
    let fit = at.model.fits[callee]?;
    Some(ms(fit.quantile(1.0 - at.config().false_timeout_rate)))
}

/// `missing-connect-timeout` (warning): without one, connecting to a dead or blackholed host
/// uses the whole request timeout (or the OS's, often minutes) instead of failing over at once.
/// The model then takes the request timeout to cover connecting, and adds nothing for it.
fn missing_connect_timeout(at: &CallAt<'_, '_>, out: &mut Findings) {
    if at.call.connect_timeout.is_some() {
        return;
    }
    out.on_call(
        at,
        Said {
            rule: "missing-connect-timeout",
            severity: Severity::Warning,
            message: format!(
                "{} has no connect_timeout: connecting to a host that is down or blackholed then \
                 takes the whole request timeout (or the OS's, often minutes) instead of failing \
                 over to a live instance in a few round trips",
                at.edge()
            ),
            fix: connect_timeout_fix(at),
            value: None,
            limit: None,
        },
    );
}

/// `connect-timeout-below-rtt` (error): a handshake takes at least one round trip, so a connect
/// timeout at or below it fails every connection.
fn connect_timeout_below_rtt(at: &CallAt<'_, '_>, out: &mut Findings) {
    let Some(connect) = at.call.connect_timeout else {
        return;
    };
    if connect > at.call.rtt {
        return;
    }
    out.on_call(
        at,
        Said {
            rule: "connect-timeout-below-rtt",
            severity: Severity::Error,
            message: format!(
                "{} connect_timeout {} is not above the round trip {}: a handshake takes at least \
                 one round trip, so every connection fails",
                at.edge(),
                format(connect),
                format(at.call.rtt)
            ),
            fix: connect_timeout_fix(at),
            value: Some(ms(connect)),
            limit: Some(ms(at.call.rtt)),
        },
    );
}

/// `connect-timeout-too-long` (warning): above `connect_timeout_rtt_multiple` round trips, a
/// connection that has not completed is to a dead host, and waiting longer only delays the
/// attempt on a live one.
fn connect_timeout_too_long(at: &CallAt<'_, '_>, out: &mut Findings) {
    let Some(connect) = at.call.connect_timeout else {
        return;
    };
    let multiple = at.config().connect_timeout_rtt_multiple;
    let limit_ms = ms(at.call.rtt) * multiple;
    if ms(connect) <= limit_ms {
        return;
    }
    out.on_call(
        at,
        Said {
            rule: "connect-timeout-too-long",
            severity: Severity::Warning,
            message: format!(
                "{} connect_timeout {} is more than {multiple} round trips of {}: a connection \
                 not made by then is to a dead host, and waiting longer delays the attempt on a \
                 live one",
                at.edge(),
                format(connect),
                format(at.call.rtt)
            ),
            fix: connect_timeout_fix(at),
            value: Some(ms(connect)),
            limit: Some(limit_ms),
        },
    );
}

/// The connect timeout a fix recommends: three round trips (a handshake and two losses), never
/// more than the configured multiple allows, and above one round trip even when the multiple is
/// set at or below 1 (then `connect-timeout-too-long` cannot be met, and an error is worse).
fn connect_timeout_fix(at: &CallAt<'_, '_>) -> String {
    let mut multiple = at.config().connect_timeout_rtt_multiple.min(3.0);
    if multiple.is_nan() || multiple <= 1.0 {
        multiple = 2.0;
    }
    let micros = (at.call.rtt.as_secs_f64() * multiple * 1e6).ceil();
    let suggested = Duration::from_micros(micros as u64).max(Duration::from_micros(1));
    format!("connect_timeout = \"{}\"", format(suggested))
}

/// `timeout-inversion` (error; info when the call propagates its deadline): the callee may keep
/// working longer than this call waits (its worst case above the timeout), so the caller gives
/// up while the back end still works and retries (Cockcroft). With `propagate_deadline` the
/// callee can stop when the caller does, if it honours the deadline, so it is only worth knowing.
fn timeout_inversion(at: &CallAt<'_, '_>, out: &mut Findings) {
    let (Some(timeout), Some(callee)) = (at.call.timeout, at.callee) else {
        return;
    };
    let worst = at.model.worst_case_ms[callee];
    if worst <= ms(timeout) {
        return;
    }
    let to = &at.call.to;
    let (severity, message, fix) = if at.call.propagate_deadline {
        (
            Severity::Info,
            format!(
                "{to} may keep working {} on one request, longer than the {} {} waits for it; \
                 the deadline is propagated, so {to} can stop when {} gives up, if it honours it",
                ms_text(worst),
                format(timeout),
                at.from(),
                at.from()
            ),
            format!(
                "nothing to set if {to} stops at the propagated deadline; otherwise timeouts or \
                 attempts on the calls of {to} that bring its worst case under {}",
                format(timeout)
            ),
        )
    } else {
        (
            Severity::Error,
            format!(
                "{to} may keep working {} on one request, but {} gives up on it after {}: the \
                 edge gives up while the back end still works and retries, spending capacity on \
                 answers no one reads (Cockcroft)",
                ms_text(worst),
                at.from(),
                format(timeout)
            ),
            format!(
                "timeouts or attempts on the calls of {to} that bring its worst case under {}, or \
                 propagate_deadline = true",
                format(timeout)
            ),
        )
    };
    out.on_call(
        at,
        Said {
            rule: "timeout-inversion",
            severity,
            message,
            fix,
            value: Some(worst),
            limit: Some(ms(timeout)),
        },
    );
}

/// `timeout-below-latency` (warning): the share of attempts that would have succeeded but time
/// out exceeds `false_timeout_rate`. The callee's latency is approximated by the lognormal fit
/// of its own work, without its calls: a callee that calls others is slower than that, so the
/// rule understates the rate and fires only when even the callee's own work is cut. An attempt
/// has `timeout - rtt` for the callee's work. The fix is the fit's quantile at
/// `1 - false_timeout_rate` plus the round trip, rounded up to a whole ms, so that the fixed
/// timeout no longer fires the rule.
fn timeout_below_latency(at: &CallAt<'_, '_>, out: &mut Findings) {
    let (Some(timeout), Some(callee)) = (at.call.timeout, at.callee) else {
        return;
    };
    let Some(fit) = at.model.fits[callee] else {
        return;
    };
    let allowed = at.config().false_timeout_rate;
    let rate = fit.exceedance(timeout.saturating_sub(at.call.rtt));
    if rate <= allowed {
        return;
    }
    let latency = at.model.services[callee].latency;
    let fixed = ceil_ms(ms(fit.quantile(1.0 - allowed)) + ms(at.call.rtt));
    out.on_call(
        at,
        Said {
            rule: "timeout-below-latency",
            severity: Severity::Warning,
            message: format!(
                "{} timeout {} cuts into {}'s latency (p50 {}, p99 {}): about {} of attempts \
                 that would succeed time out (limit {}), each one retried or failed for nothing",
                at.edge(),
                format(timeout),
                at.call.to,
                format(latency.p50),
                format(latency.p99),
                percent_text(rate),
                percent_text(allowed)
            ),
            fix: format!("timeout = \"{}\"", format(fixed)),
            value: Some(rate),
            limit: Some(allowed),
        },
    );
}

/// `entry-budget` (error): the entry's worst case exceeds `entry.timeout`, so users give up (and
/// often retry) while the graph still works for them. The fix names the entry's costliest call,
/// where cutting does the most.
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
    let costliest = (0..model.services[s].calls.len())
        .filter(|&i| !model.in_cycle[s][i])
        .map(|i| (i, model.call_cost_ms(s, i)))
        .fold(None, |best: Option<(usize, f64)>, (i, cost)| match best {
            Some((_, b)) if b >= cost => best,
            _ => Some((i, cost)),
        });
    let mut fix = format!(
        "cut timeouts or attempts below {name} until its worst case fits in {}",
        format(budget)
    );
    if let Some((i, cost)) = costliest {
        let to = &model.services[s].calls[i].to;
        fix.push_str(&format!(
            "; its costliest call is {name} -> {to} ({})",
            ms_text(cost)
        ));
    }
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
            value: Some(worst),
            limit: Some(ms(budget)),
        },
    );
}

/// `same-timeout-everywhere` (warning): three or more calls share one timeout value and their
/// callers sit at two or more depths, so timeouts cannot telescope: a caller gives up exactly
/// when its callee does, with no time left for the callee's retries. Calls from services the
/// entry does not reach have no depth and are not counted. Reported once per value, on the first
/// call (by service name, then call order) that has it; `value` is the number of calls.
fn same_timeout_everywhere(model: &Model<'_>, out: &mut Findings) {
    let mut by_timeout: BTreeMap<Duration, Vec<(usize, usize)>> = BTreeMap::new();
    for s in (0..model.services.len()).filter(|&s| model.reachable[s]) {
        for (i, call) in model.services[s].calls.iter().enumerate() {
            if let Some(timeout) = call.timeout {
                by_timeout.entry(timeout).or_default().push((s, i));
            }
        }
    }
    for (timeout, calls) in by_timeout {
        let mut depths: Vec<u32> = calls.iter().map(|&(s, _)| model.depth[s]).collect();
        depths.sort_unstable();
        depths.dedup();
        if calls.len() < 3 || depths.len() < 2 {
            continue;
        }
        let mut listed: Vec<String> = depths.iter().take(5).map(u32::to_string).collect();
        if depths.len() > 5 {
            listed.push("...".to_string());
        }
        let example: Vec<String> = depths
            .iter()
            .take(3)
            .enumerate()
            .map(|(k, d)| {
                let shrunk = timeout / 2u32.saturating_pow(k as u32).max(1);
                format!("{} from depth {d}", format(shrunk))
            })
            .collect();
        let (s, i) = calls[0];
        out.on_call_of(
            model,
            s,
            i,
            Said {
                rule: "same-timeout-everywhere",
                severity: Severity::Warning,
                message: format!(
                    "{} calls from {} depths ({}) share timeout {}: timeouts that do not shrink \
                     with depth cannot telescope, so a caller gives up exactly when its callee \
                     does, with no time left for the callee's retries",
                    calls.len(),
                    depths.len(),
                    listed.join(", "),
                    format(timeout)
                ),
                fix: format!(
                    "timeouts that shrink with depth, each under its caller's, e.g. {}; or \
                     propagate_deadline = true",
                    example.join(", ")
                ),
                value: Some(calls.len() as f64),
                limit: None,
            },
        );
    }
}
