//! An Envoy retry policy's attempts, conditions and backoff, with Envoy's defaults: no policy
//! retries nothing, a policy without `retry_on` neither, `num_retries` counts retries (default
//! 1), the backoff is fully jittered from 25 ms to 10 × its base.

use super::route::{count_of, duration_of, AddedHeader, PerTry, DEFAULT_BASE_INTERVAL};
use super::Reader;
use crate::doc::Node;
use crate::envoy_names::{meaning, Meaning};
use crate::error::ImportError;
use crate::inventory::Inventory;
use crate::source::Origin;
use crate::toml_text::{bare_duration, duration_in_range, full_jitter};
use std::time::Duration;

/// The most attempts the graph takes.
const MAX_ATTEMPTS: u64 = 100;

/// What a retry policy makes of attempts, conditions and backoff.
pub(super) struct Retries {
    pub(super) max_attempts: (u64, Origin),
    pub(super) retry_on: Option<(Vec<String>, Origin)>,
    pub(super) backoff: Option<(String, Origin)>,
}

pub(super) fn retries(
    reader: &mut Reader<'_>,
    inv: &mut Inventory,
    retry_policy: Option<&Node>,
    rp_path: &str,
    per_try: Option<&PerTry>,
    headers: &[AddedHeader<'_>],
) -> Result<Retries, ImportError> {
    let Some(rp) = retry_policy else {
        for h in headers.iter().filter(|h| is_retry_header(&h.name)) {
            unread_header(reader, inv, h);
        }
        return Ok(Retries {
            max_attempts: (
                1,
                Origin::Default("Envoy default: no retry_policy, no retries"),
            ),
            retry_on: None,
            backoff: None,
        });
    };
    for key in [
        "retry_host_predicate",
        "host_selection_retry_max_attempts",
        "rate_limited_retry_back_off",
        "retriable_headers",
        "retriable_request_headers",
        "per_try_idle_timeout",
        "retry_priority",
        "retry_options_predicates",
    ] {
        if let Some(node) = rp.get(key) {
            inv.unread(
                reader.at(node, &format!("{rp_path}.{key}")),
                key,
                unread_why(key),
            );
        }
    }

    // Conditions.
    let retry_on_node = rp.get("retry_on");
    let names: Vec<&str> = retry_on_node
        .and_then(Node::as_str)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        for h in headers.iter().filter(|h| is_retry_header(&h.name)) {
            unread_header(reader, inv, h);
        }
        return Ok(Retries {
            max_attempts: (
                1,
                Origin::Default("Envoy default: a retry_policy without retry_on retries nothing"),
            ),
            retry_on: None,
            backoff: None,
        });
    }
    let retry_on_node = retry_on_node.unwrap_or(rp);
    let retry_on_field = format!("{rp_path}.retry_on");
    let mut conditions: Vec<String> = Vec::new();
    let push = |c: String, conditions: &mut Vec<String>| {
        if !conditions.contains(&c) {
            conditions.push(c);
        }
    };
    let mut per_try_retried = false;
    let mut status_codes_on = false;
    for name in &names {
        match meaning(name) {
            Meaning::Conditions {
                conditions: cs,
                retries_per_try_timeout,
            } => {
                for c in cs {
                    push((*c).to_string(), &mut conditions);
                }
                per_try_retried |= retries_per_try_timeout;
            }
            Meaning::RetriableStatusCodes => status_codes_on = true,
            Meaning::Unmapped(why) => inv.unread(
                reader.at(retry_on_node, &retry_on_field),
                format!("retry_on {name}"),
                why,
            ),
            Meaning::Unknown => inv.unread(
                reader.at(retry_on_node, &retry_on_field),
                format!("retry_on {name}"),
                "not a retry condition Envoy knows (Envoy refuses it): not read",
            ),
        }
    }
    if let Some(codes) = rp.get("retriable_status_codes") {
        let field = format!("{rp_path}.retriable_status_codes");
        if !status_codes_on {
            inv.unread(
                reader.at(codes, &field),
                "retriable_status_codes",
                "retry_on does not list retriable-status-codes, so Envoy does not retry these",
            );
        } else {
            for (i, code) in codes.items().iter().enumerate() {
                let code = count_of(reader, code, &format!("{field}[{i}]"))?;
                if (400..=599).contains(&code) {
                    push(code.to_string(), &mut conditions);
                } else {
                    inv.unread(
                        reader.at(codes, &field),
                        format!("retriable_status_codes {code}"),
                        "stormguard retries only statuses from 400 to 599",
                    );
                }
            }
        }
    }
    if per_try_retried && per_try.is_some() {
        push("timeout".to_string(), &mut conditions);
    }

    // Attempts.
    let mut max_attempts = match rp.get("num_retries") {
        Some(node) => {
            let field = format!("{rp_path}.num_retries");
            let n = count_of(reader, node, &field)?;
            (n.saturating_add(1), reader.at(node, &field))
        }
        None => (
            2,
            Origin::Default("Envoy default: num_retries 1, so 2 attempts"),
        ),
    };
    for h in headers.iter().filter(|h| is_retry_header(&h.name)) {
        if h.name == "x-envoy-max-retries" {
            let n = count_of(reader, h.value, &h.path)?;
            max_attempts = (n.saturating_add(1), reader.at(h.value, &h.path));
        } else if h.name != "x-envoy-upstream-rq-per-try-timeout-ms" {
            unread_header(reader, inv, h);
        }
    }
    if max_attempts.0 > MAX_ATTEMPTS {
        inv.unread(
            max_attempts.1.clone(),
            "num_retries",
            format!(
                "{} attempts are over the graph's limit of {MAX_ATTEMPTS}: written as \
                 {MAX_ATTEMPTS}",
                max_attempts.0
            ),
        );
        max_attempts.0 = MAX_ATTEMPTS;
    }

    // Backoff.
    let backoff = if max_attempts.0 > 1 {
        Some(backoff(reader, inv, rp, rp_path)?)
    } else {
        None
    };
    Ok(Retries {
        max_attempts,
        retry_on: Some((conditions, reader.at(retry_on_node, &retry_on_field))),
        backoff,
    })
}

fn unread_why(key: &str) -> &'static str {
    match key {
        "retry_host_predicate" => {
            "which host a retry may go to: informational, stormguard's retries go to another \
             instance as Envoy's previous_hosts predicate makes them"
        }
        "host_selection_retry_max_attempts" => {
            "how often Envoy re-picks a host for a retry: no request is sent per re-pick, so \
             nothing to model"
        }
        "rate_limited_retry_back_off" => {
            "waits from Retry-After or X-RateLimit-Reset headers: stormguard honours \
             Retry-After on 429 and 503 itself, but not Envoy's header list or its 300s cap"
        }
        "per_try_idle_timeout" => {
            "a per-attempt idle timer (no bytes for that long): stormguard has no idle timeout \
             per attempt"
        }
        _ => "not modelled by stormguard",
    }
}

/// A request header that changes Envoy's retries or timeouts per request.
fn is_retry_header(name: &str) -> bool {
    name.starts_with("x-envoy-retry")
        || name.starts_with("x-envoy-retriable")
        || name.starts_with("x-envoy-upstream-rq")
        || matches!(
            name,
            "x-envoy-max-retries" | "x-envoy-hedge-on-per-try-timeout"
        )
}

fn unread_header(reader: &Reader<'_>, inv: &mut Inventory, h: &AddedHeader<'_>) {
    if matches!(
        h.name.as_str(),
        "x-envoy-upstream-rq-timeout-ms" | "x-envoy-upstream-rq-per-try-timeout-ms"
    ) {
        return;
    }
    inv.unread(
        reader.at(h.value, &h.path),
        h.name.clone(),
        "per-request header override: not read",
    );
}

/// `full-jitter(base, cap)` from `retry_back_off`, or Envoy's defaults.
fn backoff(
    reader: &mut Reader<'_>,
    inv: &mut Inventory,
    rp: &Node,
    rp_path: &str,
) -> Result<(String, Origin), ImportError> {
    let (base, cap, origin) = match rp.get("retry_back_off") {
        None => (
            DEFAULT_BASE_INTERVAL,
            DEFAULT_BASE_INTERVAL * 10,
            Origin::Default("Envoy default: backoff base 25ms, max 10 × base"),
        ),
        Some(node) => {
            let path = format!("{rp_path}.retry_back_off");
            let base_node = node.get("base_interval").ok_or_else(|| {
                reader.doc.error(
                    node,
                    &format!("{path}.base_interval"),
                    "missing: Envoy requires base_interval in retry_back_off (e.g. 25ms)",
                )
            })?;
            let base = duration_of(reader, base_node, &format!("{path}.base_interval"))?;
            if base.is_zero() {
                return Err(reader.doc.error(
                    base_node,
                    &format!("{path}.base_interval"),
                    "must be above zero (Envoy refuses 0s)",
                ));
            }
            let base = base.max(Duration::from_millis(1));
            let cap = match node.get("max_interval") {
                Some(max) => {
                    let field = format!("{path}.max_interval");
                    let cap = duration_of(reader, max, &field)?;
                    if cap < base {
                        return Err(reader.doc.error(
                            max,
                            &field,
                            format!(
                                "{} is below base_interval {}: Envoy requires max_interval ≥ \
                                 base_interval",
                                bare_duration(cap),
                                bare_duration(base)
                            ),
                        ));
                    }
                    cap
                }
                None => base * 10,
            };
            let origin = reader.at(base_node, &format!("{path}.base_interval"));
            (base, cap, origin)
        }
    };
    let base = duration_in_range(base, inv, &origin, "retry_back_off.base_interval");
    let cap = duration_in_range(cap, inv, &origin, "retry_back_off.max_interval");
    if !reader.backoff_noted {
        reader.backoff_noted = true;
        inv.unread(
            origin.clone(),
            "retry_back_off",
            "approximate: Envoy waits up to (2^N−1)·base before retry N (25, 75, 175ms...), \
             stormguard's full-jitter up to 2^(N−1)·base (25, 50, 100ms...), both capped at \
             max_interval",
        );
    }
    Ok((full_jitter(base, cap), origin))
}
