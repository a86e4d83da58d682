//! Linkerd: an `HTTPRoute` per destination (attached to its Service), whose
//! `retry.linkerd.io/*` and `timeout.linkerd.io/*` annotations carry the policy. Annotations
//! are per route resource, so a destination's endpoints share one policy.
//!
//! No `ServiceProfile` is written, although it is where Linkerd keeps a retry budget: Linkerd
//! turns a Service's annotation retries and timeouts off once a profile exists for it, so a
//! profile written for the budget would silently drop the counts and timeouts. The budget is
//! listed as not expressible instead.

use stormguard::classify::Condition;
use stormguard_graph::model::{Call, LimiterSpec};

use super::gateway::{backend_ref, http_route};
use super::key_of;
use super::retry_names::ENVOY_GRPC;
use super::val::{go_duration, Val};
use super::{proxy_notes, Assign, DestinationPlan, Fields, NewFile, Path, Writer};
use crate::inventory::Resource;

/// The Linkerd writer.
pub(super) struct Linkerd;

fn annotation(key: &str, value: String) -> Assign {
    Assign::new(&["metadata", "annotations", key], Val::Str(value))
}

impl Writer for Linkerd {
    fn fields(&self, call: &Call) -> Fields {
        let mut f = Fields::default();
        if let Some(d) = call.request_timeout {
            f.route
                .push(annotation("timeout.linkerd.io/request", go_duration(d)));
        }
        if call.max_attempts > 1 {
            let mut http = Vec::new();
            let mut grpc = Vec::new();
            for c in call.retry_on.conditions() {
                match c {
                    Condition::Status5xx => http.push("5xx".to_string()),
                    Condition::GatewayError => http.push("gateway-error".to_string()),
                    Condition::Status(s) => http.push(s.to_string()),
                    Condition::Grpc(code) if ENVOY_GRPC.contains(&code) => grpc.push(c.to_string()),
                    Condition::Timeout => {}
                    other => f.cannot(
                        "retry_on",
                        format!(
                            "{other}: Linkerd's retry annotations name statuses only (the proxy \
                             decides about connection errors itself): not written"
                        ),
                    ),
                }
            }
            if http.is_empty() && grpc.is_empty() {
                f.cannot(
                    "max_attempts",
                    "no status to retry on: Linkerd retries nothing without \
                     retry.linkerd.io/http or /grpc",
                );
            } else {
                if !http.is_empty() {
                    f.route
                        .push(annotation("retry.linkerd.io/http", http.join(",")));
                }
                if !grpc.is_empty() {
                    f.route
                        .push(annotation("retry.linkerd.io/grpc", grpc.join(",")));
                }
                f.route.push(annotation(
                    "retry.linkerd.io/limit",
                    (call.max_attempts - 1).to_string(),
                ));
                if let Some(t) = call.timeout {
                    f.route
                        .push(annotation("retry.linkerd.io/timeout", go_duration(t)));
                    if !call.retry_on.timeout() {
                        f.cannot(
                            "retry_on",
                            "no timeout: Linkerd retries every attempt that reaches \
                             retry.linkerd.io/timeout",
                        );
                    }
                }
            }
            f.cannot(
                "backoff",
                format!(
                    "Linkerd has no backoff setting: {} is not written",
                    call.backoff
                ),
            );
        } else if let Some(t) = call.timeout {
            if call.request_timeout.is_none() {
                f.cannot(
                    "timeout",
                    format!(
                        "Linkerd has a per-attempt timeout only with retries: {} is not written \
                         (set request_timeout to bound this call of one attempt)",
                        go_duration(t)
                    ),
                );
            }
        }
        match call.limiter {
            Some(LimiterSpec::Budget { .. }) if call.max_attempts > 1 => f.cannot(
                "retry_budget",
                "Linkerd's retry annotations have no budget (a ServiceProfile's retryBudget would \
                 turn the annotations off): not written",
            ),
            Some(LimiterSpec::TokenBucket { .. }) => {
                f.cannot("token_bucket", "Linkerd has no token bucket: not written")
            }
            _ => {}
        }
        if call.connect_timeout.is_some() {
            f.cannot(
                "connect_timeout",
                "Linkerd has no connect timeout per route: not written",
            );
        }
        if call.hedge.is_some() {
            f.cannot("hedge", "Linkerd cannot hedge: not written");
        }
        proxy_notes(call, "Linkerd", &mut f);
        f
    }

    fn routes_by_endpoint(&self) -> bool {
        false
    }

    fn route_kinds(&self) -> &'static [&'static str] {
        &["HTTPRoute", "GRPCRoute"]
    }

    fn destination_kinds(&self) -> &'static [&'static str] {
        &[]
    }

    /// Annotations are the resource's, whichever rule the reader pointed at.
    fn route_prefix(&self, resource: &Resource) -> Path {
        let _ = resource;
        Vec::new()
    }

    fn new_files(&self, plans: &[DestinationPlan]) -> Vec<NewFile> {
        let mut docs = Vec::new();
        let mut resources = Vec::new();
        for plan in plans.iter().filter(|p| !p.routes.is_empty()) {
            let mut annotations = Val::map();
            for assign in plan.routes.iter().flat_map(|r| &r.fields) {
                let path: Vec<&str> = assign.path.iter().filter_map(key_of).collect();
                if let Some(key) = path.get(2) {
                    annotations.set(&[key], assign.value.clone());
                }
            }
            let rules = Val::List(vec![Val::Map(vec![(
                "backendRefs".into(),
                backend_ref(&plan.to),
            )])]);
            docs.push(http_route(&plan.to, rules, Some(annotations)).to_yaml(0));
            resources.push(format!("HTTPRoute {}", plan.to));
        }
        vec![NewFile {
            name: "stormguard-linkerd.yaml".into(),
            text: docs.join("---\n"),
            resources,
        }]
    }
}
