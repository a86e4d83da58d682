//! Which edits a round writes: the findings' edits of the earliest stage that has any, one
//! value per setting.
//!
//! A setting two findings disagree on (three attempts: `layered-retries` says 1,
//! `too-many-attempts` 2) takes the value of the more severe finding, then of the rule listed
//! first in its stage: the lists are in order of precedence, the rule that asks for the safer
//! value first.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{Call, Graph};

use crate::report::{Edit, Finding};

/// The rules with edits, by stage, each stage in order of precedence.
///
/// 1. Attempts: every other retry setting is judged only on calls that still retry, so a call
///    cut to one attempt gets no budget or backoff it does not need.
/// 2. A call's own settings, which no figure of the graph depends on except through costs, and
///    a service's queue discipline, which none depends on.
/// 3. The shape of the timeouts: one on every call, above the callee's latency, shrinking with
///    depth.
/// 4. Timeouts against worst cases: what the user waits first (`entry-budget` cuts from the
///    top), then each caller against its callee (`timeout-inversion` cuts the callee's calls to
///    fit, or covers the callee).
pub(super) const STAGES: [&[&str]; 4] = [
    &[
        "non-idempotent-retry",
        "retry-amplification",
        "layered-retries",
        "single-instance-retry",
        "too-many-attempts",
        "attempts-cannot-fit",
    ],
    &[
        "retry-without-budget",
        "retry-without-backoff",
        "backoff-without-jitter",
        "hedge-without-budget",
        "connect-timeout-below-rtt",
        "connect-timeout-too-long",
        "missing-connect-timeout",
        "queue-outlives-caller",
    ],
    &[
        "missing-timeout",
        "timeout-below-latency",
        "same-timeout-everywhere",
    ],
    &["entry-budget", "timeout-inversion"],
];

/// A rule's stage and its place in it; a rule in no stage (one added without updating the
/// list) comes last, after every listed rule.
fn rank(rule: &str) -> (usize, usize) {
    STAGES
        .iter()
        .enumerate()
        .find_map(|(stage, rules)| Some((stage, rules.iter().position(|r| *r == rule)?)))
        .unwrap_or((STAGES.len(), 0))
}

/// The edits to write this round, each with the rule that proposed it, in a stable order (by
/// call and key): those of the earliest stage from `from` on with any, one per setting, with
/// that stage. `None` when no finding of those stages has an edit.
///
/// `from` is past 0 when the earlier stages' edits are written already (values that a later
/// stage's change will move: a connect timeout that can be no longer until the timeout above
/// it is raised), so that they do not stop the fixer while a later stage still has work.
pub(super) fn chosen(
    findings: &[Finding],
    from: usize,
) -> Option<(usize, Vec<(&Edit, &'static str)>)> {
    let with_edits = findings
        .iter()
        .filter(|f| !f.edits.is_empty() && rank(f.rule).0 >= from);
    let stage = with_edits.clone().map(|f| rank(f.rule).0).min()?;
    type Setting<'a> = (&'a str, Option<&'a str>, Option<usize>, &'a str);
    let mut by_setting: BTreeMap<Setting<'_>, (&Finding, &Edit)> = BTreeMap::new();
    for finding in with_edits.filter(|f| rank(f.rule).0 == stage) {
        for edit in &finding.edits {
            let setting = (
                edit.from.as_str(),
                edit.endpoint.as_deref(),
                edit.index,
                edit.key,
            );
            let wins = by_setting.get(&setting).is_none_or(|(held, _)| {
                (std::cmp::Reverse(finding.severity), rank(finding.rule).1)
                    < (std::cmp::Reverse(held.severity), rank(held.rule).1)
            });
            if wins {
                by_setting.insert(setting, (finding, edit));
            }
        }
    }
    let edits = by_setting
        .into_values()
        .map(|(finding, edit)| (edit, finding.rule))
        .collect();
    Some((stage, edits))
}

/// `edits` with, for each that sets a call's `timeout` below the call's `connect_timeout`, the
/// connect timeout lowered to it, under the same rule: an attempt's timeout covers connecting,
/// so the file refuses a connect timeout above it, and a connect timeout sized to survive a
/// lost SYN (1100ms on a call of one attempt) must follow a timeout cut below it. Likewise a
/// fixed hedge delay at or above the new timeout, which the file refuses (the copy would never
/// be sent): halved from the timeout, its `max_extra` kept, so the hedge can still fire.
pub(super) fn with_connect_caps(
    graph: &Graph,
    edits: Vec<(&Edit, &'static str)>,
) -> Vec<(Edit, &'static str)> {
    let mut out: Vec<(Edit, &'static str)> = edits
        .iter()
        .map(|(edit, rule)| ((*edit).clone(), *rule))
        .collect();
    for (edit, rule) in edits {
        if edit.key != "timeout" {
            continue;
        }
        let Some(timeout) = edit.value.as_deref().and_then(duration_of) else {
            continue;
        };
        let sets_connect = out.iter().any(|(other, _)| {
            other.key == "connect_timeout"
                && (&other.from, &other.endpoint, other.index)
                    == (&edit.from, &edit.endpoint, edit.index)
        });
        let Some(call) = call_of(graph, edit) else {
            continue;
        };
        if let Some(cap) = hedge_cap(call, edit, timeout, &out) {
            out.push((cap, rule));
        }
        if sets_connect || call.connect_timeout.is_none_or(|c| c <= timeout) {
            continue;
        }
        let mut cap = edit.clone();
        cap.key = "connect_timeout";
        out.push((cap, rule));
    }
    out
}

/// The edit of `call`'s hedge for timeout `edit` setting `timeout`: a fixed delay at or above it
/// becomes half of it; `None` when the hedge has no such delay or another edit sets or removes
/// it already.
fn hedge_cap(
    call: &Call,
    edit: &Edit,
    timeout: Duration,
    others: &[(Edit, &'static str)],
) -> Option<Edit> {
    let hedge = call.hedge?;
    let stormguard::hedge::HedgeDelay::Fixed(delay) = hedge.delay else {
        return None;
    };
    let touched = others.iter().any(|(other, _)| {
        other.key == "hedge"
            && (&other.from, &other.endpoint, other.index)
                == (&edit.from, &edit.endpoint, edit.index)
    });
    if delay < timeout || touched {
        return None;
    }
    let mut cap = edit.clone();
    cap.key = "hedge";
    // Half the timeout, but never below the shortest fixed delay a file takes (a timeout cut
    // to 1ms once halved the delay to 500us, a file the parser refuses); a timeout with no room
    // for a copy before it fires keeps no hedge.
    let delay = (timeout / 2).max(stormguard::hedge::MIN_DELAY);
    cap.value = (delay < timeout).then(|| {
        format!(
            "{{ delay = \"{}\", max_extra = {} }}",
            stormguard::duration::format(delay),
            hedge.max_extra
        )
    });
    Some(cap)
}

/// A duration written as TOML text (`"39ms"`), as edits hold it.
fn duration_of(value: &str) -> Option<Duration> {
    let text = value.strip_prefix('"')?.strip_suffix('"')?;
    stormguard::duration::parse(text).ok()
}

/// The call an edit is on, in the graph the edit was proposed from.
fn call_of<'g>(graph: &'g Graph, edit: &Edit) -> Option<&'g Call> {
    let service = graph.services.get(&edit.from)?;
    let calls = match &edit.endpoint {
        Some(name) => &service.endpoint(name)?.calls,
        None => &service.calls,
    };
    calls.get(edit.index?)
}
