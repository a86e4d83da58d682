//! `VirtualService`: each `http` route, for each of the resource's hosts, as a route whose
//! policy is what Istio's sidecar applies to it (`route.go` `applyHTTPRouteDestination`,
//! `retry.go` `ConvertPolicy`).

use crate::doc::{Document, Node};
use crate::error::ImportError;
use crate::inventory::{Backend, Host, Inventory, Policy, Resource, Route, System};
use crate::kubernetes::{name_of, namespace_of};
use crate::source::Origin;

use super::route_policy::read_policy;
use super::values::unread_fields;

/// The subset each backend of a route names (in the order of its backends), for [`super::resolve`].
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct RouteTargets {
    /// The route's index in [`Inventory::routes`].
    pub route: usize,
    /// The subset of each backend, `None` for the whole host.
    pub subsets: Vec<Option<String>>,
}

/// One `http` route, read once for all the resource's hosts.
struct HttpRoute {
    name: Option<String>,
    method: Option<String>,
    caller: Option<String>,
    backends: Vec<(Backend, Option<String>)>,
    policy: Policy,
    origin: Origin,
    path: String,
}

/// Reads a `VirtualService`.
pub(super) fn read(doc: &Document, node: &Node, inv: &mut Inventory) -> Result<(), ImportError> {
    let name = name_of(doc, node, "VirtualService")?;
    let namespace = namespace_of(node);
    let what = format!("VirtualService {name}");
    let Some(spec) = node.get("spec") else {
        return Err(doc.error(node, "spec", "a VirtualService without spec"));
    };
    let hosts = texts(doc, spec.get("hosts"), "spec.hosts")?;
    let gateways = texts(doc, spec.get("gateways"), "spec.gateways")?;
    let gateway_caller = gateway_caller(doc, spec, &gateways, &what, inv);
    let spec_fields = [
        (
            "tcp",
            "TCP routes: the graph models HTTP and gRPC calls (no timeout or retry applies)",
        ),
        (
            "tls",
            "TLS passthrough routes: Istio cannot see requests inside them, so it retries and \
             times out nothing",
        ),
        (
            "exportTo",
            "limits which namespaces' sidecars apply this VirtualService; the import applies it \
             to every caller",
        ),
    ];
    unread_fields(doc, spec, &format!("{what} spec"), &spec_fields, inv);
    if hosts.is_empty() {
        inv.unread(
            Origin::at(doc, node, what.clone()),
            what.clone(),
            "no hosts: a delegate VirtualService, whose routes apply under the one that \
             delegates to it; the import does not follow delegation",
        );
    }
    let http = spec.get("http").map(Node::items).unwrap_or_default();
    let mut routes = Vec::new();
    for (index, route) in http.iter().enumerate() {
        if let Some(read) = read_http(doc, route, (index, http.len()), (&what, &namespace), inv)? {
            routes.push(read);
        }
    }
    for (host, host_node) in hosts {
        if host.contains('*') {
            inv.unread(
                Origin::at(doc, host_node, format!("{what} spec.hosts")),
                format!("{what} host {host}"),
                "a wildcard host names no one destination: its routes are not read for it",
            );
            continue;
        }
        for route in &routes {
            let index = inv.routes.len();
            inv.istio.routes.push(RouteTargets {
                route: index,
                subsets: route.backends.iter().map(|(_, s)| s.clone()).collect(),
            });
            inv.routes.push(Route {
                system: System::Istio,
                host: Host::new(host.clone(), Some(&namespace)),
                name: route.name.clone(),
                caller: route.caller.clone().or_else(|| gateway_caller.clone()),
                method: route.method.clone(),
                backends: route.backends.iter().map(|(b, _)| b.clone()).collect(),
                policy: route.policy.clone(),
                origin: route.origin.clone(),
                resource: Resource {
                    kind: "VirtualService".to_string(),
                    namespace: Some(namespace.clone()),
                    name: name.clone(),
                    file: doc.file.clone(),
                    document: doc.index,
                    path: route.path.clone(),
                },
            });
        }
    }
    Ok(())
}

/// A list of texts (`hosts`, `gateways`).
fn texts<'a>(
    doc: &Document,
    node: Option<&'a Node>,
    field: &str,
) -> Result<Vec<(String, &'a Node)>, ImportError> {
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    if node.as_str().is_some() {
        return Err(doc.error(node, field, "a list of names, not one name: write [name]"));
    }
    node.items()
        .iter()
        .map(|item| match item.as_str() {
            Some(text) => Ok((text.trim().to_string(), item)),
            None => Err(doc.error(item, field, "not a name")),
        })
        .collect()
}

/// The caller of routes bound only to gateways (no `mesh` in `gateways`): the gateway, named
/// as written; its routes apply at that gateway and at no sidecar.
fn gateway_caller(
    doc: &Document,
    spec: &Node,
    gateways: &[(String, &Node)],
    what: &str,
    inv: &mut Inventory,
) -> Option<String> {
    if gateways.is_empty() || gateways.iter().any(|(g, _)| g == "mesh") {
        return None;
    }
    let (first, node) = &gateways[0];
    let caller = first.rsplit('/').next().unwrap_or(first).to_string();
    inv.unread(
        Origin::at(
            doc,
            spec.get("gateways").unwrap_or(node),
            format!("{what} spec.gateways"),
        ),
        format!("{what} spec.gateways"),
        format!(
            "its routes apply at gateway {} only, not at the mesh's sidecars: read as calls \
             from a caller named {caller}",
            gateways
                .iter()
                .map(|(g, _)| g.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    Some(caller)
}

/// Reads `http[index]`; `None` when it sends no request upstream (a redirect, a direct
/// response, a delegation).
fn read_http(
    doc: &Document,
    http: &Node,
    (index, count): (usize, usize),
    (resource, namespace): (&str, &str),
    inv: &mut Inventory,
) -> Result<Option<HttpRoute>, ImportError> {
    let path = format!("spec.http[{index}]");
    let what = format!("{resource} http[{index}]");
    let informational = [
        (
            "fault",
            "fault injection at the caller's sidecar (injected delays and aborts) is not \
             modelled; Istio's docs say timeouts and retries are off with client-side faults, \
             while its route code still writes them (read as written)",
        ),
        (
            "mirror",
            "mirrored requests add load on the mirror's host, which the graph does not model",
        ),
        (
            "mirrors",
            "mirrored requests add load on the mirrors' hosts, which the graph does not model",
        ),
        ("mirrorPercentage", "the share of requests mirrored"),
        ("corsPolicy", "CORS answers change no timeout or retry"),
        (
            "rewrite",
            "a rewritten path or authority changes no timeout or retry",
        ),
        (
            "headers",
            "header changes: a static reading cannot see per-request overrides",
        ),
    ];
    unread_fields(doc, http, &what, &informational, inv);
    let no_call = [
        (
            "redirect",
            "answered by the sidecar with a redirect: no call is made",
        ),
        (
            "directResponse",
            "answered by the sidecar itself: no call is made",
        ),
        (
            "delegate",
            "delegated to another VirtualService, read on its own; the import does not follow \
             delegation",
        ),
    ];
    if unread_fields(doc, http, &what, &no_call, inv) {
        return Ok(None);
    }
    let name = match http.get("name").and_then(Node::as_str) {
        Some(name) if !name.trim().is_empty() => Some(name.trim().to_string()),
        _ if count > 1 => Some(format!("route-{index}")),
        _ => None,
    };
    let (method, caller) = read_matches(doc, http, &path, &what, inv)?;
    let backends = read_backends(doc, http, (&path, &what, namespace), inv)?;
    if backends.is_empty() {
        inv.unread(
            Origin::at(doc, http, what.clone()),
            what.clone(),
            "an http route with no destination: it sends nothing upstream",
        );
        return Ok(None);
    }
    let policy = read_policy(doc, http, &path, &what, inv)?;
    Ok(Some(HttpRoute {
        name,
        method,
        caller,
        backends,
        policy,
        origin: Origin::at(doc, http, what),
        path,
    }))
}

/// The one method every `match` names exactly (`method: {exact: POST}`), and the one caller
/// every `match` names by `sourceLabels.app`. A match names any request when it says neither.
fn read_matches(
    doc: &Document,
    http: &Node,
    path: &str,
    what: &str,
    inv: &mut Inventory,
) -> Result<(Option<String>, Option<String>), ImportError> {
    let matches = http.get("match").map(Node::items).unwrap_or_default();
    if matches.is_empty() {
        return Ok((None, None));
    }
    let mut methods = Vec::new();
    let mut callers = Vec::new();
    for (i, m) in matches.iter().enumerate() {
        let field = format!("{path}.match[{i}]");
        let here = format!("{what}.match[{i}]");
        methods.push(
            m.get("method")
                .and_then(|method| method.get("exact"))
                .and_then(Node::as_str)
                .map(|s| s.trim().to_ascii_uppercase()),
        );
        let labels = crate::kubernetes::string_map(
            doc,
            m.get("source_labels"),
            &format!("{field}.sourceLabels"),
        )?;
        callers.push(labels.get("app").cloned());
        let others: Vec<&String> = labels.keys().filter(|k| *k != "app").collect();
        if !others.is_empty() {
            inv.unread(
                Origin::at(
                    doc,
                    m.get("source_labels").unwrap_or(m),
                    format!("{here}.sourceLabels"),
                ),
                format!("{here}.sourceLabels"),
                format!(
                    "narrows the callers to pods labelled {}: the graph's calls are per service",
                    others
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let narrowing = [
            ("sourceNamespace", "narrows the callers to one namespace"),
            ("gateways", "narrows the route to some gateways"),
            (
                "headers",
                "chooses requests by header: a share the graph does not know",
            ),
            (
                "withoutHeaders",
                "chooses requests by header: a share the graph does not know",
            ),
            (
                "queryParams",
                "chooses requests by query: a share the graph does not know",
            ),
            (
                "port",
                "applies to calls on one port: the graph's calls have no port",
            ),
        ];
        unread_fields(doc, m, &here, &narrowing, inv);
    }
    let one = |items: Vec<Option<String>>| -> Option<String> {
        let first = items.first()?.clone()?;
        items
            .iter()
            .all(|i| i.as_deref() == Some(first.as_str()))
            .then_some(first)
    };
    Ok((one(methods), one(callers)))
}

/// `route[]`: each destination's host, subset and weight. Istio ignores a zero weight when
/// there are other destinations (`route.go`: "Ignore 0 weighted clusters").
fn read_backends(
    doc: &Document,
    http: &Node,
    (path, what, namespace): (&str, &str, &str),
    inv: &mut Inventory,
) -> Result<Vec<(Backend, Option<String>)>, ImportError> {
    let destinations = http.get("route").map(Node::items).unwrap_or_default();
    let mut backends = Vec::new();
    for (i, route) in destinations.iter().enumerate() {
        let field = format!("{path}.route[{i}]");
        let here = format!("{what}.route[{i}]");
        let destination = route.get("destination").ok_or_else(|| {
            doc.error(
                route,
                &format!("{field}.destination"),
                "missing: write destination.host",
            )
        })?;
        let host = destination
            .get("host")
            .and_then(Node::as_str)
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                doc.error(
                    destination,
                    &format!("{field}.destination.host"),
                    "missing: the destination's host is required",
                )
            })?;
        let subset = destination
            .get("subset")
            .and_then(Node::as_str)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let weight = match route.get("weight") {
            Some(w) => w
                .as_u64()
                .filter(|w| *w <= i32::MAX as u64)
                .ok_or_else(|| {
                    doc.error(w, &format!("{field}.weight"), "not a whole number from 0")
                })?,
            None if destinations.len() == 1 => 1,
            None => 0,
        };
        if weight == 0 && destinations.len() > 1 {
            inv.unread(
                Origin::at(doc, route, here.clone()),
                format!("{here} ({host})"),
                "weight 0 among several destinations: Istio sends it nothing",
            );
            continue;
        }
        if let Some(headers) = route.get("headers") {
            inv.unread(
                Origin::at(doc, headers, format!("{here}.headers")),
                format!("{here}.headers"),
                "header changes change no timeout or retry",
            );
        }
        let port = destination
            .get("port")
            .and_then(|p| p.get("number"))
            .and_then(Node::as_str);
        let described = match (&subset, port) {
            (Some(s), _) => format!("{here}.destination {host} subset {s}"),
            (None, Some(p)) => format!("{here}.destination {host} port {p}"),
            (None, None) => format!("{here}.destination {host}"),
        };
        backends.push((
            Backend {
                host: Host::new(host, Some(namespace)),
                weight: weight.max(1) as f64,
                origin: Origin::at(doc, destination, described),
            },
            subset,
        ));
    }
    Ok(backends)
}
