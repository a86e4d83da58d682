//! Gateway API: an `HTTPRoute` per destination, attached to its Service (GAMMA: `parentRefs`
//! of kind `Service`), a rule per endpoint with `timeouts.request` / `timeouts.backendRequest`
//! and `retry` (`attempts`, `codes`, `backoff`).

use std::time::Duration;

use stormguard::backoff::Backoff;
use stormguard::classify::Condition;
use stormguard_graph::model::{Call, LimiterSpec};

use super::val::{go_duration, Val};
use super::{proxy_notes, retry_names, Assign, DestinationPlan, Fields, NewFile, Writer};

/// The Gateway API writer.
pub(super) struct GatewayApi;

impl Writer for GatewayApi {
    fn fields(&self, call: &Call) -> Fields {
        let mut f = Fields::default();
        match call.request_timeout {
            Some(d) => f.route.push(Assign::new(
                &["timeouts", "request"],
                Val::str(go_duration(d)),
            )),
            None => f
                .route
                .push(Assign::replacing(&["timeouts", "request"], Val::str("0s"))),
        }
        if let Some(t) = call.timeout {
            // Gateway API refuses a backendRequest above request (its CEL rule).
            let t = match call.request_timeout {
                Some(r) if r < t => {
                    f.cannot(
                        "timeout",
                        format!(
                            "Gateway API refuses backendRequest above request: written as {}",
                            go_duration(r)
                        ),
                    );
                    r
                }
                _ => t,
            };
            f.route.push(Assign::new(
                &["timeouts", "backendRequest"],
                Val::str(go_duration(t)),
            ));
        }
        if call.timeout.is_none() {
            f.route
                .push(Assign::remove(&["timeouts", "backendRequest"]));
        }
        // Implementations retry connection errors, resets and timeouts after the request was
        // sent included, whenever a retry is set: the only safe retry of a request that is not
        // idempotent an HTTPRoute can say is none.
        let unsafe_retry = !call.is_idempotent();
        if unsafe_retry && call.max_attempts > 1 {
            f.cannot(
                "max_attempts",
                format!(
                    "Gateway API implementations retry connection errors, resets and timeouts \
                     after the request was sent included, whenever a retry is set, and this \
                     call's requests ({}, idempotent = {}) may not be sent twice: no retry \
                     written",
                    call.method, call.idempotent
                ),
            );
        }
        if unsafe_retry {
            // Said, not left out: without a stanza the implementation's own retries apply
            // (Istio's sidecars retry twice), and `attempts: 0` is no retry (the import reads it
            // so).
            f.route.push(Assign::remove(&["retry"]));
            f.route
                .push(Assign::new(&["retry", "attempts"], Val::Int(0)));
        } else if call.max_attempts <= 1 {
            // A rule that retried is turned off with `attempts: 0`, not by deleting its stanza:
            // without one the implementation's own retries apply (Istio's conversion gives the
            // sidecar's two), so a call fixed to one attempt made three. A rule without a stanza
            // is left so: the import reads it as no retry, and the file stays as it was.
            f.route.push(Assign::remove(&["retry"]));
            f.route
                .push(Assign::replacing(&["retry", "attempts"], Val::Int(0)));
        } else {
            f.route.push(Assign::new(
                &["retry", "attempts"],
                Val::Int(i64::from(call.max_attempts - 1)),
            ));
            let codes = retry_names::statuses(&call.retry_on);
            f.route.push(Assign::new(
                &["retry", "codes"],
                Val::List(codes.iter().map(|c| Val::Int(i64::from(*c))).collect()),
            ));
            let on = &call.retry_on;
            if !(on.connect_failure() && on.reset_after_request() && on.timeout()) {
                f.cannot(
                    "retry_on",
                    "Gateway API implementations retry connection errors (connect failures, \
                     resets, timeouts) whenever a retry is set: they are retried too",
                );
            }
            for c in on.conditions() {
                match c {
                    Condition::Grpc(_)
                    | Condition::RefusedStream
                    | Condition::ResetBeforeRequest => f.cannot(
                        "retry_on",
                        format!("{c}: an HTTPRoute's retry names statuses only: not written"),
                    ),
                    _ => {}
                }
            }
            match call.backoff {
                // The reader's inverse: `backoff: X` is read as equal-jitter(base=2X,
                // cap=20X), which never waits less than X.
                Backoff::EqualJitter { base, cap }
                    if cap == base * 10 && base.as_nanos() % 2_000_000 == 0 =>
                {
                    f.route.push(Assign::new(
                        &["retry", "backoff"],
                        Val::str(go_duration(base / 2)),
                    ))
                }
                Backoff::None => f
                    .route
                    .push(Assign::new(&["retry", "backoff"], Val::str("0s"))),
                // Unset: the implementation's default, which the import reads as stormguard's.
                Backoff::FullJitter { base, cap }
                    if base == Duration::from_millis(25) && cap == Duration::from_millis(250) =>
                {
                    f.cannot(
                        "backoff",
                        "left to the implementation (Gateway API has no jitter or cap): its \
                         default applies",
                    )
                }
                other => {
                    let floor = match other {
                        Backoff::Constant(d) => d,
                        Backoff::EqualJitter { base, .. } => base / 2,
                        Backoff::FullJitter { base, .. }
                        | Backoff::Exponential { base, .. }
                        | Backoff::DecorrelatedJitter { base, .. } => base,
                        Backoff::None => Duration::ZERO,
                    };
                    f.cannot(
                        "backoff",
                        format!(
                            "Gateway API's backoff is a minimum wait: {other} is written as \
                             backoff {} (growth, jitter and cap are the implementation's)",
                            go_duration(floor)
                        ),
                    );
                    f.route.push(Assign::new(
                        &["retry", "backoff"],
                        Val::str(go_duration(floor)),
                    ));
                }
            }
        }
        if call.connect_timeout.is_some() {
            f.cannot(
                "connect_timeout",
                "an HTTPRoute has no connect timeout: not written",
            );
        }
        match call.limiter {
            Some(LimiterSpec::Budget { .. }) if call.max_attempts > 1 => f.cannot(
                "retry_budget",
                "an HTTPRoute has no retry budget: not written",
            ),
            Some(LimiterSpec::TokenBucket { .. }) => f.cannot(
                "token_bucket",
                "an HTTPRoute has no token bucket: not written",
            ),
            _ => {}
        }
        if call.hedge.is_some() {
            f.cannot("hedge", "an HTTPRoute cannot hedge: not written");
        }
        proxy_notes(call, "the mesh", !unsafe_retry, &mut f);
        f
    }

    fn route_kinds(&self) -> &'static [&'static str] {
        &["HTTPRoute"]
    }

    fn destination_kinds(&self) -> &'static [&'static str] {
        &[]
    }

    fn names_port(&self, plan: &DestinationPlan) -> Option<&'static str> {
        (!plan.routes.is_empty()).then_some("HTTPRoute backendRef")
    }

    fn new_files(&self, plans: &[DestinationPlan]) -> Vec<NewFile> {
        let mut docs = Vec::new();
        let mut resources = Vec::new();
        for plan in plans.iter().filter(|p| !p.routes.is_empty()) {
            let rules = plan
                .routes
                .iter()
                .map(|route| {
                    let mut rule = Val::map();
                    if let Some(ep) = &route.endpoint {
                        rule.set(&["name"], Val::str(ep));
                    }
                    rule.set(&["backendRefs"], backend_ref(plan));
                    for assign in &route.fields {
                        rule.put(&assign.path, assign.value.clone());
                    }
                    rule
                })
                .collect();
            docs.push(http_route(plan, Val::List(rules), None).to_yaml(0));
            resources.push(format!("HTTPRoute {}", plan.to));
        }
        vec![NewFile {
            name: "stormguard-gateway-api.yaml".into(),
            text: docs.join("---\n"),
            resources,
        }]
    }
}

/// A backend reference to the Service itself. Gateway API requires a port for a Service: the
/// Service's when it was read, else 80, which [`export`](super::export) notes to be checked.
pub(super) fn backend_ref(plan: &DestinationPlan) -> Val {
    Val::List(vec![Val::Map(vec![
        ("name".into(), Val::str(&plan.to)),
        ("port".into(), Val::Int(plan.port_or_default())),
    ])])
}

/// An `HTTPRoute` attached to `plan`'s Service (GAMMA), in its namespace when read, with
/// `rules` and optional annotations.
pub(super) fn http_route(plan: &DestinationPlan, rules: Val, annotations: Option<Val>) -> Val {
    let to = plan.to.as_str();
    let mut metadata = Val::Map(vec![("name".into(), Val::str(to))]);
    if let Some(namespace) = &plan.namespace {
        metadata.set(&["namespace"], Val::str(namespace));
    }
    if let Some(a) = annotations {
        metadata.set(&["annotations"], a);
    }
    Val::Map(vec![
        (
            "apiVersion".into(),
            Val::str("gateway.networking.k8s.io/v1"),
        ),
        ("kind".into(), Val::str("HTTPRoute")),
        ("metadata".into(), metadata),
        (
            "spec".into(),
            Val::Map(vec![
                (
                    "parentRefs".into(),
                    Val::List(vec![Val::Map(vec![
                        ("group".into(), Val::str("")),
                        ("kind".into(), Val::str("Service")),
                        ("name".into(), Val::str(to)),
                    ])]),
                ),
                ("rules".into(), rules),
            ]),
        ),
    ])
}
