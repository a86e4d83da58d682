//! Rules on timeouts: each call has one, sized to its callee, and they telescope from the user
//! down, so that no layer keeps working on a request its caller gave up on.

use std::collections::BTreeMap;
use std::time::Duration;

use stormguard::duration::format;

use crate::parse::ranges::{Bounds, TIMEOUT};

use super::{ceil_ms, duration_value, ms_text, percent_text, set, CallAt, Findings, Said};
use crate::check::figure::Figure;
use crate::check::figures::{ms, retries, Model, Slower, Target};
use crate::report::Severity;

/// Every per-call timeout rule.
pub(super) fn on_call(at: &CallAt<'_, '_>, out: &mut Findings) {
    missing_timeout(at, out);
    missing_connect_timeout(at, out);
    connect_timeout_below_rtt(at, out);
    connect_timeout_too_long(at, out);
    timeout_below_latency(at, out);
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
    let (fix, edits) = match at.callee {
        Some(callee) => {
            let value = duration_value(suggested_timeout(at, callee));
            (
                format!("timeout = {value}"),
                vec![at.set("timeout", &value)],
            )
        }
        None => (
            format!("a timeout above {}'s worst-case latency", at.call.to),
            Vec::new(),
        ),
    };
    let waits = at.callee.map_or_else(
        || "unbounded".to_string(),
        |callee| ms_text(at.model.target_worst_ms(callee)),
    );
    // A request_timeout bounds a hung attempt; it was said to be waited for forever.
    let message = match at.call.request_timeout {
        None => format!(
            "{} has no timeout, so {} waits as long as {} works ({waits} at worst, forever if \
             it hangs): one stuck dependency holds every request of its callers",
            at.edge(),
            at.from(),
            at.call.to
        ),
        Some(whole) => format!(
            "{} has no timeout, only a request_timeout of {}, so each attempt waits as long as \
             {} works ({waits} at worst), and one that hangs spends the whole {}{}: one stuck \
             dependency holds every request of its callers that long",
            at.edge(),
            format(whole),
            at.call.to,
            format(whole),
            if retries(at.call) {
                ", leaving no time for a retry"
            } else {
                ""
            }
        ),
    };
    out.on_call(
        at,
        Said {
            rule: "missing-timeout",
            severity: Severity::Error,
            message,
            fix,
            value: None,
            limit: None,
            edits,
        },
    );
}

/// The timeout a fix recommends for a call to `callee`: at least the callee's worst case (the
/// worst of the endpoints it reaches, so the caller never gives up on work still running) and its
/// latency at `1 - false_timeout_rate` plus the round trip (so good calls are not cut), rounded
/// up to a whole ms.
pub(super) fn suggested_timeout(at: &CallAt<'_, '_>, callee: Target) -> Duration {
    let worst = at.model.target_worst_ms(callee);
    let tail = latency_quantile_ms(at, callee).map_or(0.0, |q| q + ms(at.call.rtt));
    ceil_ms(worst.max(tail))
}

/// The shortest timeout call `i` of node `s` can have without `timeout-below-latency`: the
/// least whole ms whose share of healthy attempts cut ([`below_latency_share`]) is within
/// `false_timeout_rate`; at least the callee's own latency at `1 - false_timeout_rate` plus the
/// round trip, more where the callee waits on its own calls. Zero when the callee is not in the
/// graph. A fix that cuts timeouts keeps above it, so that it never trades one finding for
/// another (`entry-budget`'s fix cut a call below its callee's time with its database, and the
/// fixed graph, said to be clean, answered half its users with no fault).
pub(super) fn latency_floor(model: &Model<'_>, s: usize, i: usize) -> Duration {
    if let Some(known) = model.floors.borrow().get(&(s, i)) {
        return *known;
    }
    let floor = search_latency_floor(model, s, i);
    model.floors.borrow_mut().insert((s, i), floor);
    floor
}

/// [`latency_floor`], searched.
fn search_latency_floor(model: &Model<'_>, s: usize, i: usize) -> Duration {
    let call = &model.nodes[s].calls[i];
    if model.callee[s][i].is_none() {
        return Duration::ZERO;
    }
    let allowed = model.graph.check.false_timeout_rate;
    let cut = |t_ms: f64| below_latency_share(model, s, i, t_ms).share;
    // The own latency's floor, as before: the share there is the own work's at most.
    let own = model.callee[s][i]
        .and_then(|c| model.fits[c.service])
        .map_or(0.0, |fit| ms(fit.quantile(1.0 - allowed)) + ms(call.rtt));
    let mut low = own.ceil().max(1.0);
    if cut(low) <= allowed {
        return ceil_ms(low);
    }
    // Doubling to a bound that holds (every share falls to zero with time), then halving.
    let mut high = low * 2.0;
    let mut steps = 0;
    while cut(high) > allowed {
        low = high;
        high *= 2.0;
        steps += 1;
        if steps > 60 {
            return ceil_ms(high);
        }
    }
    while high - low > 1.0 {
        let mid = ((low + high) / 2.0).floor();
        if cut(mid) <= allowed {
            high = mid;
        } else {
            low = mid;
        }
    }
    ceil_ms(high)
}

/// The share of call `i` of node `s`'s healthy attempts that a timeout of `t_ms` cuts: its
/// callee's endpoints', each in its share of the call, slower than `t_ms` less the round trip
/// ([`Model::slower_than`], a lower bound), with the service whose latency bounds it.
fn below_latency_share(model: &Model<'_>, s: usize, i: usize, t_ms: f64) -> Slower {
    let call = &model.nodes[s].calls[i];
    let left = t_ms - ms(call.rtt);
    let mut share = 0.0;
    let mut because = (0.0, model.callee[s][i].map_or(0, |c| c.service));
    for (m, weight) in model.targets(s, i) {
        let below = model.slower_than(m, left);
        share += weight * below.share;
        if weight * below.share > because.0 {
            because = (weight * below.share, below.because);
        }
    }
    Slower {
        share: share.min(1.0),
        because: because.1,
    }
}

/// The callee's own latency at `1 - false_timeout_rate`, in ms.
fn latency_quantile_ms(at: &CallAt<'_, '_>, callee: Target) -> Option<f64> {
    let fit = at.model.fits[callee.service]?;
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
            edits: vec![connect_timeout_edit(at)],
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
            value: Some(Figure::Ms(ms(connect))),
            limit: Some(Figure::Ms(ms(at.call.rtt))),
            edits: vec![connect_timeout_edit(at)],
        },
    );
}

/// The longest connect timeout `connect-timeout-too-long` allows: the configured multiple of the
/// round trip, to the ns below, and never below the shortest timeout a file may hold (1 ms,
/// [`crate::parse::ranges::TIMEOUT`]), which a round trip of microseconds would otherwise make
/// too long with no valid fix. A duration, so that the rule and the fix compare durations and a
/// fix of exactly the limit never fires the rule.
fn connect_limit(at: &CallAt<'_, '_>) -> Duration {
    let short = rtt_limit(at);
    match lone_connect_timeout(at) {
        Some(lone) => short.max(lone),
        None => short,
    }
}

/// Linux's initial retransmission timeout (RFC 6298's 1 s): a lost SYN is sent again only
/// after it, so a connect timeout below it turns one lost packet into a failed connection.
const SYN_RETRANSMIT: Duration = Duration::from_secs(1);

/// The connect timeout of a call that cannot afford a failed connect: [`SYN_RETRANSMIT`] and a
/// margin for the retransmitted SYN's round trip, so that one loss costs a second, not the
/// request.
const ONE_LOST_SYN: Duration = SYN_RETRANSMIT.saturating_add(Duration::from_millis(100));

/// Whether a connect that timed out is tried again (`max_attempts` above 1 and `connect-failure`
/// in `retry_on`): only then is a connect timeout of a few round trips safe, since the next
/// attempt sends a new SYN, on another instance when there is one, instead of waiting for the
/// kernel's retransmission.
fn retries_connect_failure(at: &CallAt<'_, '_>) -> bool {
    retries(at.call) && at.call.retry_on.connect_failure()
}

/// On a call that does not retry a connect failure, the shortest connect timeout that survives
/// one lost SYN: [`ONE_LOST_SYN`], capped by the attempt's timeout, which bounds connecting
/// anyway; `None` on a call that retries one, where a few round trips are safe.
///
/// A call without a timeout is capped by the one `missing-timeout` proposes for it: the two
/// fixes are printed side by side, and a connect timeout of 1.1 s beside a timeout of 160 ms
/// made a file that the parser refuses (a connect timeout above the timeout).
fn lone_connect_timeout(at: &CallAt<'_, '_>) -> Option<Duration> {
    if retries_connect_failure(at) {
        return None;
    }
    let timeout = at
        .call
        .timeout
        .or_else(|| at.callee.map(|callee| suggested_timeout(at, callee)));
    Some(timeout.map_or(ONE_LOST_SYN, |t| t.min(ONE_LOST_SYN)))
}

/// The round trip the connect rules assume, as the finding says it: the call's `rtt`, which
/// a file that does not set it leaves at the default 1ms, so a longer network is a setting away.
fn rtt_words(at: &CallAt<'_, '_>) -> String {
    let rtt = at.call.rtt;
    if rtt == Duration::from_millis(1) {
        "a round trip (rtt) of 1ms, the default: set the call's rtt if yours is longer".to_string()
    } else {
        format!("the call's round trip (rtt) of {}", format(rtt))
    }
}

/// The configured multiple of the round trip, the longest connect timeout on a call that
/// retries a connect failure.
fn rtt_limit(at: &CallAt<'_, '_>) -> Duration {
    let multiple = at.config().connect_timeout_rtt_multiple;
    let nanos = (at.call.rtt.as_nanos() as f64 * multiple).floor();
    let limit = if nanos.is_nan() || nanos <= 0.0 {
        Duration::ZERO
    } else if nanos >= u64::MAX as f64 {
        Duration::MAX
    } else {
        Duration::from_nanos(nanos as u64)
    };
    let Bounds::Duration(shortest, _) = TIMEOUT.bounds else {
        unreachable!("a timeout's range is of durations")
    };
    limit.max(shortest)
}

/// `connect-timeout-too-long` (warning): above `connect_timeout_rtt_multiple` round trips, a
/// connection that has not completed is to a dead host, and waiting longer only delays the
/// attempt on a live one.
fn connect_timeout_too_long(at: &CallAt<'_, '_>, out: &mut Findings) {
    let Some(connect) = at.call.connect_timeout else {
        return;
    };
    let limit = connect_limit(at);
    if connect <= limit {
        return;
    }
    out.on_call(
        at,
        Said {
            rule: "connect-timeout-too-long",
            severity: Severity::Warning,
            message: format!(
                "{} connect_timeout {} is more than {}: a connection not made by then is to a \
                 dead host, and waiting longer delays the attempt on a live one",
                at.edge(),
                format(connect),
                match lone_connect_timeout(at) {
                    Some(lone) if lone > rtt_limit(at) => format!(
                        "{}, the most one lost SYN needs on a call that does not retry a \
                         connect failure",
                        format(lone)
                    ),
                    _ => format!(
                        "{} round trips of {}",
                        at.config().connect_timeout_rtt_multiple,
                        format(at.call.rtt)
                    ),
                }
            ),
            fix: connect_timeout_fix(at),
            value: Some(Figure::Ms(ms(connect))),
            limit: Some(Figure::Ms(ms(limit))),
            edits: vec![connect_timeout_edit(at)],
        },
    );
}

/// The connect timeout a fix recommends. On a call that retries a connect failure, three round
/// trips (a handshake and two losses), or the longest the configured multiple allows when that
/// is less; on any other call, [`lone_connect_timeout`] (one lost SYN must not fail the
/// request), or the short one when that is longer. In exact duration arithmetic, so
/// it fires neither connect rule: it is within the limit, and above one round trip whenever the
/// multiple leaves room for that; when it does not (a multiple of 1), two round trips, since
/// failing every connection is worse than a warning.
fn connect_timeout_fix(at: &CallAt<'_, '_>) -> String {
    let value = duration_value(suggested_connect_timeout(at));
    match lone_connect_timeout(at) {
        Some(lone) if lone > rtt_limit(at) => format!(
            "connect_timeout = {value}: {} does not retry a connect failure, so a connect timeout \
             of a few round trips would fail the request on one lost SYN, which Linux resends \
             only after {}; or keep it short and retry connect failures on another instance \
             (max_attempts = 2, retry_on with connect-failure)",
            at.edge(),
            format(SYN_RETRANSMIT)
        ),
        _ if capped_by_timeout(at, short_connect_timeout(at)) < short_connect_timeout(at) => {
            format!(
                "connect_timeout = {value}: the attempt's own timeout, which is under a few round \
                 trips from {}, so connecting may take the whole attempt; a connect that times \
                 out is retried, with a new SYN",
                rtt_words(at)
            )
        }
        _ => format!(
            "connect_timeout = {value}: a few round trips, from {}; a connect that times out is \
             retried, with a new SYN",
            rtt_words(at)
        ),
    }
}

/// [`connect_timeout_fix`] as the setting `check --fix` writes.
fn connect_timeout_edit(at: &CallAt<'_, '_>) -> crate::report::Edit {
    at.set(
        "connect_timeout",
        &duration_value(suggested_connect_timeout(at)),
    )
}

/// The connect timeout of [`connect_timeout_fix`], never above the attempt's timeout: an
/// attempt's timeout includes connecting, so the file refuses a longer connect timeout, and a
/// fix of one made `check --fix` fail on a call whose timeout is under three round trips.
fn suggested_connect_timeout(at: &CallAt<'_, '_>) -> Duration {
    let short = short_connect_timeout(at);
    let suggested = match lone_connect_timeout(at) {
        Some(lone) => short.max(lone),
        None => short,
    };
    capped_by_timeout(at, suggested)
}

/// `connect` cut to the call's timeout, if it has one and `connect` is longer.
fn capped_by_timeout(at: &CallAt<'_, '_>, connect: Duration) -> Duration {
    at.call
        .timeout
        .map_or(connect, |timeout| connect.min(timeout))
}

/// Three round trips, or the longest the configured multiple allows when that is less (two
/// round trips when it leaves no room above one): the connect timeout of a call that retries a
/// connect failure.
fn short_connect_timeout(at: &CallAt<'_, '_>) -> Duration {
    let rtt = at.call.rtt;
    let three = rtt.saturating_mul(3);
    let limit = rtt_limit(at);
    let suggested = if limit > rtt {
        three.min(limit)
    } else {
        rtt.saturating_mul(2)
    };
    // A zero round trip (which the parser refuses) must still not get "0s", which fails every
    // connection.
    suggested.max(Duration::from_nanos(1))
}

/// `timeout-below-latency` (warning): the share of attempts that would have succeeded but time
/// out exceeds `false_timeout_rate`. The timeout runs from sending the request, so it covers the
/// round trip too: an attempt leaves `timeout - rtt` for the callee's answer, and that is what
/// is weighed against the callee's latency: the lognormal fit of its own work, and of what it
/// waits on (its required calls, each bounded by its timeout, down the graph): a lower bound of
/// the share ([`Model::slower_than`]), so the rule never fires on a share that is not there,
/// and fires where the callee's own work is fast but its database is not. The fix is the least
/// whole ms that leaves the share within the limit ([`latency_floor`]), so that the fixed timeout
/// no longer fires the rule. A call that closes a cycle is `call-cycle`'s alone.
fn timeout_below_latency(at: &CallAt<'_, '_>, out: &mut Findings) {
    let (Some(timeout), Some(callee)) = (at.call.timeout, at.callee) else {
        return;
    };
    // A `request_timeout` below the attempt's `timeout` cuts the first attempt as surely: it
    // is the bound judged, and the one the fix raises (a call of `timeout = "2s"` under
    // `request_timeout = "5ms"` failed every attempt and was only a warning).
    let (timeout, key) = match at.call.request_timeout {
        Some(request) if request < timeout => (request, "request_timeout"),
        _ => (timeout, "timeout"),
    };
    if at.closes_cycle() {
        return;
    }
    let allowed = at.config().false_timeout_rate;
    let left = timeout.saturating_sub(at.call.rtt);
    let Slower {
        share: rate,
        because,
    } = below_latency_share(at.model, at.service, at.index, ms(timeout));
    if rate <= allowed {
        return;
    }
    let latency = at.model.services[callee.service].latency;
    let fixed = duration_value(latency_floor(at.model, at.service, at.index));
    // Where the time goes: the callee's own work, or a service it waits on.
    let cut = if because == callee.service {
        format!(
            "which cuts into its latency (p50 {}, p99 {})",
            format(latency.p50),
            format(latency.p99)
        )
    } else {
        let below = at.model.services[because];
        format!(
            "which cuts into its latency with what it waits on ({} p50 {}, p99 {}; its own \
             p50 {}, p99 {})",
            below.name,
            format(below.latency.p50),
            format(below.latency.p99),
            format(latency.p50),
            format(latency.p99)
        )
    };
    out.on_call(
        at,
        Said {
            rule: "timeout-below-latency",
            // Half the healthy attempts or more failing with no fault at all is a graph that
            // fails most of its requests, as an over-capacity service does: an error.
            severity: if rate >= MOSTLY {
                Severity::Error
            } else {
                Severity::Warning
            },
            message: format!(
                "{} {key} {} leaves {} for {}'s work after the {} round trip, {cut}: about {} of \
                 attempts that would succeed time out (limit {}), each one retried or failed \
                 for nothing",
                at.edge(),
                format(timeout),
                format(left),
                at.call.to,
                format(at.call.rtt),
                percent_text(rate),
                percent_text(allowed)
            ),
            fix: format!("{key} = {fixed}"),
            value: Some(Figure::Number(rate)),
            limit: Some(Figure::Number(allowed)),
            edits: vec![at.set(key, &fixed)],
        },
    );
}

/// The share of healthy attempts timing out past which `timeout-below-latency` is an error.
const MOSTLY: f64 = 0.5;

/// How many depths the fix of `same-timeout-everywhere` spells out before it says "and so on".
const DEPTHS_SPELLED: usize = 4;

/// `same-timeout-everywhere` (warning): three or more calls share one timeout value and sit at
/// two or more different depths (a call's depth is its caller's: the most calls on a path from
/// the entry to it), so timeouts cannot telescope: a caller gives up exactly when its callee
/// does, with no time left for the callee's retries. Calls at one depth sharing a value are
/// siblings, not layers, and are fine. Calls from services the entry does not reach have no
/// depth and are not counted. Reported once per value, on the first call (by service name, then
/// call order) that has it; `value` is the number of calls.
///
/// The fix is timeouts that halve with each depth, from the value at the shallowest one: set,
/// no two depths share a value, so the group no longer fires. Propagating the deadline is not
/// offered: it does not change the values this rule weighs.
fn same_timeout_everywhere(model: &Model<'_>, out: &mut Findings) {
    let mut by_timeout: BTreeMap<Duration, Vec<(usize, usize)>> = BTreeMap::new();
    for s in (0..model.nodes.len()).filter(|&s| model.reachable[s]) {
        for (i, call) in model.nodes[s].calls.iter().enumerate() {
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
        let mut example: Vec<String> = depths
            .iter()
            .take(DEPTHS_SPELLED)
            .enumerate()
            .map(|(k, d)| format!("{} from depth {d}", format(halved(timeout, k))))
            .collect();
        if depths.len() > DEPTHS_SPELLED {
            example.push("halving again for each depth below".to_string());
        }
        let edits = calls
            .iter()
            .filter_map(|&(s, i)| {
                let k = depths.binary_search(&model.depth[s]).ok()?;
                (k > 0).then(|| set(model, s, i, "timeout", &duration_value(halved(timeout, k))))
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
                    "timeouts that shrink with depth, each under its caller's: {}",
                    example.join(", ")
                ),
                value: Some(Figure::Number(calls.len() as f64)),
                limit: None,
                edits,
            },
        );
    }
}

/// `timeout` halved `k` times, for the `k`-th depth of a group below the shallowest; never
/// under a millisecond, since a timeout of nothing fails every call.
fn halved(timeout: Duration, k: usize) -> Duration {
    let divisor = 2u32.saturating_pow(u32::try_from(k).unwrap_or(u32::MAX));
    (timeout / divisor).max(Duration::from_millis(1).min(timeout))
}
