//! gRPC service config (gRFC A6): a `methodConfig` per destination (per method for an
//! endpoint) with `timeout` and `retryPolicy` or `hedgingPolicy`, and `retryThrottling` for a
//! token bucket. One JSON file.

use stormguard::backoff::Backoff;
use stormguard::hedge::HedgeDelay;
use stormguard_graph::model::{Call, LimiterSpec};

use super::val::{float_text, proto_duration, Val};
use super::{retry_names, Assign, DestinationPlan, Fields, NewFile, Seg, Writer};

/// The gRPC writer.
pub(super) struct Grpc;

/// gRPC clients clamp `maxAttempts` at 5 unless a channel argument raises it.
pub const MAX_ATTEMPTS: u32 = 5;

impl Writer for Grpc {
    fn fields(&self, call: &Call) -> Fields {
        let mut f = Fields::default();
        let mut codes = retry_names::grpc_upper(&call.retry_on);
        // A gRPC client reports a connection lost after the request was written as UNAVAILABLE
        // too (gRPC's status codes doc), which stormguard never retries for a request that is
        // not idempotent; a server's UNAVAILABLE it does, but the client cannot tell them apart.
        if !call.is_idempotent()
            && call.max_attempts > 1
            && codes.iter().any(|c| c == "UNAVAILABLE")
        {
            codes.retain(|c| c != "UNAVAILABLE");
            f.cannot(
                "retry_on",
                "unavailable: a gRPC client also reports a connection lost after the request was \
                 written as UNAVAILABLE, and this call is not idempotent: not written",
            );
        }
        // One attempt when nothing is left to retry on: its timeout is the call's deadline.
        let one_attempt = call.max_attempts <= 1 || codes.is_empty();
        match (call.request_timeout, call.timeout) {
            (Some(r), t) => {
                f.route
                    .push(Assign::new(&["timeout"], Val::str(proto_duration(r))));
                if t.is_some_and(|t| t != r) {
                    f.cannot(
                        "timeout",
                        "gRPC has no per-attempt timeout: only the deadline (request_timeout) \
                         is written",
                    );
                }
            }
            (None, Some(t)) if one_attempt => {
                f.route
                    .push(Assign::new(&["timeout"], Val::str(proto_duration(t))));
                f.cannot(
                    "timeout",
                    "gRPC has no per-attempt timeout: the one attempt's timeout is written as the \
                     call's deadline",
                );
            }
            (None, Some(_)) => f.cannot(
                "timeout",
                "gRPC has no per-attempt timeout and the graph gives no request_timeout: not \
                 written",
            ),
            (None, None) => {}
        }
        let attempts = if call.max_attempts > MAX_ATTEMPTS {
            f.cannot(
                "max_attempts",
                format!(
                    "gRPC clamps maxAttempts at {MAX_ATTEMPTS}: {MAX_ATTEMPTS} written, not {}",
                    call.max_attempts
                ),
            );
            MAX_ATTEMPTS
        } else {
            call.max_attempts
        };
        if call.max_attempts > 1 {
            for other in retry_names::non_grpc(&call.retry_on) {
                f.cannot(
                    "retry_on",
                    format!("{other}: gRPC retries on status codes only: not written"),
                );
            }
            if codes.is_empty() {
                f.cannot(
                    "max_attempts",
                    "no gRPC status to retry on: a retryPolicy needs one; not written",
                );
            }
        }
        let code_list = Val::List(codes.iter().map(Val::str).collect());
        // gRPC refuses a method config with both policies: the one not written goes.
        let hedging = call.hedge.is_some() && call.max_attempts > 1 && !codes.is_empty();
        let retrying = call.hedge.is_none() && call.max_attempts > 1 && !codes.is_empty();
        if !hedging {
            f.route.push(Assign::remove(&["hedgingPolicy"]));
        }
        if !retrying {
            f.route.push(Assign::remove(&["retryPolicy"]));
        }
        match call.hedge {
            Some(hedge) if call.max_attempts > 1 && !codes.is_empty() => {
                f.route.push(Assign::new(
                    &["hedgingPolicy", "maxAttempts"],
                    Val::Int(i64::from(attempts)),
                ));
                match hedge.delay {
                    HedgeDelay::Fixed(d) => f.route.push(Assign::new(
                        &["hedgingPolicy", "hedgingDelay"],
                        Val::str(proto_duration(d)),
                    )),
                    HedgeDelay::Quantile(_) => f.cannot(
                        "hedge",
                        format!(
                            "gRPC hedges after a fixed delay: {} (a latency quantile) is not \
                             written, so the hedges go at once",
                            hedge.delay
                        ),
                    ),
                }
                f.route.push(Assign::new(
                    &["hedgingPolicy", "nonFatalStatusCodes"],
                    code_list,
                ));
                f.cannot(
                    "hedge",
                    format!(
                        "approximate: gRPC bounds hedges by maxAttempts, not by a share \
                         (max_extra = {})",
                        float_text(hedge.max_extra)
                    ),
                );
            }
            Some(_) => f.cannot(
                "hedge",
                "gRPC hedges only with maxAttempts of 2 or more and a status to go on: not \
                 written",
            ),
            None if call.max_attempts > 1 && !codes.is_empty() => {
                f.route.push(Assign::new(
                    &["retryPolicy", "maxAttempts"],
                    Val::Int(i64::from(attempts)),
                ));
                let (initial, max) = match call.backoff {
                    Backoff::FullJitter { base, cap } => (base, cap),
                    Backoff::None => {
                        f.cannot(
                            "backoff",
                            "gRPC always waits (initialBackoff > 0): 1ms written",
                        );
                        (
                            std::time::Duration::from_millis(1),
                            std::time::Duration::from_millis(1),
                        )
                    }
                    Backoff::Constant(d) => {
                        f.cannot(
                            "backoff",
                            "gRPC's backoff is full jitter: random(0, delay) instead of constant",
                        );
                        (d, d)
                    }
                    other @ (Backoff::Exponential { base, cap }
                    | Backoff::EqualJitter { base, cap }
                    | Backoff::DecorrelatedJitter { base, cap }) => {
                        f.cannot(
                            "backoff",
                            format!("gRPC's backoff is full jitter: same base and cap instead of {other}"),
                        );
                        (base, cap)
                    }
                };
                f.route.push(Assign::new(
                    &["retryPolicy", "initialBackoff"],
                    Val::str(proto_duration(initial)),
                ));
                f.route.push(Assign::new(
                    &["retryPolicy", "maxBackoff"],
                    Val::str(proto_duration(max)),
                ));
                f.route.push(Assign::new(
                    &["retryPolicy", "backoffMultiplier"],
                    Val::Int(2),
                ));
                f.route.push(Assign::new(
                    &["retryPolicy", "retryableStatusCodes"],
                    code_list,
                ));
            }
            None => {}
        }
        if call.max_attempts > 1 && !call.is_idempotent() && !codes.is_empty() {
            f.cannot(
                "idempotent",
                format!(
                    "gRPC retries any RPC: this call's requests (idempotent = {}) are written to \
                     be retried only on {}, statuses with which the server declines the work",
                    call.idempotent,
                    codes.join(", ")
                ),
            );
        }
        if call.connect_timeout.is_some() {
            f.cannot(
                "connect_timeout",
                "a service config has no connect timeout: not written",
            );
        }
        match call.limiter {
            Some(LimiterSpec::Budget { .. }) if call.max_attempts > 1 => {
                f.cannot(
                    "retry_budget",
                    "gRPC has no retry budget (retryThrottling is a token bucket): not written",
                );
                // A throttling already in the user's file is no part of this policy.
                f.route.push(Assign {
                    from_root: true,
                    ..Assign::remove(&["retryThrottling"])
                });
            }
            Some(LimiterSpec::TokenBucket {
                capacity,
                retry_cost,
                timeout_cost,
            }) => {
                // The import's inverse: gRPC spends only the half of maxTokens above its
                // threshold, and a success is worth tokenRatio failures, so in units of
                // tokenRatio capacity = (maxTokens / 2) / tokenRatio and a retry costs
                // 1 / tokenRatio.
                let cost = retry_cost.max(1);
                let ratio = ((1000.0 / f64::from(cost)).round() / 1000.0).max(0.001);
                let max_tokens = (2.0 * f64::from(capacity) * ratio).round().max(1.0);
                f.route.push(Assign {
                    from_root: true,
                    ..Assign::new(
                        &["retryThrottling", "maxTokens"],
                        Val::Int(max_tokens as i64),
                    )
                });
                f.route.push(Assign {
                    from_root: true,
                    ..Assign::new(&["retryThrottling", "tokenRatio"], Val::Float(ratio))
                });
                f.cannot(
                    "token_bucket",
                    "approximate: gRPC's retryThrottling charges every failure (not each \
                     retry) for the whole channel, and stops retries at half its tokens",
                );
                if timeout_cost != retry_cost {
                    f.cannot(
                        "token_bucket",
                        format!(
                            "gRPC charges a timeout as any failure: timeout_cost {timeout_cost} \
                             is written as retry_cost {retry_cost}"
                        ),
                    );
                }
            }
            _ => f.route.push(Assign {
                from_root: true,
                ..Assign::remove(&["retryThrottling"])
            }),
        }
        f
    }

    fn writes_limiter(&self, limiter: &LimiterSpec) -> bool {
        matches!(limiter, LimiterSpec::TokenBucket { .. })
    }

    /// A `backoffMultiplier` other than 1 is read as stormguard's doubling: where the graph
    /// writes 2 (waits that grow), the file's own 1.5 or 3 is kept.
    ///
    /// Likewise a `maxAttempts` above 5, which gRPC treats as 5 (and the import reads so), and
    /// a status list holding the same statuses, by name or number, in any order.
    fn keeps(&self, path: &[Seg], value: &Val, existing: &crate::doc::Node) -> bool {
        let Some(Seg::Key(key)) = path.last() else {
            return false;
        };
        match key.as_str() {
            "backoffMultiplier" => {
                *value == Val::Int(2) && existing.as_f64().is_some_and(|m| m > 0.0 && m != 1.0)
            }
            "maxAttempts" => *value == Val::Int(5) && existing.as_f64().is_some_and(|n| n > 5.0),
            "retryableStatusCodes" | "nonFatalStatusCodes" => {
                let Val::List(items) = value else {
                    return false;
                };
                let written: std::collections::BTreeSet<String> = items
                    .iter()
                    .filter_map(|v| match v {
                        Val::Str(s) => Some(status_name(s)),
                        _ => None,
                    })
                    .collect();
                let theirs: std::collections::BTreeSet<String> = existing
                    .items()
                    .iter()
                    .filter_map(|n| n.as_str().map(status_name))
                    .collect();
                !written.is_empty() && written == theirs
            }
            _ => false,
        }
    }

    fn route_kinds(&self) -> &'static [&'static str] {
        &["ServiceConfig"]
    }

    fn destination_kinds(&self) -> &'static [&'static str] {
        &["ServiceConfig"]
    }

    fn new_files(&self, plans: &[DestinationPlan]) -> Vec<NewFile> {
        let mut configs = Vec::new();
        let mut resources = Vec::new();
        let mut throttling: Option<Val> = None;
        for plan in plans {
            for route in &plan.routes {
                let mut name = Val::Map(vec![("service".into(), Val::str(&plan.to))]);
                if let Some(ep) = &route.endpoint {
                    name.set(&["method"], Val::str(ep));
                }
                let mut config = Val::Map(vec![("name".into(), Val::List(vec![name]))]);
                for assign in &route.fields {
                    if assign.from_root {
                        // One retryThrottling per config: the first destination's.
                        let mut v = Val::map();
                        v.put(&assign.path, assign.value.clone());
                        if let Some(Val::Map(entries)) = v.get("retryThrottling").cloned() {
                            let t = throttling.get_or_insert_with(Val::map);
                            for (k, value) in entries {
                                if t.get(&k).is_none() {
                                    t.set(&[&k], value);
                                }
                            }
                        }
                    } else {
                        config.put(&assign.path, assign.value.clone());
                    }
                }
                configs.push(config);
                resources.push(match &route.endpoint {
                    Some(ep) => format!("methodConfig {}/{ep}", plan.to),
                    None => format!("methodConfig {}", plan.to),
                });
            }
        }
        let mut doc = Val::Map(vec![("methodConfig".into(), Val::List(configs))]);
        if let Some(t) = throttling {
            doc.set(&["retryThrottling"], t);
            resources.push("retryThrottling".into());
        }
        vec![NewFile {
            name: "stormguard-grpc.json".into(),
            text: doc.to_json(0) + "\n",
            resources,
        }]
    }
}

/// A gRPC status as the import names it (`unavailable`), from a name (`UNAVAILABLE`) or a
/// number (`14`); itself, lowercased, when it is neither.
fn status_name(text: &str) -> String {
    let text = text.trim();
    match text.parse::<u32>() {
        Ok(number) => {
            stormguard::classify::grpc_name(number).map_or_else(|| text.to_string(), str::to_string)
        }
        Err(_) => text.to_ascii_lowercase().replace('_', "-"),
    }
}
