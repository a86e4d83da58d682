//! The findings only the assembled calls make possible: a mesh that replays a request that is
//! not idempotent, and a mesh's retries on top of the application's.

use stormguard::classify::RetryOn;
use stormguard_graph::model::http_method_is_idempotent;
use stormguard_graph::Severity;

use super::placement::Chosen;
use crate::inventory::{Host, ImportFinding, Remedy, System};
use crate::source::Origin;
use crate::toml_text::quoted;

/// The retry conditions that never fire once the request may have reached the server: safe to
/// retry for any method.
pub(super) const BEFORE_SEND: [&str; 3] =
    ["connect-failure", "refused-stream", "reset-before-request"];

/// Whether retry condition `text` may fire after the server received the request (a reset or
/// a timeout after it was sent, a 5xx other than 503, a gRPC status of a call that ran): then a
/// retry may apply the request twice. The policy core's own line
/// ([`RetryOn::for_any_method`]: what it retries of a request that is not idempotent), so the
/// import and `check` agree on which retries are safe. `default` stands for the default list,
/// which has such conditions.
///
/// Through an Envoy-based mesh (Envoy, Istio) 503 and gRPC `unavailable` fire after sending
/// too: the server's own sidecar answers them when the connection to its application drops
/// after the request was forwarded (the export's `envoy_safe` says the same).
fn fires_after_send(text: &str, system: System) -> bool {
    RetryOn::parse_list([text]).is_ok_and(|alone| safe_for(alone.for_any_method(), system) != alone)
}

/// The conditions of `items` (a TOML list's, as the import wrote them) that are retried for any
/// method, as the policy core retries them (`5xx` as 503, `reset` before the request only),
/// and as `system` can retry them safely.
fn safe_part(items: &[String], system: System) -> RetryOn {
    let listed = items
        .iter()
        .filter_map(|item| RetryOn::parse_list([item.as_str()]).ok())
        .fold(RetryOn::none(), RetryOn::union);
    safe_for(listed.for_any_method(), system)
}

/// `kept` without what `system`'s proxies answer themselves after a request was forwarded.
fn safe_for(kept: RetryOn, system: System) -> RetryOn {
    if !matches!(system, System::Envoy | System::Istio) {
        return kept;
    }
    kept.conditions()
        .into_iter()
        .filter(|c| !crate::envoy_names::answered_by_sidecar_after_forward(c))
        .fold(RetryOn::none(), RetryOn::with)
}

/// The items of a TOML list of strings.
pub(super) fn items(list: &str) -> Vec<String> {
    toml::from_str::<toml::Table>(&format!("v = {list}"))
        .ok()
        .and_then(|t| t.get("v").and_then(|v| v.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i.as_str().map(str::to_string))
        .collect()
}

/// Attempts a policy makes: its `max_attempts`, 1 when it has none.
pub(super) fn attempts(chosen: &Chosen) -> u32 {
    chosen
        .policy
        .get("max_attempts")
        .and_then(|s| s.value.trim().parse().ok())
        .unwrap_or(1)
}

/// `mesh-retries-non-idempotent` (error): the call's method is not idempotent, the mesh's
/// default made it `idempotent = true` (the user never said so), and it retries on a condition
/// that fires after the request was sent: the mesh replays a POST that may have been applied.
pub(super) fn non_idempotent(
    caller: &str,
    to: &str,
    chosen: &Chosen,
    method: Option<&str>,
) -> Option<ImportFinding> {
    let method = method?;
    let edge = format!("{caller} -> {to}");
    let policy = &chosen.policy;
    let idempotent = policy.get("idempotent")?;
    let by_default = matches!(idempotent.origin, Origin::Default(_));
    let retries = attempts(chosen) > 1 || policy.get("hedge").is_some();
    if http_method_is_idempotent(method)
        || idempotent.value.trim() != "true"
        || !by_default
        || !retries
    {
        return None;
    }
    let retry_on = policy.get("retry_on")?;
    let conditions = items(&retry_on.value);
    let after: Vec<&String> = conditions
        .iter()
        .filter(|c| fires_after_send(c, chosen.system))
        .collect();
    if after.is_empty() {
        return None;
    }
    let mut safe: Vec<String> = BEFORE_SEND.iter().map(|s| quoted(s)).collect();
    for kept in safe_part(&conditions, chosen.system).conditions() {
        let name = kept.to_string();
        if !BEFORE_SEND.contains(&name.as_str()) {
            safe.push(quoted(&name));
        }
    }
    let after: Vec<&str> = after.iter().map(|s| s.as_str()).collect();
    // A Gateway API route retries connection errors, resets and timeouts after sending
    // included, whenever it retries at all: no list of conditions is safe there, only none.
    let (fix, key, value) = if chosen.system == System::GatewayApi {
        (
            format!(
                "max_attempts = 1 (retry.attempts: 0) on the route ({}): Gateway API \
                 implementations retry resets and timeouts whenever a retry is set; or make the \
                 request idempotent (an idempotency key the callee honours)",
                chosen.origin.short()
            ),
            "max_attempts",
            "1".to_string(),
        )
    } else {
        (
            format!(
                "retry_on = [{}] on the route ({}), or make the request idempotent (an \
                 idempotency key the callee honours)",
                safe.join(", "),
                chosen.origin.short()
            ),
            "retry_on",
            format!("[{}]", safe.join(", ")),
        )
    };
    Some(ImportFinding {
        rule: "mesh-retries-non-idempotent",
        severity: Severity::Error,
        host: Some(Host::new(to, None)),
        message: format!(
            "{edge} sends {method} requests, which are not idempotent, and the mesh retries them \
             on {} ({}), conditions that fire after the request was sent: the mesh replays a \
             {method} that may have been applied (the graph says idempotent = true for what the \
             mesh does, {})",
            after.join(", "),
            retry_on.origin.short(),
            idempotent.origin,
        ),
        fix,
        origin: chosen.origin.clone(),
        remedy: Some(Remedy {
            caller: caller.to_string(),
            to: to.to_string(),
            key,
            value,
        }),
    })
}

/// `mesh-retries-stacked` (warning): the application's own call makes up to `app` attempts, each
/// through a sidecar that makes up to `mesh`: the callee gets up to `app × mesh`.
pub(super) fn stacked(
    caller: &str,
    to: &str,
    app: u32,
    chosen: &Chosen,
    at: Origin,
) -> Option<ImportFinding> {
    let mesh = attempts(chosen);
    if app <= 1 || mesh <= 1 {
        return None;
    }
    Some(ImportFinding {
        rule: "mesh-retries-stacked",
        severity: Severity::Warning,
        host: Some(Host::new(to, None)),
        message: format!(
            "the application makes up to {app} attempts through a sidecar that makes up to \
             {mesh}: up to {} at {to} ({caller}'s call; the sidecar's policy: {})",
            u64::from(app) * u64::from(mesh),
            chosen.origin
        ),
        fix: format!(
            "retry in one layer: max_attempts = 1 on {caller}'s call ({}), or no retries in the \
             mesh's route ({})",
            at.short(),
            chosen.origin.short()
        ),
        origin: at,
        remedy: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_that_fire_after_the_request_was_sent() {
        for after in [
            "reset",
            "timeout",
            "5xx",
            "gateway-error",
            "500",
            "504",
            "cancelled",
            "default",
        ] {
            for system in [System::Linkerd, System::Istio] {
                assert!(fires_after_send(after, system), "{after}");
            }
        }
        for before in [
            "connect-failure",
            "refused-stream",
            "reset-before-request",
            "409",
            "retriable-4xx",
        ] {
            for system in [System::Linkerd, System::Istio] {
                assert!(!fires_after_send(before, system), "{before}");
            }
        }
        // An Envoy-based sidecar answers 503 itself after forwarding a request whose
        // connection then dropped: safe to retry elsewhere, not through Envoy.
        for declined in ["503", "unavailable"] {
            assert!(!fires_after_send(declined, System::Linkerd), "{declined}");
            assert!(fires_after_send(declined, System::Istio), "{declined}");
            assert!(fires_after_send(declined, System::Envoy), "{declined}");
        }
    }
}
