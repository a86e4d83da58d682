//! A graph without a base: one placeholder caller, the entry, with one endpoint per route (and
//! per destination its weights split it into), each making one call with the route's policy;
//! and one per Service in a mesh that no route covers, with the mesh's defaults.
//!
//! ## Why one placeholder
//! No manifest says who calls whom, and inventing callers would put false edges into `check`'s
//! figures. One caller that stands for every client keeps each route's policy checkable alone
//! (a per-try timeout times attempts beyond the request timeout, a retry with no budget) and
//! says, by its name in the header, that the edges are still to be given (`--base`).

use std::collections::{BTreeMap, BTreeSet};

use super::calls::{comment, method, Planned};
use super::placement::{self, fill_destinations, from_route, Key};
use super::{Context, Table, PLACEHOLDER};
use crate::inventory::{Host, Route};
use crate::names::{graph_name, service_of};
use crate::source::Origin;

/// One endpoint of the placeholder: its name, its share of the requests (and where the weight
/// is written), and its one call.
struct Endpoint {
    name: String,
    share: f64,
    weight_origin: Option<Origin>,
    call: Planned,
}

/// The endpoints written so far, their names, each callee's destinations, and the endpoints
/// of each callee that named routes call.
#[derive(Default)]
struct Endpoints {
    list: Vec<Endpoint>,
    names: BTreeSet<String>,
    callees: BTreeMap<String, Vec<Key>>,
    callee_endpoints: BTreeMap<String, BTreeSet<String>>,
}

/// The placeholder graph's body, and how its calls were made (for the header).
pub(super) fn write(cx: &mut Context<'_>) -> (String, String) {
    let mut endpoints = Endpoints::default();
    for route in &cx.inv.routes {
        of_route(cx, route, &mut endpoints);
    }
    of_meshed_services(cx, &mut endpoints);
    let out = render(cx, &endpoints);
    let how = format!(
        "each route is a call from the placeholder caller `{PLACEHOLDER}` (the entry), which \
         stands for every client: who calls whom is in no manifest; give it with --base"
    );
    (how, out)
}

/// The destinations of `route` with their shares: its backends' by weight (those of one
/// service summed), or its one backend or host.
fn targets(cx: &Context<'_>, route: &Route) -> Vec<(String, Key, f64, Option<Origin>)> {
    let mut targets: Vec<(String, Key, f64, Option<Origin>)> = Vec::new();
    let total: f64 = route.backends.iter().map(|b| b.weight.max(0.0)).sum();
    if total > 0.0 && route.backends.len() > 1 {
        for backend in route.backends.iter().filter(|b| b.weight > 0.0) {
            let to = cx.names.of(&backend.host);
            let share = backend.weight / total;
            match targets.iter_mut().find(|t| t.0 == to) {
                Some(target) => target.2 += share,
                None => targets.push((
                    to,
                    service_of(&backend.host),
                    share,
                    Some(backend.origin.clone()),
                )),
            }
        }
    } else {
        let host = route.backends.first().map_or(&route.host, |b| &b.host);
        targets.push((cx.names.of(host), service_of(host), 1.0, None));
    }
    targets
}

/// An endpoint per destination of `route` (`CALLER-` when the route is one caller's, then the
/// destination, then `-ROUTE` when the route has a name), each calling it with the route's
/// policy and the destination's.
fn of_route(cx: &mut Context<'_>, route: &Route, endpoints: &mut Endpoints) {
    for (to, key, share, weight_origin) in targets(cx, route) {
        let mut chosen = from_route(route);
        let keys = vec![key, service_of(&route.host)];
        fill_destinations(
            cx.inv,
            &cx.names,
            &keys,
            route.caller.as_deref(),
            &mut chosen,
        );
        let name = [route.caller.as_deref(), Some(&to), route.name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("-");
        let name = unique(&graph_name(&name), &mut endpoints.names);
        let chosen = cx.prepare(&format!("{PLACEHOLDER}/{name}"), &to, chosen, None);
        let method = route
            .method
            .as_deref()
            .and_then(method)
            .map(|m| (m, route.origin.clone()));
        endpoints
            .callees
            .entry(to.clone())
            .or_default()
            .extend(keys);
        // A named route is the callee's endpoint of that name: `export` finds the route again
        // by it and edits it in place (its matches kept), where a call to the whole service
        // matched no named route and a new resource without the matches was written.
        let endpoint = route.name.as_deref().map(graph_name);
        if let Some(endpoint) = &endpoint {
            endpoints
                .callee_endpoints
                .entry(to.clone())
                .or_default()
                .insert(endpoint.clone());
        }
        endpoints.list.push(Endpoint {
            name,
            share,
            weight_origin,
            call: Planned {
                to,
                endpoint,
                method,
                rtt: None,
                chosen,
            },
        });
    }
}

/// An endpoint per Service in a mesh that no route covers, with the mesh's defaults: the hop
/// with no route resource still retries as the sidecars do.
fn of_meshed_services(cx: &mut Context<'_>, endpoints: &mut Endpoints) {
    let inv = cx.inv;
    for service in inv.workloads.iter().filter(|w| w.kind == "Service") {
        let to = cx
            .names
            .of(&Host::new(&service.name, Some(&service.namespace)));
        if endpoints.callees.contains_key(&to) {
            continue;
        }
        let keys: Vec<Key> = vec![(service.name.clone(), Some(service.namespace.clone()))];
        let mut no_notes = Vec::new();
        let Some(chosen) = placement::choose(inv, &cx.names, None, &keys, None, &mut no_notes)
        else {
            continue;
        };
        let name = unique(&to, &mut endpoints.names);
        let chosen = cx.prepare(&format!("{PLACEHOLDER}/{name}"), &to, chosen, None);
        endpoints.callees.insert(to.clone(), keys);
        endpoints.list.push(Endpoint {
            name,
            share: 1.0,
            weight_origin: None,
            call: Planned {
                to,
                endpoint: None,
                method: None,
                rtt: None,
                chosen,
            },
        });
    }
}

/// The graph's text: the entry, the placeholder with its endpoints, each callee with its
/// instances.
fn render(cx: &mut Context<'_>, endpoints: &Endpoints) -> String {
    let mut out = String::new();
    out.push_str(&format!("[entry]\nservice = \"{PLACEHOLDER}\"\n\n"));
    out.push_str(&format!(
        "# {PLACEHOLDER} stands for every client of the routes below: who calls whom is in no \
         manifest\n# (give it with --base GRAPH.toml). One endpoint per route, each one call \
         with the route's policy.\n"
    ));
    out.push_str(&format!(
        "[services.{PLACEHOLDER}]\nconcurrency = 100000\n\n"
    ));
    for endpoint in &endpoints.list {
        let name = &endpoint.name;
        out.push_str(&format!("[services.{PLACEHOLDER}.endpoints.{name}]\n"));
        let share = endpoint.share;
        if (share - 1.0).abs() > 1e-12 {
            match &endpoint.weight_origin {
                Some(origin) => {
                    out.push_str(&format!(
                        "weight = {share:?} # {}\n",
                        comment(&origin.to_string())
                    ));
                    let table = Table::Endpoint {
                        service: PLACEHOLDER.to_string(),
                        endpoint: name.clone(),
                    };
                    cx.annotate(&table, Some("weight"), origin);
                }
                None => out.push_str(&format!("weight = {share:?}\n")),
            }
        }
        out.push('\n');
        let table = Table::Call {
            service: PLACEHOLDER.to_string(),
            endpoint: Some(name.clone()),
            index: 0,
        };
        let header = format!("services.{PLACEHOLDER}.endpoints.{name}.calls");
        cx.push_call(&mut out, &header, table, &endpoint.call);
    }
    for (to, keys) in &endpoints.callees {
        out.push_str(&format!("[services.{to}]\n"));
        if let Some((instances, origin)) = cx.names.workloads.instances(cx.inv, keys) {
            cx.write_instances(&mut out, to, instances, &origin);
        }
        out.push('\n');
        for endpoint in endpoints.callee_endpoints.get(to).into_iter().flatten() {
            out.push_str(&format!(
                "# the route named {endpoint}; its own calls are in no manifest\n\
                 [services.{to}.endpoints.{endpoint}]\n\n"
            ));
        }
    }
    out
}

/// `wanted`, or `wanted-2`, `wanted-3`, ... if it is taken.
fn unique(wanted: &str, used: &mut BTreeSet<String>) -> String {
    let name = if used.contains(wanted) {
        (2..)
            .map(|n| format!("{wanted}-{n}"))
            .find(|n| !used.contains(n))
            .expect("an unused name")
    } else {
        wanted.to_string()
    };
    used.insert(name.clone());
    name
}

impl Context<'_> {
    /// Writes `instances = N # origin` for service `service`, within the range a graph takes.
    pub(super) fn write_instances(
        &mut self,
        out: &mut String,
        service: &str,
        instances: u32,
        origin: &Origin,
    ) {
        let value = self.instances_value(service, instances, origin);
        out.push_str(&format!(
            "instances = {value} # {}\n",
            comment(&origin.to_string())
        ));
        self.annotate(
            &Table::Service(service.to_string()),
            Some("instances"),
            origin,
        );
    }

    /// Replicas as a graph's `instances` (1 to 1000), noting a clamp.
    pub(super) fn instances_value(
        &mut self,
        service: &str,
        instances: u32,
        origin: &Origin,
    ) -> u32 {
        let clamped = instances.clamp(1, 1000);
        if clamped != instances {
            self.notes.push(crate::inventory::Unread {
                origin: origin.clone(),
                what: format!("replicas of {service}"),
                why: format!(
                    "{instances} replicas: a graph's instances are 1 to 1000; written as {clamped}"
                ),
            });
        }
        clamped
    }
}
