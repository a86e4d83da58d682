//! A rule's timeouts and retry as the Gateway API defines them
//! (kubernetes-sigs/gateway-api `apis/v1/httproute_types.go`, `HTTPRouteTimeouts`,
//! `HTTPRouteRetry`).

use crate::doc::Node;
use crate::error::ImportError;
use crate::inventory::{Inventory, Policy};
use crate::source::Origin;

use super::values::{duration_noting, note_once, push_unique};
use super::RouteDoc;
use crate::toml_text::{bare_duration, string_list};

/// A rule's policy as the Gateway API defines its fields.
pub(super) fn gateway_policy(
    route: &RouteDoc,
    rule: &Node,
    path: &str,
    inv: &mut Inventory,
) -> Result<Policy, ImportError> {
    let doc = route.doc;
    let mut policy = Policy::default();
    let timeouts = rule.get("timeouts");
    let timeout = |key: &str| -> Result<Option<(std::time::Duration, &Node)>, ImportError> {
        let Some(node) = timeouts.and_then(|t| t.get(key)) else {
            return Ok(None);
        };
        let d = doc.duration(node, &format!("{path}.timeouts.{key}"), "500ms or 2s")?;
        Ok(Some((d, node)))
    };
    let request = timeout("request")?;
    let backend = timeout("backendRequest")?;
    if let (Some((r, _)), Some((b, node))) = (request, backend) {
        if !r.is_zero() && b > r {
            return Err(doc.error(
                node,
                &format!("{path}.timeouts.backendRequest"),
                "backendRequest timeout cannot be longer than request timeout (the API server \
                 refuses it)",
            ));
        }
    }
    let origin =
        |node: &Node, key: &str| Origin::at(doc, node, route.what(&format!("{path}.{key}")));
    match request {
        Some((d, node)) if !d.is_zero() => {
            let origin = origin(node, "timeouts.request");
            let text = duration_noting(d, &origin, inv);
            policy.set("request_timeout", text, origin);
        }
        Some(_) => {}
        None => note_once(
            inv,
            Origin::at(doc, rule, route.what(path)),
            "timeouts.request unset",
            "implementation-specific: no request_timeout written (Envoy-based gateways \
             often apply 15s)",
        ),
    }
    if let Some((d, node)) = backend.filter(|(d, _)| !d.is_zero()) {
        let origin = origin(node, "timeouts.backendRequest");
        let text = duration_noting(d, &origin, inv);
        policy.set("timeout", text, origin.clone());
        note_once(
            inv,
            origin,
            "timeouts.backendRequest",
            "approximate: it starts when the request starts being sent, so connecting may not \
             count; stormguard's timeout includes connecting",
        );
    } else if backend.is_none() {
        note_once(
            inv,
            Origin::at(doc, rule, route.what(path)),
            "timeouts.backendRequest unset",
            "implementation-specific: no per-attempt timeout written",
        );
    }
    match rule.get("retry") {
        Some(retry) => retry_policy(route, retry, &format!("{path}.retry"), &mut policy, inv)?,
        None => note_once(
            inv,
            Origin::at(doc, rule, route.what(path)),
            "no retry stanza",
            "retries are the implementation's: none written (Istio's sidecars retry twice by \
             default, Linkerd's not at all)",
        ),
    }
    Ok(policy)
}

/// The graph's most attempts.
const MAX_ATTEMPTS: u64 = 100;

fn retry_policy(
    route: &RouteDoc,
    retry: &Node,
    path: &str,
    policy: &mut Policy,
    inv: &mut Inventory,
) -> Result<(), ImportError> {
    let doc = route.doc;
    let at = |node: &Node, key: &str| Origin::at(doc, node, route.what(&format!("{path}.{key}")));
    note_once(
        inv,
        at(retry, ""),
        "HTTPRoute retry",
        "experimental (GEP-1731); connection errors are retried as the API's SHOULD says \
         (connect-failure, reset, timeout), though GEP-1731 leaves them unresolved",
    );
    // `attempts` counts retries: the API doc says a request "should be retried" that many
    // times, while GEP-1731's prose says "number of attempts". The type's doc is the contract
    // implementations test against, so the first try is added.
    match retry.get("attempts") {
        Some(node) => {
            let retries = node.as_u64().ok_or_else(|| {
                doc.error(
                    node,
                    &format!("{path}.attempts"),
                    "not a count: write a whole number, e.g. 2",
                )
            })?;
            let attempts = retries.saturating_add(1);
            if attempts > MAX_ATTEMPTS {
                inv.unread(
                    at(node, "attempts"),
                    "retry.attempts over 99",
                    "written as 100 attempts, the graph's most",
                );
            }
            policy.set(
                "max_attempts",
                attempts.min(MAX_ATTEMPTS).to_string(),
                at(node, "attempts"),
            );
        }
        None => {
            policy.set(
                "max_attempts",
                "2",
                Origin::Default("Gateway API: retry.attempts unset is implementation-specific; one retry assumed"),
            );
        }
    }
    let mut retry_on = Vec::new();
    let codes = retry.get("codes");
    for (j, code) in codes
        .map(Node::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let status = code
            .as_u64()
            .filter(|c| (400..=599).contains(c))
            .ok_or_else(|| {
                doc.error(
                    code,
                    &format!("{path}.codes[{j}]"),
                    "not a retryable status: write 400 to 599, e.g. 503",
                )
            })?;
        push_unique(&mut retry_on, [status.to_string()]);
    }
    push_unique(
        &mut retry_on,
        ["connect-failure", "reset", "timeout"].map(str::to_string),
    );
    let origin = codes.map_or_else(|| at(retry, ""), |c| at(c, "codes"));
    policy.set("retry_on", string_list(&retry_on), origin);
    match retry.get("backoff") {
        Some(node) => {
            let min = doc.duration(node, &format!("{path}.backoff"), "100ms")?;
            if min.is_zero() {
                policy.set("backoff", "\"none\"", at(node, "backoff"));
            } else {
                policy.set("backoff", floor_backoff(min), at(node, "backoff"));
                note_once(
                    inv,
                    at(node, "backoff"),
                    "retry.backoff",
                    "approximate: Gateway API fixes only the least wait; written as \
                     equal-jitter(base=2×backoff, cap=20×backoff), which never waits less",
                );
            }
        }
        None => note_once(
            inv,
            at(retry, ""),
            "retry.backoff unset",
            "implementation-specific: stormguard's default backoff applies",
        ),
    }
    if policy.get("max_attempts").is_some_and(|m| m.value == "1") {
        // `attempts: 0`: no retry, so no way of retrying to write.
        policy.remove("retry_on");
        policy.remove("backoff");
        return Ok(());
    }
    policy.set(
        "retry_budget",
        "\"none\"",
        Origin::Default("Gateway API: no retry budget in the route"),
    );
    policy.set(
        "idempotent",
        "true",
        Origin::Default("Gateway API: retries any method"),
    );
    Ok(())
}

/// A backoff that never waits less than `min`: equal jitter waits between half and all of
/// base·2^(n−1), so a base of twice the minimum waits at least the minimum from the first retry
/// on, jittered, and growing to 20× the minimum (about where Envoy-based gateways cap theirs).
fn floor_backoff(min: std::time::Duration) -> String {
    let hour = std::time::Duration::from_secs(3600);
    let base = (min * 2).min(hour);
    let cap = (min * 20).min(hour);
    format!(
        "\"equal-jitter(base={}, cap={})\"",
        bare_duration(base),
        bare_duration(cap)
    )
}
