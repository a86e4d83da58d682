//! An `http` route's timeouts and retries as Istio's sidecar applies them (`route.go`
//! `setTimeout`, `retry.go` `ConvertPolicy`): what the route says, Istio's defaults where it is
//! silent, in the graph's keys.

use std::time::Duration;

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{Inventory, Policy};
use crate::source::Origin;
use crate::toml_text::string_list;

use super::values::{
    duration, duration_of, envoy_backoff, positive_duration, set_duration, unread_fields,
};
use super::{
    retry_on, DEFAULT_BACKOFF_BASE_MS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RETRIES, DEFAULT_RETRY_ON,
    ISTIO_DEFAULT, RETRIES_ANY_METHOD,
};

/// The most attempts the graph accepts.
const MAX_ATTEMPTS: u64 = 100;

/// What a route's `retries` say, before it is written as settings.
struct Retries {
    /// Attempts in all, and where that is said.
    max_attempts: (u64, Origin),
    /// The attempt's own timeout (`perTryTimeout`), if set.
    per_try: Option<(Duration, Origin)>,
    /// The conditions and where they are said; `None` with no retries.
    retry_on: Option<(String, Origin)>,
    /// The backoff text and where it is said; `None` with no retries.
    backoff: Option<(String, Origin)>,
}

/// The route's timeouts and retries, as Istio's sidecar applies them.
pub(super) fn read_policy(
    doc: &Document,
    http: &Node,
    path: &str,
    what: &str,
    inv: &mut Inventory,
) -> Result<Policy, ImportError> {
    // `timeout`: "default is disabled" (Istio writes Envoy's route timeout as 0); 0s disables.
    let request_timeout = match http.get("timeout") {
        Some(node) => {
            let value = duration(doc, node, &format!("{path}.timeout"))?;
            (!value.is_zero()).then_some((value, node))
        }
        None => None,
    };
    let retries = match http.get("retries") {
        None => Retries {
            max_attempts: (DEFAULT_RETRIES + 1, ISTIO_DEFAULT),
            per_try: None,
            retry_on: Some((string_list(&DEFAULT_RETRY_ON), ISTIO_DEFAULT)),
            backoff: Some((
                envoy_backoff(Duration::from_millis(DEFAULT_BACKOFF_BASE_MS)),
                ISTIO_DEFAULT,
            )),
        },
        Some(retries) => read_retries(doc, retries, path, what, inv)?,
    };
    let mut policy = Policy::default();
    match (retries.per_try, request_timeout) {
        (Some((value, origin)), _) => set_duration(&mut policy, "timeout", value, origin, inv),
        // Without `perTryTimeout`, each attempt has the route timeout (Envoy's
        // `per_try_timeout` unset): the attempt's `timeout` is the request's.
        (None, Some((value, node))) => set_duration(
            &mut policy,
            "timeout",
            value,
            Origin::at(
                doc,
                node,
                format!("{what}.timeout (per attempt too: perTryTimeout unset)"),
            ),
            inv,
        ),
        (None, None) => {}
    }
    if let Some((value, node)) = request_timeout {
        let origin = Origin::at(doc, node, format!("{what}.timeout"));
        set_duration(&mut policy, "request_timeout", value, origin, inv);
    }
    clamp_to_request_timeout(&mut policy, what, inv);
    policy.set("connect_timeout", DEFAULT_CONNECT_TIMEOUT, ISTIO_DEFAULT);
    let (tries, origin) = retries.max_attempts;
    // Where the backoff note points: the backoff, else the attempts it is between, else the
    // route whose default retries they are (it pointed at the document's first line).
    let retried_at = match &origin {
        Origin::File { .. } => origin.clone(),
        _ => Origin::at(doc, http, what.to_string()),
    };
    policy.set("max_attempts", tries.to_string(), origin);
    if tries > 1 {
        if let Some((value, origin)) = retries.retry_on {
            policy.set("retry_on", value, origin);
        }
        if let Some((value, origin)) = retries.backoff {
            let at = match &origin {
                Origin::File { .. } => origin.clone(),
                _ => retried_at,
            };
            policy.set("backoff", value, origin);
            note_backoff_once(inv, &doc.file, at);
        }
        policy.set("retry_budget", "\"none\"", ISTIO_DEFAULT);
        policy.set("idempotent", "true", RETRIES_ANY_METHOD);
    }
    Ok(policy)
}

/// Reads a route's `retries` (`retry.go` `ConvertPolicy`: Istio's default policy with the
/// fields given laid over it; `attempts` 0 or unset: no retry policy at all).
fn read_retries(
    doc: &Document,
    retries: &Node,
    path: &str,
    what: &str,
    inv: &mut Inventory,
) -> Result<Retries, ImportError> {
    let field = format!("{path}.retries");
    let here = format!("{what}.retries");
    let attempts = match retries.get("attempts") {
        Some(node) => {
            let text = node.as_str().unwrap_or_default().trim();
            match text.parse::<i64>() {
                Ok(n) if n >= 0 => Some((n as u64, node)),
                Ok(_) => {
                    return Err(doc.error(
                        node,
                        &format!("{field}.attempts"),
                        "must be 0 or more (retries after the first attempt; 0 turns retries \
                         off)",
                    ))
                }
                Err(_) => {
                    return Err(doc.error(
                        node,
                        &format!("{field}.attempts"),
                        "not a whole number of retries",
                    ))
                }
            }
        }
        None => None,
    };
    let (n, attempts_node) = match attempts {
        Some((n, node)) if n > 0 => (n, node),
        _ => {
            // `attempts` 0, or unset (proto3 reads 0): Istio writes no retry policy at all
            // ("explicitly disabling the retry policy"), so the other fields do nothing, a
            // per-try timeout included.
            let (node, note) = match attempts {
                Some((_, node)) => (node, format!("{here}.attempts")),
                None => (retries, format!("{here} (attempts unset: 0, no retries)")),
            };
            const NO_EFFECT: &str = "no effect: attempts is 0, so Istio writes no retry policy";
            let ignored = [
                ("perTryTimeout", NO_EFFECT),
                ("retryOn", NO_EFFECT),
                ("backoff", NO_EFFECT),
            ];
            unread_fields(doc, retries, &here, &ignored, inv);
            return Ok(Retries {
                max_attempts: (1, Origin::at(doc, node, note)),
                per_try: None,
                retry_on: None,
                backoff: None,
            });
        }
    };
    let origin = Origin::at(doc, attempts_node, format!("{here}.attempts"));
    if n + 1 > MAX_ATTEMPTS {
        inv.unread(
            origin.clone(),
            format!("{here}.attempts: {n}"),
            "more than the graph's 100 attempts: written as 100",
        );
    }
    let per_try = match retries.get("per_try_timeout") {
        Some(node) => Some((
            positive_duration(doc, node, &format!("{field}.perTryTimeout"))?,
            Origin::at(doc, node, format!("{here}.perTryTimeout")),
        )),
        None => None,
    };
    let retry_on = match retries
        .get("retry_on")
        .filter(|t| t.as_str().is_some_and(|t| !t.trim().is_empty()))
    {
        Some(node) => {
            let text = node.as_str().unwrap_or_default();
            let mapped = retry_on::map(text, per_try.is_some())
                .map_err(|e| doc.error(node, &format!("{field}.retryOn"), e))?;
            let origin = Origin::at(doc, node, format!("{here}.retryOn"));
            for (item, why) in &mapped.unread {
                inv.unread(origin.clone(), format!("{here}.retryOn {item}"), *why);
            }
            (string_list(&mapped.conditions), origin)
        }
        None => (string_list(&DEFAULT_RETRY_ON), ISTIO_DEFAULT),
    };
    let backoff = match retries.get("backoff") {
        Some(node) => (
            envoy_backoff(positive_duration(doc, node, &format!("{field}.backoff"))?),
            Origin::at(doc, node, format!("{here}.backoff")),
        ),
        None => (
            envoy_backoff(Duration::from_millis(DEFAULT_BACKOFF_BASE_MS)),
            ISTIO_DEFAULT,
        ),
    };
    let informational = [
        (
            "retryRemoteLocalities",
            "retries to other localities: the graph does not model localities",
        ),
        (
            "retryIgnorePreviousHosts",
            "whether a retry avoids the instances already tried (Istio's default: it does); \
             the graph's retries pick any instance",
        ),
    ];
    unread_fields(doc, retries, &here, &informational, inv);
    Ok(Retries {
        max_attempts: ((n + 1).min(MAX_ATTEMPTS), origin),
        per_try,
        retry_on: Some(retry_on),
        backoff: Some(backoff),
    })
}

/// The graph refuses an attempt's `timeout` above the whole call's: Envoy's per-try timeout
/// above the route timeout never fires (the route timeout does first), so it is written as the
/// route timeout.
fn clamp_to_request_timeout(policy: &mut Policy, what: &str, inv: &mut Inventory) {
    let (Some(timeout), Some(request)) = (policy.get("timeout"), policy.get("request_timeout"))
    else {
        return;
    };
    let (Some(per_try), Some(whole)) = (duration_of(&timeout.value), duration_of(&request.value))
    else {
        return;
    };
    if per_try <= whole {
        return;
    }
    let origin = timeout.origin.clone();
    let value = request.value.clone();
    inv.unread(
        origin.clone(),
        format!(
            "{what}.retries.perTryTimeout {}",
            timeout.value.trim_matches('"')
        ),
        format!(
            "longer than the route's timeout {}, which ends the attempt first: written as that",
            value.trim_matches('"')
        ),
    );
    policy.set("timeout", value, origin);
}

/// Lists once per file, at the first retries it applies to (`at`), that Envoy's backoff grows
/// faster than the graph's.
fn note_backoff_once(inv: &mut Inventory, file: &std::sync::Arc<str>, at: Origin) {
    if inv.istio.backoff_noted.contains(file) {
        return;
    }
    inv.istio.backoff_noted.push(file.clone());
    inv.unread(
        at,
        "retries backoff (Envoy's formula)",
        "approximate: Envoy waits up to (2^N−1)·base before retry N, the graph's full-jitter \
         up to 2^(N−1)·base, both capped at 10 × base",
    );
}
