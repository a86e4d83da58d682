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

mod spec;
pub mod values;

#[cfg(test)]
pub(crate) mod tests;

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{Backend, Host, Inventory, MeshEvidence, Policy, Resource, Route, System};
use crate::linkerd::{annotations, PendingRoute};
use crate::source::Origin;
use spec::gateway_policy;
use values::note_once;

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
            .trim_end()
            .to_string()
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
            // One route per parent: a second reference to it (another port) adds no call.
            ("" | "core", "Service") => {
                let host = Host::new(name, Some(namespace));
                if !out
                    .iter()
                    .any(|p| matches!(p, Parent::Service(h) if *h == host))
                {
                    out.push(Parent::Service(host));
                }
            }
            ("gateway.networking.k8s.io", "Gateway") => {
                if !out
                    .iter()
                    .any(|p| matches!(p, Parent::Gateway(g) if g == name))
                {
                    out.push(Parent::Gateway(name.to_string()));
                }
            }
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
            let d = doc.duration(node, &format!("{path}.timeouts.request"), "2s")?;
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
