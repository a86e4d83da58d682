//! One `methodConfig`'s timeout, retry or hedging policy in the graph's keys.
//!
//! gRFC A6 and `service_config.proto`: `maxAttempts` is required, above 1, counts every try and
//! is treated as 5 when above; the nth retry waits `random(0, min(initialBackoff ×
//! backoffMultiplier^(n−1), maxBackoff))`; `retryableStatusCodes` (names or numbers) is
//! required and non-empty; a hedging policy sends a copy every `hedgingDelay` (default 0s: all
//! at once) and the next one at once after a non-fatal status; only one of the two policies;
//! neither means no retry.

use std::time::Duration;

use super::throttle::Throttle;
use super::MAX_ATTEMPTS_CAPPED;
use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{Host, ImportFinding, Inventory, Policy};
use crate::source::Origin;
use crate::toml_text::{
    bare_duration, duration, duration_in_range, full_jitter, number, string_list,
};

/// The most attempts gRPC makes, whatever `maxAttempts` says (the channel's default maximum).
const GRPC_MAX_ATTEMPTS: u64 = 5;

/// A method config's policy, and the capped `maxAttempts` if it was.
pub(super) struct Read {
    pub(super) policy: Policy,
    pub(super) capped: Option<Capped>,
}

/// A `maxAttempts` above 5.
pub(super) struct Capped {
    written: u64,
    origin: Origin,
}

impl Capped {
    /// The finding, about `host`.
    pub(super) fn finding(&self, host: Host) -> ImportFinding {
        ImportFinding {
            rule: MAX_ATTEMPTS_CAPPED,
            severity: stormguard_graph::Severity::Warning,
            host: Some(host),
            message: format!(
                "maxAttempts {} is above gRPC's limit of {GRPC_MAX_ATTEMPTS}: gRPC silently \
                 makes {GRPC_MAX_ATTEMPTS} attempts, so the file does not say what runs",
                self.written
            ),
            fix: format!("maxAttempts: {GRPC_MAX_ATTEMPTS}"),
            origin: self.origin.clone(),
            remedy: None,
        }
    }
}

fn at(doc: &Document, node: &Node, path: &str) -> Origin {
    Origin::at(doc, node, format!("gRPC service config {path}"))
}

/// A proto3 JSON duration (`"1.5s"`), or the forms [`Node::as_duration`] reads.
fn duration_of(doc: &Document, node: &Node, path: &str) -> Result<Duration, ImportError> {
    doc.duration(node, path, "\"0.5s\" or \"2s\", as proto3 JSON writes it")
}

fn required<'a>(
    doc: &Document,
    parent: &'a Node,
    key: &str,
    path: &str,
) -> Result<&'a Node, ImportError> {
    parent.get(key).ok_or_else(|| {
        doc.error(
            parent,
            &format!("{path}.{key}"),
            "missing: gRFC A6 requires it, and gRPC refuses a service config without it",
        )
    })
}

/// Reads the policy of `config` (at `path`), with `throttle` for every route that retries.
pub(super) fn read(
    doc: &Document,
    inv: &mut Inventory,
    config: &Node,
    path: &str,
    throttle: Option<&Throttle>,
) -> Result<Read, ImportError> {
    let mut policy = Policy::default();
    for key in [
        "waitForReady",
        "maxRequestMessageBytes",
        "maxResponseMessageBytes",
    ] {
        if let Some(node) = config.get(key) {
            inv.unread(
                at(doc, node, &format!("{path}.{key}")),
                key,
                "changes no timeout or retry: not read",
            );
        }
    }
    if let Some(node) = config.get("timeout") {
        let field = format!("{path}.timeout");
        let value = duration_of(doc, node, &field)?;
        let origin = at(doc, node, &field);
        if value.is_zero() {
            inv.unread(
                origin,
                "timeout",
                "0s: no deadline from the service config (the application's, if any, applies)",
            );
        } else {
            let value = duration_in_range(value, inv, &origin, "timeout");
            policy.set("request_timeout", duration(value), origin.clone());
            // No per-attempt timeout in gRPC: each attempt may use what is left of the deadline.
            policy.set("timeout", duration(value), origin);
        }
    }
    let retry = config.get("retryPolicy");
    let hedging = config.get("hedgingPolicy");
    let mut capped = None;
    match (retry, hedging) {
        (Some(_), Some(h)) => {
            return Err(doc.error(
                h,
                &format!("{path}.hedgingPolicy"),
                "both retryPolicy and hedgingPolicy: gRPC allows only one of them",
            ))
        }
        (None, None) => policy.set(
            "max_attempts",
            "1",
            Origin::Default("gRPC default: no retryPolicy, no retries"),
        ),
        (Some(rp), None) => {
            let rp_path = format!("{path}.retryPolicy");
            capped = attempts(doc, &mut policy, rp, &rp_path)?;
            let codes = required(doc, rp, "retryableStatusCodes", &rp_path)?;
            let codes_path = format!("{rp_path}.retryableStatusCodes");
            let names = status_names(doc, codes, &codes_path)?;
            if names.is_empty() {
                return Err(doc.error(
                    codes,
                    &codes_path,
                    "empty: gRFC A6 requires at least one status code (e.g. [\"UNAVAILABLE\"])",
                ));
            }
            policy.set("retry_on", string_list(&names), at(doc, codes, &codes_path));
            let backoff = backoff(doc, inv, rp, &rp_path)?;
            policy.set("backoff", backoff.0, backoff.1);
            retried(
                &mut policy,
                throttle,
                "gRPC default: retries any method it is configured for",
            );
        }
        (None, Some(hp)) => {
            let hp_path = format!("{path}.hedgingPolicy");
            capped = attempts(doc, &mut policy, hp, &hp_path)?;
            hedge(doc, inv, &mut policy, hp, &hp_path)?;
            retried(
                &mut policy,
                throttle,
                "gRPC default: hedges any method it is configured for",
            );
        }
    }
    Ok(Read { policy, capped })
}

/// `max_attempts` from `maxAttempts` (required, at least 2, at most 5 as gRPC runs it).
fn attempts(
    doc: &Document,
    policy: &mut Policy,
    parent: &Node,
    path: &str,
) -> Result<Option<Capped>, ImportError> {
    let node = required(doc, parent, "maxAttempts", path)?;
    let field = format!("{path}.maxAttempts");
    let n = node.as_u64().ok_or_else(|| {
        doc.error(
            node,
            &field,
            "not a whole number: write e.g. 3 (tries, the first included)",
        )
    })?;
    if n < 2 {
        return Err(doc.error(
            node,
            &field,
            format!(
                "{n}: gRFC A6 requires at least 2 (maxAttempts counts every try, the first \
                 included); remove the policy for no retries"
            ),
        ));
    }
    let origin = at(doc, node, &field);
    policy.set(
        "max_attempts",
        n.min(GRPC_MAX_ATTEMPTS).to_string(),
        origin.clone(),
    );
    Ok((n > GRPC_MAX_ATTEMPTS).then_some(Capped { written: n, origin }))
}

/// `retryableStatusCodes` or `nonFatalStatusCodes` as stormguard's gRPC names, in kebab case:
/// `"UNAVAILABLE"` and `14` are both `unavailable`.
fn status_names(doc: &Document, codes: &Node, path: &str) -> Result<Vec<String>, ImportError> {
    let mut names: Vec<String> = Vec::new();
    for (i, code) in codes.items().iter().enumerate() {
        let text = code.as_str().unwrap_or_default().trim();
        let name = match text.parse::<u32>() {
            Ok(number) => (number > 0)
                .then(|| stormguard::classify::grpc_name(number))
                .flatten()
                .map(str::to_string),
            Err(_) => {
                let kebab = text.to_ascii_lowercase().replace('_', "-");
                (1..=16)
                    .filter_map(stormguard::classify::grpc_name)
                    .find(|n| *n == kebab)
                    .map(str::to_string)
            }
        };
        let name = name.ok_or_else(|| {
            doc.error(
                code,
                &format!("{path}[{i}]"),
                format!(
                    "{text:?} is not a gRPC status that can fail a call: write a name such as \
                     \"UNAVAILABLE\" or a code from 1 to 16"
                ),
            )
        })?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// `full-jitter(base=initialBackoff, cap=maxBackoff)`: exact when `backoffMultiplier` is 2
/// (stormguard's doubling) or 1 (base = cap: every wait in [0, initialBackoff]); otherwise an
/// approximation, with a note.
fn backoff(
    doc: &Document,
    inv: &mut Inventory,
    rp: &Node,
    path: &str,
) -> Result<(String, Origin), ImportError> {
    let initial_node = required(doc, rp, "initialBackoff", path)?;
    let max_node = required(doc, rp, "maxBackoff", path)?;
    let multiplier_node = required(doc, rp, "backoffMultiplier", path)?;
    let initial = duration_of(doc, initial_node, &format!("{path}.initialBackoff"))?;
    let max = duration_of(doc, max_node, &format!("{path}.maxBackoff"))?;
    for (node, value, key) in [
        (initial_node, initial, "initialBackoff"),
        (max_node, max, "maxBackoff"),
    ] {
        if value.is_zero() {
            return Err(doc.error(
                node,
                &format!("{path}.{key}"),
                "must be above zero (gRFC A6)",
            ));
        }
    }
    let multiplier_field = format!("{path}.backoffMultiplier");
    let multiplier = multiplier_node
        .as_f64()
        .filter(|m| *m > 0.0)
        .ok_or_else(|| {
            doc.error(
                multiplier_node,
                &multiplier_field,
                "not a number above zero: write e.g. 2",
            )
        })?;
    let origin = at(doc, initial_node, &format!("{path}.initialBackoff"));
    let cap = duration_in_range(max, inv, &origin, "maxBackoff");
    let base = duration_in_range(initial, inv, &origin, "initialBackoff").min(cap);
    if multiplier == 1.0 {
        return Ok((full_jitter(base, base), origin));
    }
    if multiplier != 2.0 {
        inv.unread(
            at(doc, multiplier_node, &multiplier_field),
            "backoffMultiplier",
            format!(
                "approximate: gRPC's waits grow by {} per retry, stormguard's full-jitter \
                 doubles them; both start at initialBackoff and stop at maxBackoff",
                number(multiplier)
            ),
        );
    }
    Ok((full_jitter(base, cap), origin))
}

/// `hedge`, `retry_on` and `backoff` of a hedging policy.
fn hedge(
    doc: &Document,
    inv: &mut Inventory,
    policy: &mut Policy,
    hp: &Node,
    path: &str,
) -> Result<(), ImportError> {
    let (delay, delay_origin) = match hp.get("hedgingDelay") {
        Some(node) => {
            let field = format!("{path}.hedgingDelay");
            (duration_of(doc, node, &field)?, at(doc, node, &field))
        }
        None => (
            Duration::ZERO,
            Origin::Default("gRPC default: hedgingDelay 0s, every copy at once"),
        ),
    };
    if delay.is_zero() {
        inv.unread(
            delay_origin.clone(),
            "hedgingDelay",
            "0s: gRPC sends every copy at once; the graph's smallest hedge delay is 1ms",
        );
    }
    let delay = duration_in_range(delay, inv, &delay_origin, "hedgingDelay");
    let extra = policy
        .get("max_attempts")
        .and_then(|s| s.value.parse::<u64>().ok())
        .unwrap_or(2)
        - 1;
    inv.unread(
        delay_origin.clone(),
        "hedgingPolicy.maxAttempts",
        format!(
            "approximate: gRPC sends up to {extra} extra copies of every call, with no limit on \
             their share; stormguard's max_extra is a share of requests, so max_extra = 1.0 \
             (every call may be hedged) is the closest, and further copies are not modelled"
        ),
    );
    policy.set(
        "hedge",
        format!(
            "{{ delay = \"{}\", max_extra = {} }}",
            bare_duration(delay),
            number(1.0)
        ),
        delay_origin,
    );
    match hp.get("nonFatalStatusCodes") {
        Some(codes) => {
            let field = format!("{path}.nonFatalStatusCodes");
            let names = status_names(doc, codes, &field)?;
            policy.set("retry_on", string_list(&names), at(doc, codes, &field));
        }
        None => policy.set(
            "retry_on",
            "[]",
            Origin::Default("gRPC default: no nonFatalStatusCodes, every error status is fatal"),
        ),
    }
    policy.set(
        "backoff",
        "\"none\"",
        Origin::Default("gRPC default: after a non-fatal status the next copy goes at once"),
    );
    Ok(())
}

/// What every route that retries or hedges gets: `idempotent` (gRPC retries whatever method the
/// config names) and the limiter.
fn retried(policy: &mut Policy, throttle: Option<&Throttle>, why: &'static str) {
    policy.set("idempotent", "true", Origin::Default(why));
    match throttle {
        Some(throttle) => policy.set(
            "token_bucket",
            throttle.text.clone(),
            throttle.origin.clone(),
        ),
        None => policy.set(
            "retry_budget",
            "\"none\"",
            Origin::Default("gRPC default: no retryThrottling, retries are not limited"),
        ),
    }
}
