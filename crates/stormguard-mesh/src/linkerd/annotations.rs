//! Linkerd's `retry.linkerd.io/*` and `timeout.linkerd.io/*` annotations: read from a Service,
//! an `HTTPRoute` or a `GRPCRoute`, and written as a policy.
//!
//! ## What Linkerd does with them (linkerd2 and linkerd2-proxy, read 2026-08)
//! The policy controller (`policy-controller/k8s/index/src/outbound/index/http.rs`,
//! `parse_http_retry`) reads `limit` as a u16 (`0` is unset, the default is 1), `timeout` as a
//! duration (`0s` is unset), `http` as a comma list of `5xx`, `gateway-error` (502-504), a
//! status or a `min-max` range, with no spaces; a route or Service has a retry policy when any of
//! them is set. It sends the proxy the retry with a 64 KiB body limit and a backoff of 25 ms to
//! 250 ms, jitter ratio 1 (`grpc/src/outbound/http.rs`, `convert_retry`), and no budget: the
//! proxy's policy retries (`linkerd/http/retry`, `Params { max_retries, max_request_bytes,
//! backoff }`) count retries only. Besides the statuses listed, the proxy retries a stream the
//! server refused (HTTP/2 `REFUSED_STREAM`), a request that found no ready endpoint, and an
//! attempt whose `retry.linkerd.io/timeout` fired (`route/retry.rs`, `retryable_error`); it
//! does not retry connection errors. Without `retry.linkerd.io/http`, no status is retried.
//!
//! `timeout.linkerd.io/request` is one deadline for the whole call, retries included (a
//! `StreamLifetime` set once per request); `timeout.linkerd.io/response` bounds each attempt
//! from when its request is sent to its response's end and is not retried; the retry timeout
//! bounds each attempt but the last (`set_extensions` removes it once no retry remains).

use std::time::Duration;

use crate::doc::{parse_duration, Document, Node};
use crate::error::ImportError;
use crate::gateway::values::{duration_noting, note_once, push_unique, status_conditions};
use crate::inventory::{Inventory, Policy};
use crate::source::Origin;
use crate::toml_text::string_list;

/// A value read from an annotation, with where it is.
pub type At<T> = (T, Origin);

/// The retry annotations of one resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetryFamily {
    /// `retry.linkerd.io/limit`, when set and not 0.
    pub limit: Option<At<u16>>,
    /// `retry.linkerd.io/http`, as the graph's `retry_on` names.
    pub http: Option<At<Vec<String>>>,
    /// `retry.linkerd.io/grpc`, as the graph's gRPC status names.
    pub grpc: Option<At<Vec<String>>>,
    /// `retry.linkerd.io/timeout`, when set and not 0s.
    pub timeout: Option<At<Duration>>,
}

/// The timeout annotations of one resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimeoutFamily {
    /// `timeout.linkerd.io/request` (or an `HTTPRoute`'s `timeouts.request`, which Linkerd
    /// reads as the same).
    pub request: Option<At<Duration>>,
    /// `timeout.linkerd.io/response`.
    pub response: Option<At<Duration>>,
    /// `timeout.linkerd.io/idle`.
    pub idle: Option<At<Duration>>,
}

impl TimeoutFamily {
    /// Whether any timeout is set: Linkerd takes a route's timeouts instead of its Service's
    /// as soon as the route sets one.
    pub fn is_set(&self) -> bool {
        self.request.is_some() || self.response.is_some() || self.idle.is_some()
    }
}

/// Linkerd's annotations of one resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Annotations {
    /// Retries.
    pub retry: RetryFamily,
    /// Timeouts.
    pub timeouts: TimeoutFamily,
    /// Where the annotations are (`metadata.annotations`), if any Linkerd one is.
    pub origin: Option<Origin>,
}

impl Annotations {
    /// The retry policy the resource sets for HTTP (or gRPC) calls, as Linkerd decides it: a
    /// limit, a timeout or the protocol's conditions.
    pub fn retry_for(&self, grpc: bool) -> Option<&RetryFamily> {
        let r = &self.retry;
        let conditions = if grpc {
            r.grpc.is_some()
        } else {
            r.http.is_some()
        };
        (r.limit.is_some() || r.timeout.is_some() || conditions).then_some(r)
    }
}

/// Reads the Linkerd annotations of `resource` (a `kind` named `name`); other annotations are
/// not Linkerd's and are skipped, an unknown `retry.linkerd.io/` or `timeout.linkerd.io/` one is
/// listed.
///
/// # Errors
/// A value Linkerd's policy controller refuses (which makes it drop the route): a limit that is
/// not a whole number up to 65535, a duration without a unit, an unknown retry condition.
pub fn read(
    doc: &Document,
    resource: &Node,
    kind: &str,
    name: &str,
    inv: &mut Inventory,
) -> Result<Annotations, ImportError> {
    let mut out = Annotations::default();
    let Some(annotations) = resource.get("metadata").and_then(|m| m.get("annotations")) else {
        return Ok(out);
    };
    for (key, value) in annotations.entries() {
        let Some(key) = key.as_str() else { continue };
        if !(key.starts_with("retry.linkerd.io/") || key.starts_with("timeout.linkerd.io/")) {
            continue;
        }
        out.origin.get_or_insert_with(|| {
            Origin::at(doc, annotations, format!("{kind} {name} annotations"))
        });
        let field = format!("metadata.annotations[\"{key}\"]");
        let origin = Origin::at(doc, value, format!("{kind} {name} {key}"));
        let text = value.as_str().unwrap_or_default().trim();
        match key {
            "retry.linkerd.io/limit" => {
                let limit: u16 = text.parse().map_err(|_| {
                    doc.error(
                        value,
                        &field,
                        "not a retry count: write a whole number, e.g. \"2\"",
                    )
                })?;
                out.retry.limit = (limit > 0).then_some((limit, origin));
            }
            "retry.linkerd.io/timeout" => {
                let d = duration_of(doc, value, &field, text)?;
                out.retry.timeout = (!d.is_zero()).then_some((d, origin));
            }
            "retry.linkerd.io/http" => {
                let conditions = http_conditions(doc, value, &field, text, &origin, inv)?;
                out.retry.http = Some((conditions, origin));
            }
            "retry.linkerd.io/grpc" => {
                let conditions = grpc_conditions(doc, value, &field, text)?;
                out.retry.grpc = Some((conditions, origin));
            }
            "timeout.linkerd.io/request"
            | "timeout.linkerd.io/response"
            | "timeout.linkerd.io/idle" => {
                let d = duration_of(doc, value, &field, text)?;
                let slot = match key {
                    "timeout.linkerd.io/request" => &mut out.timeouts.request,
                    "timeout.linkerd.io/response" => &mut out.timeouts.response,
                    _ => &mut out.timeouts.idle,
                };
                *slot = (!d.is_zero()).then_some((d, origin));
            }
            _ => inv.unread(
                origin,
                key,
                "not an annotation Linkerd reads (retry.linkerd.io/: http, grpc, limit, \
                 timeout; timeout.linkerd.io/: request, response, idle)",
            ),
        }
    }
    Ok(out)
}

fn duration_of(
    doc: &Document,
    node: &Node,
    field: &str,
    text: &str,
) -> Result<Duration, ImportError> {
    // Linkerd reads Gateway API durations (GEP-2257): a bare number has no unit.
    if text == "0" {
        return Err(doc.error(
            node,
            field,
            "not a duration: write it with a unit, e.g. 0s or 500ms",
        ));
    }
    parse_duration(text)
        .ok_or_else(|| doc.error(node, field, "not a duration: write e.g. 500ms or 2s"))
}

fn http_conditions(
    doc: &Document,
    node: &Node,
    field: &str,
    text: &str,
    origin: &Origin,
    inv: &mut Inventory,
) -> Result<Vec<String>, ImportError> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let invalid = || {
            doc.error(
                node,
                field,
                format!(
                    "`{item}` is not a retry condition Linkerd reads: write 5xx, gateway-error, \
                     a status (503) or a range (500-504), separated by commas without spaces"
                ),
            )
        };
        let (min, max) = if item.eq_ignore_ascii_case("5xx") {
            (500, 599)
        } else if item.eq_ignore_ascii_case("gateway-error") {
            (502, 504)
        } else if let Some(code) = status(item) {
            (code, code)
        } else if let Some((a, b)) = item.split_once('-') {
            match (status(a), status(b)) {
                (Some(a), Some(b)) if a <= b => (a, b),
                _ => return Err(invalid()),
            }
        } else {
            return Err(invalid());
        };
        let (conditions, below) = status_conditions(min, max);
        if below > 0 {
            inv.unread(
                origin.clone(),
                format!("retry.linkerd.io/http {item}"),
                "statuses below 400 are no failure the graph retries; Linkerd retries them",
            );
        }
        push_unique(&mut out, conditions);
    }
    Ok(out)
}

/// A status as Linkerd reads one: a whole number from 100 to 599, no spaces.
fn status(text: &str) -> Option<u16> {
    let code: u16 = text.parse().ok()?;
    (100..600).contains(&code).then_some(code)
}

fn grpc_conditions(
    doc: &Document,
    node: &Node,
    field: &str,
    text: &str,
) -> Result<Vec<String>, ImportError> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let name = item.to_ascii_lowercase();
        if !matches!(
            name.as_str(),
            "cancelled" | "deadline-exceeded" | "internal" | "resource-exhausted" | "unavailable"
        ) {
            return Err(doc.error(
                node,
                field,
                format!(
                    "`{item}` is not a gRPC retry condition Linkerd reads: write cancelled, \
                     deadline-exceeded, internal, resource-exhausted or unavailable"
                ),
            ));
        }
        push_unique(&mut out, [name]);
    }
    Ok(out)
}

/// Linkerd's retry default, written where a resource retries: the backoff of every annotation
/// retry.
const BACKOFF: &str = "\"equal-jitter(base=50ms, cap=250ms)\"";

/// Writes the policy Linkerd applies with these retry and timeout annotations (a route's own,
/// or its Service's in their place), for HTTP or gRPC calls; with neither, Linkerd's: no retry,
/// no timeout.
pub fn apply(
    policy: &mut Policy,
    retry: Option<&RetryFamily>,
    timeouts: Option<&TimeoutFamily>,
    grpc: bool,
    inv: &mut Inventory,
) {
    let timeouts = timeouts.cloned().unwrap_or_default();
    if let Some((d, origin)) = &timeouts.request {
        let text = duration_noting(*d, origin, inv);
        policy.set("request_timeout", text, origin.clone());
    }
    if let Some((_, origin)) = &timeouts.idle {
        inv.unread(
            origin.clone(),
            "timeout.linkerd.io/idle",
            "a limit on an idle stream: the graph models no idle timeout",
        );
    }
    // Each attempt ends at the sooner of the response timeout (not retried) and the retry
    // timeout (retried).
    let retry_timeout = retry.and_then(|r| r.timeout.clone());
    let per_attempt = match (&timeouts.response, &retry_timeout) {
        (Some(response), Some(retry)) if response.0 < retry.0 => Some((response.clone(), false)),
        (_, Some(retry)) => Some((retry.clone(), true)),
        (Some(response), None) => Some((response.clone(), false)),
        (None, None) => None,
    };
    if let Some(((d, origin), _)) = &per_attempt {
        let text = duration_noting(*d, origin, inv);
        policy.set("timeout", text, origin.clone());
    }
    if let Some((_, origin)) = &timeouts.response {
        note_once(
            inv,
            origin.clone(),
            "timeout.linkerd.io/response",
            "approximate: Linkerd starts it once the request is sent (connecting not \
             included), and never retries a request it ends",
        );
    }
    clamp_to_request(policy, &timeouts, inv);
    let Some(retry) = retry else {
        policy.set(
            "max_attempts",
            "1",
            Origin::Default("Linkerd default: no retry annotation, no retry"),
        );
        return;
    };
    match &retry.limit {
        Some((limit, origin)) => {
            policy.set("max_attempts", (limit + 1).to_string(), origin.clone())
        }
        None => policy.set(
            "max_attempts",
            "2",
            Origin::Default("Linkerd default: retry.linkerd.io/limit 1"),
        ),
    }
    let mut retry_on = vec!["refused-stream".to_string()];
    let conditions = if grpc { &retry.grpc } else { &retry.http };
    if let Some((items, _)) = conditions {
        push_unique(&mut retry_on, items.iter().cloned());
    }
    if matches!(per_attempt, Some((_, true))) {
        push_unique(&mut retry_on, ["timeout".to_string()]);
    }
    let origin = conditions.as_ref().map_or(
        Origin::Default("Linkerd default: retries refused streams and retry timeouts"),
        |(_, o)| o.clone(),
    );
    policy.set("retry_on", string_list(&retry_on), origin);
    let default = |why| Origin::Default(why);
    policy.set(
        "backoff",
        BACKOFF,
        default("Linkerd default: 25ms·2^n plus up to as much jitter, at most 250ms"),
    );
    policy.set(
        "retry_budget",
        "\"none\"",
        default("Linkerd default: annotation retries have no budget"),
    );
    policy.set(
        "idempotent",
        "true",
        default("Linkerd default: retries any method"),
    );
    if let Some(origin) = retry
        .limit
        .as_ref()
        .map(|l| &l.1)
        .or(conditions.as_ref().map(|c| &c.1))
    {
        note_once(
            inv,
            origin.clone(),
            "Linkerd annotation retries",
            "approximate: Linkerd retries only requests whose body is at most 64 KiB; its \
             backoff waits 25ms·2^(n-1) plus up to as much again, at most 250ms, written \
             equal-jitter(base=50ms, cap=250ms) (exact for the first three retries)",
        );
    }
    if let Some((_, origin)) = &retry.timeout {
        note_once(
            inv,
            origin.clone(),
            "retry.linkerd.io/timeout",
            "approximate: Linkerd does not apply it to the last attempt, which only the \
             response or request timeout bounds",
        );
    }
}

/// The graph refuses a per-attempt timeout above the whole call's: an attempt could never use
/// it, so it is written as the request timeout.
fn clamp_to_request(policy: &mut Policy, timeouts: &TimeoutFamily, inv: &mut Inventory) {
    let (Some((request, request_origin)), Some(timeout)) =
        (&timeouts.request, policy.get("timeout").cloned())
    else {
        return;
    };
    let per_attempt = parse_duration(timeout.value.trim_matches('"'));
    if per_attempt.is_some_and(|p| p > *request) {
        let text = duration_noting(*request, request_origin, inv);
        policy.set("timeout", text, request_origin.clone());
        inv.unread(
            timeout.origin,
            "a per-attempt timeout above the request timeout",
            "written as the request timeout, which ends every attempt first",
        );
    }
}
