//! Linkerd's `ServiceProfile` (`linkerd.io/v1alpha2`): one route per `spec.routes[]` entry,
//! with its timeout, retries and the profile's retry budget.
//!
//! ## What Linkerd does with it (linkerd2 and linkerd2-proxy, read 2026-08)
//! - `timeout`: the docs say a route without one gets 10 s. The code does not: the destination
//!   controller sends none ("No default timeout", `profile_translator.go` `toRoute`) and the
//!   proxy applies only the profile's (`http::ResponseTimeout(profile.timeout())`). So an unset
//!   timeout writes none, and says so. The timeout layer wraps the retry layer
//!   (`logical/profile.rs`): it bounds the whole call, retries included: `request_timeout`.
//! - `isRetryable`: no count. The proxy retries a response its classes call a failure for as
//!   long as the budget lets it withdraw (`http/retry.rs`: `budget.withdraw()`), at once (no
//!   backoff), never an error (no response: `Err(_) => false`) and never a request whose body
//!   is over 64 KiB. A failing request can thus retry until the budget's reserve runs out:
//!   `min_per_sec × ttl` (100 at the defaults) at once, then as requests earn more. The graph
//!   needs a count: 100, its most, so that the budget is what binds, as in Linkerd.
//! - `responseClasses`: the first class whose condition matches decides; a response no class
//!   matches is a failure when it is a 5xx, or a gRPC status among Linkerd's failures
//!   (`classify.rs`; `grpc::Codes::default()`: unknown, deadline-exceeded, permission-denied,
//!   internal, unavailable, data-loss).
//! - `retryBudget`: `{retryRatio, minRetriesPerSecond, ttl}`, default `{0.2, 10, 10s}`
//!   (`defaultRetryBudget`), one per profile, shared by its routes.
//! - A profile with routes or `dstOverrides` replaces the Service's HTTPRoutes and annotations
//!   (`should_override_policy`); see [`super::resolve`].

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::gateway::values::{duration_noting, note_once, push_unique};
use crate::inventory::{Backend, Host, Inventory, MeshEvidence, Policy, Resource, Route, System};
use crate::source::Origin;
use crate::toml_text::string_list;

/// The gRPC statuses Linkerd's proxy counts as failures when no response class matches.
const GRPC_FAILURES: [&str; 6] = [
    "unknown",
    "deadline-exceeded",
    "permission-denied",
    "internal",
    "unavailable",
    "data-loss",
];

/// The graph's most attempts: a profile route's retries are bounded by its budget only.
const PROFILE_MAX_ATTEMPTS: &str = "100";

/// Reads one `ServiceProfile`.
///
/// # Errors
/// A malformed field (a timeout that is not a duration, a ratio that is not a number, a status
/// outside 100 to 599), at its line.
pub fn read(doc: &Document, node: &Node, inv: &mut Inventory) -> Result<(), ImportError> {
    inv.saw("ServiceProfile");
    let metadata = node.get("metadata");
    let name_node = metadata.and_then(|m| m.get("name"));
    let Some(name) = name_node.and_then(Node::as_str) else {
        return Err(doc.error(node, "metadata.name", "a ServiceProfile needs a name: the FQDN of its Service, e.g. web.default.svc.cluster.local"));
    };
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .map(str::to_string);
    let what = format!("ServiceProfile {name}");
    let host = Host::new(name, namespace.as_deref());
    inv.meshes.push(MeshEvidence {
        system: System::Linkerd,
        namespace: crate::names::service_of(&host).1,
        origin: Origin::at(doc, node, what.clone()),
    });
    let spec = node.get("spec");
    let budget = budget(doc, spec, &what, inv)?;
    let backends = dst_overrides(doc, spec, &what)?;
    let resource = |path: String| Resource {
        kind: "ServiceProfile".into(),
        namespace: namespace.clone(),
        name: name.to_string(),
        file: doc.file.clone(),
        document: doc.index,
        path,
    };
    let routes = spec
        .and_then(|s| s.get("routes"))
        .map(Node::items)
        .unwrap_or_default();
    if routes.is_empty() && !backends.is_empty() {
        // The profile still replaces the Service's routes: every request takes its
        // dstOverrides, with no retry and no timeout.
        let mut policy = Policy::default();
        policy.set(
            "max_attempts",
            "1",
            Origin::Default("Linkerd default: a ServiceProfile without routes does not retry"),
        );
        inv.routes.push(Route {
            system: System::Linkerd,
            host: host.clone(),
            name: None,
            caller: None,
            method: None,
            backends: backends.clone(),
            policy,
            origin: Origin::at(doc, node, what.clone()),
            resource: resource("spec".into()),
        });
    }
    for (i, route) in routes.iter().enumerate() {
        let path = format!("spec.routes[{i}]");
        let route_name = route
            .get("name")
            .and_then(Node::as_str)
            .map_or_else(|| format!("route-{i}"), str::to_string);
        let route_what = format!("{what} {path} ({route_name})");
        let policy = route_policy(doc, route, &path, &route_what, &budget, inv)?;
        inv.routes.push(Route {
            system: System::Linkerd,
            host: host.clone(),
            name: Some(route_name),
            caller: None,
            method: route.get("condition").and_then(single_method),
            backends: backends.clone(),
            policy,
            origin: Origin::at(doc, route, route_what),
            resource: resource(path),
        });
    }
    Ok(())
}

/// The one method a request condition requires (`method: GET`, or one `method` among `all`).
fn single_method(condition: &Node) -> Option<String> {
    if let Some(method) = condition.get("method").and_then(Node::as_str) {
        return Some(method.to_ascii_uppercase());
    }
    let methods: Vec<String> = condition
        .get("all")
        .map(Node::items)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.get("method").and_then(Node::as_str))
        .map(str::to_ascii_uppercase)
        .collect();
    (methods.len() == 1).then(|| methods[0].clone())
}

fn route_policy(
    doc: &Document,
    route: &Node,
    path: &str,
    what: &str,
    budget: &(String, Origin),
    inv: &mut Inventory,
) -> Result<Policy, ImportError> {
    let mut policy = Policy::default();
    match route.get("timeout") {
        Some(node) => {
            let d = doc.duration(node, &format!("{path}.timeout"), "500ms or 2s")?;
            let origin = Origin::at(doc, node, format!("{what} timeout"));
            if !d.is_zero() {
                let text = duration_noting(d, &origin, inv);
                policy.set("request_timeout", text, origin);
            }
        }
        None => note_once(
            inv,
            Origin::at(doc, route, what.to_string()),
            "ServiceProfile route without timeout",
            "no request_timeout: Linkerd's docs say 10s, but its destination controller sends \
             none and its proxy applies none (linkerd2 profile_translator.go; linkerd2-proxy \
             logical/profile.rs)",
        ),
    }
    let retryable_node = route.get("is_retryable");
    let retryable = match retryable_node {
        Some(node) => node.as_bool().ok_or_else(|| {
            doc.error(
                node,
                &format!("{path}.isRetryable"),
                "not a boolean: write true or false",
            )
        })?,
        None => false,
    };
    let retry_on = failures(doc, route, path, what, inv)?;
    if !retryable {
        let origin = retryable_node.map_or(
            Origin::Default("Linkerd default: a ServiceProfile route is not retryable"),
            |n| Origin::at(doc, n, format!("{what} isRetryable")),
        );
        policy.set("max_attempts", "1", origin);
        return Ok(policy);
    }
    let node = retryable_node.expect("retryable only when written");
    let origin = Origin::at(doc, node, format!("{what} isRetryable"));
    policy.set("max_attempts", PROFILE_MAX_ATTEMPTS, Origin::Default("Linkerd: a retryable ServiceProfile route retries until its budget runs out (no count; 100 is the graph's most)"));
    policy.set("idempotent", "true", origin);
    policy.set("retry_on", string_list(&retry_on.0), retry_on.1);
    policy.set(
        "backoff",
        "\"none\"",
        Origin::Default("Linkerd default: ServiceProfile retries go at once"),
    );
    policy.set("retry_budget", budget.0.clone(), budget.1.clone());
    note_once(
        inv,
        Origin::at(doc, node, what.to_string()),
        "ServiceProfile retries",
        "approximate: Linkerd retries only responses (never a connection error) of requests \
         with a body of at most 64 KiB, and shares one retry budget among the profile's routes",
    );
    Ok(policy)
}

/// The conditions a retryable route retries: the statuses its response classes call failures
/// (first matching class wins; unmatched 5xx are failures) and Linkerd's gRPC failures.
fn failures(
    doc: &Document,
    route: &Node,
    path: &str,
    what: &str,
    inv: &mut Inventory,
) -> Result<(Vec<String>, Origin), ImportError> {
    let classes = route
        .get("response_classes")
        .map(Node::items)
        .unwrap_or_default();
    let mut simple: Vec<(u16, u16, bool)> = Vec::new();
    for (i, class) in classes.iter().enumerate() {
        let field = format!("{path}.responseClasses[{i}]");
        let is_failure = match class.get("is_failure") {
            Some(n) => n.as_bool().ok_or_else(|| {
                doc.error(
                    n,
                    &format!("{field}.isFailure"),
                    "not a boolean: write true or false",
                )
            })?,
            None => false,
        };
        let status = class.get("condition").and_then(|c| c.get("status"));
        let only_status = class
            .get("condition")
            .is_some_and(|c| c.entries().len() == 1);
        match status {
            Some(status) if only_status => {
                let bound = |key: &str| -> Result<Option<u16>, ImportError> {
                    status
                        .get(key)
                        .map(|n| {
                            n.as_u64()
                                .filter(|s| (100..600).contains(s))
                                .map(|s| s as u16)
                                .ok_or_else(|| {
                                    doc.error(
                                        n,
                                        &format!("{field}.condition.status.{key}"),
                                        "not an HTTP status: write 100 to 599",
                                    )
                                })
                        })
                        .transpose()
                };
                let (min, max) = match (bound("min")?, bound("max")?) {
                    (Some(a), Some(b)) => (a, b),
                    (Some(a), None) | (None, Some(a)) => (a, a),
                    (None, None) => {
                        return Err(doc.error(
                            status,
                            &format!("{field}.condition.status"),
                            "a status range needs min or max",
                        ))
                    }
                };
                if is_failure && min < 400 {
                    inv.unread(
                        Origin::at(doc, class, format!("{what} responseClasses[{i}]")),
                        "a failure class below 400",
                        "statuses below 400 are no failure the graph retries; Linkerd retries them",
                    );
                }
                simple.push((min, max, is_failure));
            }
            _ => inv.unread(
                Origin::at(doc, class, format!("{what} responseClasses[{i}]")),
                "a response class with all, any or not",
                "not read: only a status range maps onto retry_on; unmatched 5xx stay failures",
            ),
        }
    }
    let failure = |s: u16| {
        simple
            .iter()
            .find(|(min, max, _)| (*min..=*max).contains(&s))
            .map_or(s >= 500, |c| c.2)
    };
    let statuses: Vec<u16> = (400..=599).filter(|s| failure(*s)).collect();
    let mut out = Vec::new();
    if (500..=599).all(failure) {
        out.push("5xx".to_string());
        push_unique(
            &mut out,
            statuses.iter().filter(|s| **s < 500).map(u16::to_string),
        );
    } else {
        push_unique(&mut out, statuses.iter().map(u16::to_string));
    }
    push_unique(&mut out, GRPC_FAILURES.iter().map(|s| s.to_string()));
    let origin = match route.get("response_classes") {
        Some(node) => Origin::at(doc, node, format!("{what} responseClasses")),
        None => Origin::Default("Linkerd default: 5xx and gRPC failures are retried"),
    };
    Ok((out, origin))
}

/// The profile's retry budget as the graph writes it, or Linkerd's default.
fn budget(
    doc: &Document,
    spec: Option<&Node>,
    what: &str,
    inv: &mut Inventory,
) -> Result<(String, Origin), ImportError> {
    let Some(node) = spec.and_then(|s| s.get("retry_budget")) else {
        return Ok((
            "{ ratio = 0.2, min_per_sec = 10 }".into(),
            Origin::Default("Linkerd default: retryBudget 0.2, 10/s, ttl 10s"),
        ));
    };
    let ratio = match node.get("retry_ratio") {
        Some(n) => n
            .as_f64()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| {
                doc.error(
                    n,
                    "spec.retryBudget.retryRatio",
                    "not a ratio: write 0 to 1, e.g. 0.2",
                )
            })?,
        None => 0.0,
    };
    let min = match node.get("min_retries_per_second") {
        Some(n) => n.as_u64().filter(|m| *m <= 10_000).ok_or_else(|| {
            doc.error(
                n,
                "spec.retryBudget.minRetriesPerSecond",
                "not a count: write 0 to 10000, e.g. 10",
            )
        })?,
        None => 0,
    };
    if let Some(ttl) = node.get("ttl") {
        let d = doc.duration(ttl, "spec.retryBudget.ttl", "10s")?;
        if d != std::time::Duration::from_secs(10) {
            inv.unread(
                Origin::at(doc, ttl, format!("{what} retryBudget.ttl")),
                "retryBudget.ttl",
                "approximate: stormguard's budget window is 10 s",
            );
        }
    }
    Ok((
        format!("{{ ratio = {ratio:?}, min_per_sec = {min} }}"),
        Origin::at(doc, node, format!("{what} retryBudget")),
    ))
}

/// `dstOverrides`: the authorities requests go to instead, weighted (Kubernetes quantities:
/// `500m` is half of `1`).
fn dst_overrides(
    doc: &Document,
    spec: Option<&Node>,
    what: &str,
) -> Result<Vec<Backend>, ImportError> {
    let mut out = Vec::new();
    let items = spec
        .and_then(|s| s.get("dst_overrides"))
        .map(Node::items)
        .unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        let field = format!("spec.dstOverrides[{i}]");
        let authority = item
            .get("authority")
            .and_then(Node::as_str)
            .ok_or_else(|| {
                doc.error(
                    item,
                    &format!("{field}.authority"),
                    "a dstOverride needs an authority, e.g. web-v2.default.svc.cluster.local:80",
                )
            })?;
        let weight = match item.get("weight") {
            Some(n) => quantity(n.as_str().unwrap_or_default()).ok_or_else(|| {
                doc.error(
                    n,
                    &format!("{field}.weight"),
                    "not a weight: write a number or a quantity such as 500m",
                )
            })?,
            None => 1.0,
        };
        if weight > 0.0 {
            out.push(Backend {
                host: Host::new(authority, None),
                weight,
                origin: Origin::at(doc, item, format!("{what} {field}")),
            });
        }
    }
    Ok(out)
}

/// A Kubernetes quantity as Linkerd reads a weight: a number, or thousandths with `m`.
fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let value = match text.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => text.parse::<f64>().ok()?,
    };
    (value.is_finite() && value >= 0.0).then_some(value)
}
