//! Rules on retries and hedges: how many attempts, where in the stack, with what backoff and
//! budget, and on which calls retrying is safe at all. A retry helps against a one-off failure
//! and hurts against overload; these rules keep retries on the helpful side.

use stormguard::backoff::Backoff;
use stormguard::classify::{Condition, RetryOn};

use super::{CallAt, Findings, Said, BUDGET_VALUE};
use crate::check::figure::Figure;
use crate::check::figures::{attempts, retries};
use crate::report::Severity;

/// Every per-call retry and hedge rule.
pub(super) fn on_call(at: &CallAt<'_, '_>, out: &mut Findings) {
    layered_retries(at, out);
    too_many_attempts(at, out);
    retry_without_backoff(at, out);
    backoff_without_jitter(at, out);
    retry_without_budget(at, out);
    non_idempotent_retry(at, out);
    single_instance_retry(at, out);
    hedge_without_budget(at, out);
}

/// `layered-retries` (warning): this call retries, and so does another call above it on some
/// path from the entry. Fires on every retrying call but the topmost of each path: the most
/// retrying calls on any path to the caller (a dynamic programme, not a walk of the paths) is
/// at least one. Calls from services the entry does not reach are not judged.
fn layered_retries(at: &CallAt<'_, '_>, out: &mut Findings) {
    let above = at.model.retry_layers[at.service];
    if !retries(at.call) || !at.model.reachable[at.service] || above == 0 {
        return;
    }
    let layers = if above == 1 {
        "another retrying layer".to_string()
    } else {
        format!("{above} other retrying layers")
    };
    out.on_call(
        at,
        Said {
            rule: "layered-retries",
            severity: Severity::Warning,
            message: format!(
                "{} retries ({} attempts) below {layers} on a path from {}: a failure at the \
                 bottom is retried at every layer, and the attempts multiply (retry at one point \
                 in the stack)",
                at.edge(),
                at.call.max_attempts,
                at.model.graph.entry.service
            ),
            fix: "max_attempts = 1 here, leaving the retries to one layer".to_string(),
            value: Some(Figure::Number(f64::from(above + 1))),
            limit: Some(Figure::Number(1.0)),
            edits: vec![at.set("max_attempts", "1")],
        },
    );
}

/// `too-many-attempts` (warning): `max_attempts > 2`. One retry rides out a one-off failure;
/// when it fails too, the callee is most likely down or overloaded, and more attempts add load
/// exactly then.
fn too_many_attempts(at: &CallAt<'_, '_>, out: &mut Findings) {
    // A call that retries nothing (`non-idempotent-retry` says so) makes one attempt.
    if !retries(at.call) || at.call.max_attempts <= 2 {
        return;
    }
    out.on_call(
        at,
        Said {
            rule: "too-many-attempts",
            severity: Severity::Warning,
            message: format!(
                "{} makes up to {} attempts: when a retry fails too, {} is most likely down or \
                 overloaded, and each further attempt adds load exactly then",
                at.edge(),
                at.call.max_attempts,
                at.call.to
            ),
            fix: "max_attempts = 2".to_string(),
            value: Some(Figure::Number(f64::from(at.call.max_attempts))),
            limit: Some(Figure::Number(2.0)),
            edits: vec![at.set("max_attempts", "2")],
        },
    );
}

/// Whether a backoff never waits: `none`, or a kind whose every delay is zero (a
/// `Constant(0)`, or a zero base or cap, built in code: a file's text is refused). A retry
/// behind it arrives at once.
fn waits_nothing(backoff: &Backoff) -> bool {
    // Delays never decrease with the retry number, so the last one is the largest.
    backoff.max_delay(u32::MAX).is_zero()
}

/// `retry-without-backoff` (warning): the call retries with a backoff that never waits
/// (`none`, or a zero delay built in code), so the retry arrives at once, while the callee is
/// still failing.
fn retry_without_backoff(at: &CallAt<'_, '_>, out: &mut Findings) {
    if !retries(at.call) || !waits_nothing(&at.call.backoff) {
        return;
    }
    let how = if at.call.backoff == Backoff::None {
        "with no backoff".to_string()
    } else {
        format!("with backoff {}, which never waits", at.call.backoff)
    };
    let backoff = format!("\"{}\"", Backoff::default());
    out.on_call(
        at,
        Said {
            rule: "retry-without-backoff",
            severity: Severity::Warning,
            message: format!(
                "{} retries ({} attempts) {how}: each retry arrives at once, adding load while {} \
                 is still failing",
                at.edge(),
                at.call.max_attempts,
                at.call.to
            ),
            fix: format!("backoff = {backoff}"),
            value: None,
            limit: None,
            edits: vec![at.set("backoff", &backoff)],
        },
    );
}

/// `backoff-without-jitter` (warning): `constant` or `exponential` backoff that waits, on a call
/// that retries. Only retrying calls are judged, since a backoff that never runs does no harm;
/// one that never waits is `retry-without-backoff`'s. Clients that failed together wait the same
/// delay and return together, in lockstep (Brooker). The fix keeps the same delays as the
/// largest of a full jitter (`full-jitter(base=d, cap=d)` for `constant(d)`), so it never adds
/// waiting, and is always a text the parser accepts (a base above zero, at most the cap).
fn backoff_without_jitter(at: &CallAt<'_, '_>, out: &mut Findings) {
    let backoff = at.call.backoff;
    if !retries(at.call) || backoff.is_jittered() || waits_nothing(&backoff) {
        return;
    }
    let jittered = match backoff {
        Backoff::Constant(delay) => Backoff::FullJitter {
            base: delay,
            cap: delay,
        },
        Backoff::Exponential { base, cap } if !base.is_zero() => Backoff::FullJitter {
            base: base.min(cap),
            cap,
        },
        _ => Backoff::default(),
    };
    let jittered = format!("\"{jittered}\"");
    out.on_call(
        at,
        Said {
            rule: "backoff-without-jitter",
            severity: Severity::Warning,
            message: format!(
                "{} backs off with {backoff}, the same delays in every client: clients that \
                 failed together retry together, in lockstep, and fail again (Brooker)",
                at.edge(),
            ),
            fix: format!("backoff = {jittered}"),
            value: None,
            limit: None,
            edits: vec![at.set("backoff", &jittered)],
        },
    );
}

/// `retry-without-budget` (warning): the call retries with neither `retry_budget` nor
/// `token_bucket`, so when the callee fails for everyone every request is retried and the
/// callee gets `max_attempts` times its load.
fn retry_without_budget(at: &CallAt<'_, '_>, out: &mut Findings) {
    if !retries(at.call) || at.call.limiter.is_some() {
        return;
    }
    out.on_call(
        at,
        Said {
            rule: "retry-without-budget",
            severity: Severity::Warning,
            message: format!(
                "{} retries ({} attempts) with neither retry_budget nor token_bucket: when {} \
                 fails for everyone, every request is retried and it gets {}x its load exactly \
                 when it is struggling",
                at.edge(),
                at.call.max_attempts,
                at.call.to,
                at.call.max_attempts
            ),
            fix: format!("retry_budget = {BUDGET_VALUE}"),
            value: None,
            limit: None,
            edits: vec![at.set("retry_budget", BUDGET_VALUE)],
        },
    );
}

/// `non-idempotent-retry` (warning): a call with `idempotent = false` whose file says more than
/// happens. The policy core never sends such a request again once it may have been applied: it
/// retries only the failures before the request was sent and the answers that decline it
/// ([`Call::retried_on`]), and never hedges it. A `retry_on` that lists `timeout` or `500` on
/// such a call, or a hedge, is a setting the proxy and the simulator ignore, and a reader of the
/// file is misled. The default `retry_on` is not judged (its timeouts and errors after sending
/// are documented as for idempotent calls), nor the default part of a list that extends it.
///
/// A call that is not idempotent and retries a refused connection is the safe setting this
/// rule once called an error: the request never reached the callee.
fn non_idempotent_retry(at: &CallAt<'_, '_>, out: &mut Findings) {
    let call = at.call;
    if call.is_idempotent() {
        return;
    }
    let hedged = call.hedge.is_some();
    let listed = if call.max_attempts > 1 {
        retry_on_not_kept(call.retry_on)
    } else {
        NotKept::default()
    };
    // Attempts to spare and nothing to retry them on (an empty list, which the file takes only
    // beside a hedge, or one of which nothing is kept): one attempt is what is sent.
    let retries_nothing = call.max_attempts > 1 && call.retried_on().is_empty();
    if listed.dropped.is_empty() && listed.narrowed.is_empty() && !hedged && !retries_nothing {
        return;
    }
    let mut what = Vec::new();
    if !listed.dropped.is_empty() {
        what.push(format!(
            "its retry_on's {} {} never retried",
            sentence(
                &listed
                    .dropped
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
            ),
            if listed.dropped.len() == 1 {
                "is"
            } else {
                "are"
            }
        ));
    }
    if !listed.narrowed.is_empty() {
        let parts: Vec<String> = listed
            .narrowed
            .iter()
            .enumerate()
            .map(|(i, (condition, how))| match i {
                0 => format!("{condition} is retried only {how}"),
                _ => format!("{condition} only {how}"),
            })
            .collect();
        what.push(format!("its retry_on's {}", sentence(&parts)));
    }
    if hedged {
        what.push("its hedge is never sent".to_string());
    }
    let mut edits = Vec::new();
    let mut fixes = Vec::new();
    if retries_nothing {
        edits.push(at.set("max_attempts", "1"));
        fixes.push("max_attempts = 1 (nothing it could retry is listed)".to_string());
    } else if !listed.dropped.is_empty() || !listed.narrowed.is_empty() {
        let list = listed.kept_text();
        edits.push(at.set("retry_on", &list));
        fixes.push(format!("retry_on = {list} (what is retried)"));
    }
    if hedged {
        edits.push(at.remove("hedge"));
        fixes.push("no hedge".to_string());
    }
    let why = match call.idempotent {
        crate::model::Idempotent::ByMethod => format!(" ({} requests)", call.method),
        _ => String::new(),
    };
    out.on_call(
        at,
        Said {
            rule: "non-idempotent-retry",
            severity: Severity::Warning,
            message: format!(
                "{} is not idempotent{why}, so an attempt that may have been applied is never \
                 sent again (only failures before the request was sent, and answers that \
                 decline it, such as 503 or 429, are retried): {}",
                at.edge(),
                what.join("; ")
            ),
            fix: format!(
                "{}: settings that say what happens; or make the call idempotent (an \
                 idempotency key the callee honours) and set idempotent = true",
                fixes.join(" and ")
            ),
            value: None,
            limit: None,
            edits,
        },
    );
}

/// What a non-idempotent call's `retry_on` lists that the policy core does not retry as listed.
struct NotKept {
    /// Conditions never retried for such a call.
    dropped: Vec<Condition>,
    /// Conditions retried only in part, with that part in words.
    narrowed: Vec<(Condition, &'static str)>,
    /// Whether the list includes the whole default list (`"default"`), which is not judged.
    extends_default: bool,
    /// The conditions judged that are kept, in part or whole, as the policy core retries them.
    kept: RetryOn,
}

impl Default for NotKept {
    /// Nothing judged: `kept` is the empty set, not [`RetryOn::default`].
    fn default() -> Self {
        NotKept {
            dropped: Vec::new(),
            narrowed: Vec::new(),
            extends_default: false,
            kept: RetryOn::none(),
        }
    }
}

impl NotKept {
    /// The list that says what is retried: `"default"` and the kept part of what a list that
    /// extends the default adds to it; else the kept part of the whole list.
    fn kept_text(&self) -> String {
        let mut items: Vec<String> = Vec::new();
        if self.extends_default {
            items.push("\"default\"".to_string());
        }
        items.extend(self.kept.conditions().iter().map(|c| format!("\"{c}\"")));
        format!("[{}]", items.join(", "))
    }
}

/// The conditions of a non-idempotent call's `retry_on` that the policy core does not retry as
/// listed: those it never retries for such a call, and those it retries only in part. Of a
/// list that includes the whole default list, only what it adds is judged.
fn retry_on_not_kept(listed: RetryOn) -> NotKept {
    let default = RetryOn::default();
    let mut out = NotKept::default();
    if listed == default {
        return out;
    }
    out.extends_default = listed.union(default) == listed;
    for condition in listed.conditions() {
        if out.extends_default && default.has(condition) {
            continue;
        }
        let alone = RetryOn::none().with(condition);
        let kept = alone.for_any_method();
        out.kept = out.kept.union(kept);
        if kept.is_empty() {
            out.dropped.push(condition);
        } else if kept != alone {
            out.narrowed.push((
                condition,
                match condition {
                    Condition::Reset => "before the request is written",
                    _ => "as 503",
                },
            ));
        }
    }
    out
}

/// Items as a sentence lists them: `timeout`, `timeout and 502`, `a, b and c`.
fn sentence(names: &[String]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// `single-instance-retry` (warning): the call retries to a service with one instance, so the
/// retry goes to the instance that just failed.
fn single_instance_retry(at: &CallAt<'_, '_>, out: &mut Findings) {
    let Some(callee) = at.callee_service() else {
        return;
    };
    let instances = callee.instances;
    if !retries(at.call) || instances > 1 {
        return;
    }
    out.on_call(
        at,
        Said {
            rule: "single-instance-retry",
            severity: Severity::Warning,
            message: format!(
                "{} retries ({} attempts) to {}, which has {instances} instance{}: the retry \
                 goes to the instance that just failed",
                at.edge(),
                attempts(at.call),
                at.call.to,
                if instances == 1 { "" } else { "s" }
            ),
            fix: format!(
                "max_attempts = 1, or instances = 2 or more on {}",
                at.call.to
            ),
            value: Some(Figure::Number(f64::from(instances))),
            limit: Some(Figure::Number(2.0)),
            // The edit is the call's own setting: how many instances run is the deployment's
            // capacity, which the file describes rather than decides.
            edits: vec![at.set("max_attempts", "1")],
        },
    );
}

/// The hedge budget from which `hedge-without-budget` fires.
const HEDGE_BUDGET_LIMIT: f64 = 0.5;

/// `hedge-without-budget` (warning): a hedge whose `max_extra` is half the requests or more
/// (a hedge without `max_extra` gets 0.05). When the callee slows down for everyone, every
/// request passes the hedge delay and is sent twice, so such a budget lets the load nearly
/// double exactly when the callee is slow.
fn hedge_without_budget(at: &CallAt<'_, '_>, out: &mut Findings) {
    let Some(hedge) = at.call.hedge else {
        return;
    };
    // A call that is not idempotent is never hedged (`non-idempotent-retry` says so).
    if hedge.max_extra < HEDGE_BUDGET_LIMIT || !at.call.is_idempotent() {
        return;
    }
    let budgeted = format!("{{ delay = \"{}\", max_extra = 0.05 }}", hedge.delay);
    out.on_call(
        at,
        Said {
            rule: "hedge-without-budget",
            severity: Severity::Warning,
            message: format!(
                "{} hedges after {} with max_extra = {}: when {} slows down for everyone, every \
                 request is hedged and it gets up to {:.0}% more load exactly when it is slow",
                at.edge(),
                hedge.delay,
                hedge.max_extra,
                at.call.to,
                hedge.max_extra * 100.0
            ),
            fix: format!("hedge = {budgeted}"),
            value: None,
            limit: None,
            edits: vec![at.set("hedge", &budgeted)],
        },
    );
}
