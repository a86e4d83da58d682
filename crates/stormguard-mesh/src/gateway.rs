//! Gateway API: `HTTPRoute` and `GRPCRoute` (`gateway.networking.k8s.io` v1/v1beta1, and
//! Linkerd's own `policy.linkerd.io` copies), with Linkerd's annotations on them.
//!
//! ## Which calls a route is about
//! - A `parentRef` of kind `Service` (group `""` or `core`; GAMMA, the mesh's east-west
//!   routes): the destination is that Service, for every caller; the rule's `backendRefs` are
//!   its backends (none: the Service itself).
//! - A `parentRef` that is a `Gateway` (the default kind): north-south. The gateway applies the
//!   rule to the requests it forwards: the destination is each `backendRef`'s Service and the
//!   caller is the gateway, by its name ([`crate::inventory::Route::caller`]); calls between
//!   services do not take this policy. Listed once per file so that a reader knows why.
//!
//! ## Gateway API's meaning (kubernetes-sigs/gateway-api `apis/v1/httproute_types.go`)
//! `timeouts.request` bounds the whole request (`request_timeout`), `timeouts.backendRequest`
//! each request to a backend (`timeout`; it starts when sending starts, so connecting may not
//! count), `0s` disables either, unset is implementation-specific. `retry` (experimental,
//! GEP-1731): `attempts` is how many times a request "should be retried", `codes` the statuses
//! to retry, `backoff` the *minimum* wait, and implementations SHOULD also retry connection
//! errors. `GRPCRoute` has no timeout or retry field (`apis/v1/grpcroute_types.go`): only its
//! routes, and Linkerd's annotations, are read.
//!
//! A route with Linkerd annotations, or of `policy.linkerd.io`, is Linkerd's, and its policy is
//! Linkerd's (see [`crate::linkerd`]), resolved with its Service's annotations once every file
//! is read.

pub mod values;

#[cfg(test)]
pub(crate) mod tests;

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{Backend, Host, Inventory, MeshEvidence, Policy, Resource, Route, System};
use crate::linkerd::{annotations, PendingRoute};
use crate::source::Origin;
use values::{duration, duration_noting, list, note_once, push_unique};

/// Where a route attaches.
enum Parent {
    /// A Service (GAMMA): the destination.
    Service(Host),
    /// A Gateway, by name: the caller.
    Gateway(String),
}

/// What is the same for every rule of one route resource.
struct RouteDoc<'a> {
    doc: &'a Document,
    kind: &'a str,
    name: String,
    namespace: String,
    /// `policy.linkerd.io`.
    linkerd_group: bool,
    annotations: annotations::Annotations,
}

impl RouteDoc<'_> {
    fn what(&self, path: &str) -> String {
        format!("{} {} {path}", self.kind, self.name)
    }

    fn linkerd(&self) -> bool {
        self.linkerd_group || self.annotations.origin.is_some()
    }

    fn resource(&self, path: &str) -> Resource {
        Resource {
            kind: self.kind.to_string(),
            namespace: Some(self.namespace.clone()),
            name: self.name.clone(),
            file: self.doc.file.clone(),
            document: self.doc.index,
            path: path.to_string(),
        }
    }
}

/// Reads one route resource.
///
/// # Errors
/// A malformed field (a duration, a count, a status outside 400 to 599, a reference without a
/// name), at its line.
pub fn read(
    doc: &Document,
    node: &Node,
    kind: &str,
    inv: &mut Inventory,
) -> Result<(), ImportError> {
    inv.saw(kind);
    let metadata = node.get("metadata");
    let text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Node::as_str);
    let name = text("name").unwrap_or("unnamed").to_string();
    let namespace = text("namespace").unwrap_or("default").to_string();
    let api_version = node
        .get("apiVersion")
        .and_then(Node::as_str)
        .unwrap_or_default();
    let route = RouteDoc {
        doc,
        kind,
        annotations: annotations::read(doc, node, kind, &name, inv)?,
        name,
        namespace,
        linkerd_group: api_version.starts_with("policy.linkerd.io/"),
    };
    if route.linkerd() {
        inv.meshes.push(MeshEvidence {
            system: System::Linkerd,
            namespace: Some(route.namespace.clone()),
            origin: Origin::at(doc, node, route.what("")),
        });
    }
    let spec = node.get("spec");
    let parents = parents(&route, spec, inv)?;
    let rules = spec
        .and_then(|s| s.get("rules"))
        .map(Node::items)
        .unwrap_or_default();
    if rules.is_empty() {
        // Gateway API's default: one rule matching every request, sent to the parent.
        let at = spec.unwrap_or(node);
        read_rule(&route, at, "spec", None, &parents, inv)?;
    }
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        let rule_name = (rules.len() > 1).then(|| rule_name(rule, kind, i));
        read_rule(&route, rule, &path, rule_name, &parents, inv)?;
    }
    Ok(())
}

/// A rule's name when the route has several: its `name` (Gateway API v1.2), a `GRPCRoute`'s one
/// `service/method`, or `rule-N`.
fn rule_name(rule: &Node, kind: &str, i: usize) -> String {
    if let Some(name) = rule.get("name").and_then(Node::as_str) {
        return name.to_string();
    }
    let matches = rule.get("matches").map(Node::items).unwrap_or_default();
    if let ([only], "GRPCRoute") = (matches, kind) {
        let method = only.get("method");
        let part = |key| method.and_then(|m| m.get(key)).and_then(Node::as_str);
        if let (Some(service), Some(method)) = (part("service"), part("method")) {
            return format!("{service}/{method}");
        }
    }
    format!("rule-{i}")
}

/// The one HTTP method every match of an `HTTPRoute` rule requires, if they agree.
fn rule_method(rule: &Node, kind: &str) -> Option<String> {
    if kind != "HTTPRoute" {
        return None;
    }
    let matches = rule.get("matches").map(Node::items).unwrap_or_default();
    let methods: Vec<&str> = matches
        .iter()
        .map(|m| m.get("method").and_then(Node::as_str))
        .collect::<Option<_>>()?;
    let first = *methods.first()?;
    methods
        .iter()
        .all(|m| *m == first)
        .then(|| first.to_ascii_uppercase())
}

fn parents(
    route: &RouteDoc,
    spec: Option<&Node>,
    inv: &mut Inventory,
) -> Result<Vec<Parent>, ImportError> {
    let doc = route.doc;
    let mut out = Vec::new();
    let refs = spec
        .and_then(|s| s.get("parent_refs"))
        .map(Node::items)
        .unwrap_or_default();
    for (i, parent) in refs.iter().enumerate() {
        let field = format!("spec.parentRefs[{i}]");
        let get = |key: &str| parent.get(key).and_then(Node::as_str);
        let name = get("name").ok_or_else(|| {
            doc.error(parent, &format!("{field}.name"), "a parentRef needs a name")
        })?;
        let kind = get("kind").unwrap_or("Gateway");
        let group = get("group").unwrap_or("gateway.networking.k8s.io");
        let namespace = get("namespace").unwrap_or(&route.namespace);
        match (group, kind) {
            ("" | "core", "Service") => out.push(Parent::Service(Host::new(name, Some(namespace)))),
            ("gateway.networking.k8s.io", "Gateway") => out.push(Parent::Gateway(name.to_string())),
            _ => inv.unread(
                Origin::at(doc, parent, route.what(&field)),
                format!("parentRef {group}/{kind} {name}"),
                "a parent that is neither a Service nor a Gateway: no call is known to take it",
            ),
        }
    }
    if refs.is_empty() {
        inv.unread(
            Origin::at(doc, spec.unwrap_or(&route.doc.root), route.what("spec")),
            format!("{} {}", route.kind, route.name),
            "no parentRefs: the route attaches to nothing, so no call takes it",
        );
    }
    Ok(out)
}

fn backends(
    route: &RouteDoc,
    rule: &Node,
    path: &str,
    inv: &mut Inventory,
) -> Result<Vec<Backend>, ImportError> {
    let doc = route.doc;
    let mut out = Vec::new();
    let refs = rule
        .get("backend_refs")
        .map(Node::items)
        .unwrap_or_default();
    for (j, backend) in refs.iter().enumerate() {
        let field = format!("{path}.backendRefs[{j}]");
        let get = |key: &str| backend.get(key).and_then(Node::as_str);
        let name = get("name").ok_or_else(|| {
            doc.error(
                backend,
                &format!("{field}.name"),
                "a backendRef needs a name",
            )
        })?;
        let origin = Origin::at(doc, backend, route.what(&field));
        let kind = get("kind").unwrap_or("Service");
        if kind != "Service" {
            inv.unread(
                origin.clone(),
                format!("backendRef kind {kind}"),
                "read as a Service of that name",
            );
        }
        let weight = match backend.get("weight") {
            Some(n) => n.as_u64().filter(|w| *w <= 1_000_000).ok_or_else(|| {
                doc.error(
                    n,
                    &format!("{field}.weight"),
                    "not a weight: write a whole number from 0 to 1000000",
                )
            })?,
            None => 1,
        };
        if weight == 0 {
            inv.unread(
                origin,
                format!("backendRef {name} weight 0"),
                "takes no request",
            );
            continue;
        }
        out.push(Backend {
            host: Host::new(name, Some(get("namespace").unwrap_or(&route.namespace))),
            weight: weight as f64,
            origin,
        });
    }
    Ok(out)
}

fn read_rule(
    route: &RouteDoc,
    rule: &Node,
    path: &str,
    name: Option<String>,
    parents: &[Parent],
    inv: &mut Inventory,
) -> Result<(), ImportError> {
    let doc = route.doc;
    let grpc = route.kind == "GRPCRoute";
    let backends = backends(route, rule, path, inv)?;
    let method = rule_method(rule, route.kind);
    let origin = Origin::at(doc, rule, route.what(path));
    let on_service = parents.iter().any(|p| matches!(p, Parent::Service(_)));
    // Linkerd reads its annotations, and a policy.linkerd.io rule's timeouts.request, only on
    // routes whose parent is a Service: the policy is written once the Service is known.
    let mut own = route.annotations.clone();
    let spec_policy = if route.linkerd() && on_service {
        linkerd_spec(route, rule, path, &mut own, inv)?;
        Policy::default()
    } else if grpc {
        note_once(
            inv,
            origin.clone(),
            "GRPCRoute timeouts and retries",
            "a GRPCRoute has no timeout or retry field (gateway-api apis/v1/grpcroute_types.go): \
             they are the implementation's",
        );
        Policy::default()
    } else {
        gateway_policy(route, rule, path, inv)?
    };
    for parent in parents {
        match parent {
            Parent::Service(host) => {
                inv.routes.push(Route {
                    system: if route.linkerd() {
                        System::Linkerd
                    } else {
                        System::GatewayApi
                    },
                    host: host.clone(),
                    name: name.clone(),
                    caller: None,
                    method: method.clone(),
                    backends: backends.clone(),
                    policy: spec_policy.clone(),
                    origin: origin.clone(),
                    resource: route.resource(path),
                });
                inv.linkerd.routes.push(PendingRoute {
                    resource: route.resource(path),
                    host: host.clone(),
                    grpc,
                    linkerd: route.linkerd(),
                    annotations: own.clone(),
                });
            }
            Parent::Gateway(gateway) => {
                note_once(
                    inv,
                    origin.clone(),
                    "north-south route",
                    &format!(
                        "a route on the Gateway {gateway}: its policy is on calls from the \
                         gateway (caller {gateway}) to each backend, not on calls between \
                         services"
                    ),
                );
                if route.annotations.origin.is_some() {
                    note_once(
                        inv,
                        origin.clone(),
                        "Linkerd annotations on a Gateway's route",
                        "not applied: Linkerd reads them on routes whose parent is a Service",
                    );
                }
                if backends.is_empty() {
                    inv.unread(
                        origin.clone(),
                        route.what(path),
                        "no backendRefs: no destination",
                    );
                }
                let policy = if route.linkerd() && !grpc && on_service {
                    gateway_policy(route, rule, path, inv)?
                } else {
                    spec_policy.clone()
                };
                for backend in &backends {
                    inv.routes.push(Route {
                        system: System::GatewayApi,
                        host: backend.host.clone(),
                        name: name.clone(),
                        caller: Some(gateway.clone()),
                        method: method.clone(),
                        backends: Vec::new(),
                        policy: policy.clone(),
                        origin: origin.clone(),
                        resource: route.resource(path),
                    });
                }
            }
        }
    }
    Ok(())
}

/// What Linkerd reads of a rule's own spec: a `policy.linkerd.io` `HTTPRoute`'s
/// `timeouts.request` (`0s`: none), when no `timeout.linkerd.io/request` overrides it
/// (linkerd2 `convert_linkerd_rule`). The rest of `timeouts` and `retry` Linkerd does not read.
fn linkerd_spec(
    route: &RouteDoc,
    rule: &Node,
    path: &str,
    own: &mut annotations::Annotations,
    inv: &mut Inventory,
) -> Result<(), ImportError> {
    let doc = route.doc;
    let timeouts = rule.get("timeouts");
    for (key, node) in timeouts.map(Node::entries).unwrap_or_default() {
        let key = key.as_str().unwrap_or_default();
        let origin = Origin::at(doc, node, route.what(&format!("{path}.timeouts.{key}")));
        if key == "request" && route.linkerd_group && route.kind == "HTTPRoute" {
            let d = node.as_duration().ok_or_else(|| {
                doc.error(
                    node,
                    &format!("{path}.timeouts.request"),
                    "not a duration: write e.g. 2s",
                )
            })?;
            if own.timeouts.request.is_none() && !d.is_zero() {
                own.timeouts.request = Some((d, origin));
            }
        } else {
            inv.unread(
                origin,
                format!("timeouts.{key}"),
                "not applied: Linkerd reads only a policy.linkerd.io HTTPRoute's \
                 timeouts.request (write timeout.linkerd.io annotations)",
            );
        }
    }
    if let Some(retry) = rule.get("retry") {
        inv.unread(
            Origin::at(doc, retry, route.what(&format!("{path}.retry"))),
            "retry",
            "not applied: Linkerd retries by its retry.linkerd.io annotations only",
        );
    }
    Ok(())
}

/// A rule's policy as the Gateway API defines its fields.
fn gateway_policy(
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
        let d = node.as_duration().ok_or_else(|| {
            doc.error(
                node,
                &format!("{path}.timeouts.{key}"),
                "not a duration: write e.g. 500ms or 2s",
            )
        })?;
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
    }
    if let Some(retry) = rule.get("retry") {
        retry_policy(route, retry, &format!("{path}.retry"), &mut policy, inv)?;
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
    policy.set("retry_on", list(&retry_on), origin);
    match retry.get("backoff") {
        Some(node) => {
            let min = node.as_duration().ok_or_else(|| {
                doc.error(
                    node,
                    &format!("{path}.backoff"),
                    "not a duration: write e.g. 100ms",
                )
            })?;
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
    let bare = |d| duration(d).0.trim_matches('"').to_string();
    let hour = std::time::Duration::from_secs(3600);
    let base = (min * 2).min(hour);
    let cap = (min * 20).min(hour);
    format!("\"equal-jitter(base={}, cap={})\"", bare(base), bare(cap))
}
