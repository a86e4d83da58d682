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

use super::calls::{method, Planned};
use super::placement::{self, fill_destinations, from_route, Key};
use super::{Context, Table, PLACEHOLDER};
use crate::names::{graph_name, service_of};
use crate::source::Origin;

/// The placeholder graph's body, and how its calls were made (for the header).
pub(super) fn write(cx: &mut Context<'_>) -> (String, String) {
    let mut endpoints: Vec<(String, f64, Option<Origin>, Planned)> = Vec::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut callees: BTreeMap<String, Vec<Key>> = BTreeMap::new();
    let inv = cx.inv;
    for route in &inv.routes {
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
        for (to, key, share, weight_origin) in targets {
            let mut chosen = from_route(route);
            let keys = vec![key, service_of(&route.host)];
            fill_destinations(inv, &cx.names, &keys, route.caller.as_deref(), &mut chosen);
            let mut name = String::new();
            if let Some(caller) = &route.caller {
                name.push_str(caller);
                name.push('-');
            }
            name.push_str(&to);
            if let Some(route_name) = &route.name {
                name.push('-');
                name.push_str(route_name);
            }
            let name = unique(&graph_name(&name), &mut used);
            let caller = format!("{PLACEHOLDER}/{name}");
            let chosen = cx.prepare(&caller, &to, chosen, None);
            let method = route
                .method
                .as_deref()
                .and_then(method)
                .map(|m| (m, route.origin.clone()));
            callees.entry(to.clone()).or_default().extend(keys);
            endpoints.push((
                name,
                share,
                weight_origin,
                Planned {
                    to,
                    endpoint: None,
                    method,
                    rtt: None,
                    chosen,
                },
            ));
        }
    }
    // Services in a mesh that no route covers get the mesh's defaults.
    for service in inv.workloads.iter().filter(|w| w.kind == "Service") {
        let key: Key = (service.name.clone(), Some(service.namespace.clone()));
        let to = cx.names.of(&crate::inventory::Host::new(
            &service.name,
            Some(&service.namespace),
        ));
        if callees.contains_key(&to) {
            continue;
        }
        let keys = vec![key];
        let mut ignored = Vec::new();
        let Some(chosen) = placement::choose(inv, &cx.names, None, &keys, None, &mut ignored)
        else {
            continue;
        };
        let name = unique(&to, &mut used);
        let chosen = cx.prepare(&format!("{PLACEHOLDER}/{name}"), &to, chosen, None);
        callees.insert(to.clone(), keys);
        endpoints.push((
            name,
            1.0,
            None,
            Planned {
                to,
                endpoint: None,
                method: None,
                rtt: None,
                chosen,
            },
        ));
    }
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
    for (name, share, weight_origin, call) in &endpoints {
        out.push_str(&format!("[services.{PLACEHOLDER}.endpoints.{name}]\n"));
        if (share - 1.0).abs() > 1e-12 {
            match weight_origin {
                Some(origin) => out.push_str(&format!(
                    "weight = {share:?} # {}\n",
                    super::calls::comment(&origin.to_string())
                )),
                None => out.push_str(&format!("weight = {share:?}\n")),
            }
        }
        out.push('\n');
        let table = Table::Call {
            service: PLACEHOLDER.to_string(),
            endpoint: Some(name.clone()),
            index: 0,
        };
        cx.push_call(
            &mut out,
            &format!("services.{PLACEHOLDER}.endpoints.{name}.calls"),
            table,
            call,
        );
    }
    for (to, keys) in &callees {
        out.push_str(&format!("[services.{to}]\n"));
        if let Some((instances, origin)) = cx.names.workloads.instances(inv, keys) {
            cx.write_instances(&mut out, to, instances, &origin);
        }
        out.push('\n');
    }
    let how = format!(
        "each route is a call from the placeholder caller `{PLACEHOLDER}` (the entry), which \
         stands for every client: who calls whom is in no manifest; give it with --base"
    );
    (how, out)
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
            super::calls::comment(&origin.to_string())
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
