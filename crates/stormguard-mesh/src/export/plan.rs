//! From a graph's calls to what a target writes per destination: each call's fields, grouped
//! by destination and endpoint, one policy chosen where a resource can hold only one.

use std::collections::BTreeMap;

use stormguard_graph::model::Call;
use stormguard_graph::Graph;

use super::{
    Assign, Conflict, DestinationPlan, Fields, PerCaller, RoutePlan, Seg, Target, Unexpressed,
};

/// The graph's calls, with their policies, as the target writes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Per destination (per caller for Envoy), in name order.
    pub destinations: Vec<DestinationPlan>,
    /// What each call's target cannot express.
    pub unexpressed: Vec<Unexpressed>,
    /// Policies one resource could not all hold.
    pub conflicts: Vec<Conflict>,
}

/// One call, from where.
struct CallRef<'g> {
    caller: &'g str,
    /// The caller as a conflict names it: with the caller's endpoint when it has named ones
    /// (`frontend (checkout-browse)`), since two endpoints of one caller may hold different
    /// policies for one destination, and "wrote frontend's; not frontend's" said nothing.
    label: String,
    to: &'g str,
    endpoint: Option<&'g str>,
    call: &'g Call,
}

/// Every call the target's resources hold: the mesh's. An imported graph makes a caller's
/// sidecar explicit where the application has its own client settings (a service
/// `CALLER-sidecar` that only CALLER calls, see [`crate::assemble`]): the application's calls to
/// it are the application's own, which no mesh resource holds, and the sidecar's calls are the
/// caller's calls through the mesh.
fn calls(graph: &Graph) -> Vec<CallRef<'_>> {
    let sidecars = sidecars(graph);
    let mut out = Vec::new();
    for (name, service) in &graph.services {
        let caller = sidecars.get(name.as_str()).copied().unwrap_or(name);
        for endpoint in service.each_endpoint() {
            for call in endpoint.calls {
                if sidecars.contains_key(call.to.as_str()) {
                    continue;
                }
                out.push(CallRef {
                    caller,
                    label: match endpoint.name {
                        Some(name) => format!("{caller} ({name})"),
                        None => caller.to_string(),
                    },
                    to: &call.to,
                    endpoint: call.endpoint.as_deref(),
                    call,
                });
            }
        }
    }
    out
}

/// The explicit sidecars of a graph, with the caller each stands for: a service named
/// `CALLER-sidecar` (or `CALLER-sidecar-N`) that CALLER alone calls.
fn sidecars(graph: &Graph) -> std::collections::BTreeMap<&str, &str> {
    let mut callers: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        std::collections::BTreeMap::new();
    for (name, service) in &graph.services {
        for endpoint in service.each_endpoint() {
            for call in endpoint.calls {
                callers
                    .entry(call.to.as_str())
                    .or_default()
                    .insert(name.as_str());
            }
        }
    }
    callers
        .into_iter()
        .filter_map(|(to, from)| {
            let [caller] = from.into_iter().collect::<Vec<_>>()[..] else {
                return None;
            };
            let rest = to.strip_prefix(caller)?.strip_prefix("-sidecar")?;
            let numbered = rest
                .strip_prefix('-')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            (rest.is_empty() || numbered).then_some((to, caller))
        })
        .collect()
}

/// Groups `items` (caller, value) by equal values, largest group first (ties: first seen).
fn partition<T: PartialEq + Clone>(items: &[(String, T)]) -> Vec<(Vec<String>, T)> {
    let mut groups: Vec<(Vec<String>, T)> = Vec::new();
    for (caller, value) in items {
        match groups.iter_mut().find(|(_, v)| v == value) {
            Some((callers, _)) => {
                if !callers.contains(caller) {
                    callers.push(caller.clone())
                }
            }
            None => groups.push((vec![caller.clone()], value.clone())),
        }
    }
    // Stable: among equal sizes the first seen stays first.
    groups.sort_by_key(|(callers, _)| std::cmp::Reverse(callers.len()));
    groups
}

/// How `other`'s values differ from `written`'s, for a person.
fn difference(written: &[Assign], other: &[Assign]) -> String {
    let text = |a: &Assign| format!("{} {}", path_text(&a.path), a.value.to_yaml_inline());
    let mut parts = Vec::new();
    for a in other {
        match written.iter().find(|w| w.path == a.path) {
            Some(w) if w.value == a.value => {}
            Some(w) => parts.push(format!(
                "{} {} instead of {}",
                path_text(&a.path),
                a.value.to_yaml_inline(),
                w.value.to_yaml_inline()
            )),
            None => parts.push(text(a)),
        }
    }
    for w in written {
        if !other.iter().any(|a| a.path == w.path) {
            parts.push(format!("no {}", path_text(&w.path)));
        }
    }
    parts.join(", ")
}

pub(super) fn path_text(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Groups the graph's calls by destination and writes each call's fields for `target`,
/// choosing one policy where a resource can hold only one.
pub fn plan(graph: &Graph, target: Target) -> Plan {
    let writer = target.writer();
    let mut result = Plan::default();
    // (to, caller for Envoy) → endpoint → [(caller, its label, fields)]
    type ByEndpoint = BTreeMap<Option<String>, Vec<(String, String, Fields)>>;
    let mut by_destination: BTreeMap<(String, Option<String>), ByEndpoint> = BTreeMap::new();
    for c in calls(graph) {
        let fields = writer.fields(c.call);
        for (key, why) in &fields.unexpressed {
            result.unexpressed.push(Unexpressed {
                caller: c.caller.to_string(),
                to: c.to.to_string(),
                endpoint: c.endpoint.map(str::to_string),
                key,
                why: why.clone(),
            });
        }
        let caller = (writer.per_caller() == PerCaller::Everything).then(|| c.caller.to_string());
        let endpoint = c
            .endpoint
            .filter(|_| writer.routes_by_endpoint())
            .map(str::to_string);
        by_destination
            .entry((c.to.to_string(), caller))
            .or_default()
            .entry(endpoint)
            .or_default()
            .push((c.caller.to_string(), c.label.clone(), fields));
    }
    // Values a resource holds once for every destination (a gRPC retryThrottling).
    let shared: Vec<(String, Vec<Assign>)> = by_destination
        .iter()
        .flat_map(|((to, _), endpoints)| {
            endpoints.values().flatten().map(move |(_, label, f)| {
                let root: Vec<Assign> = f.route.iter().filter(|a| a.from_root).cloned().collect();
                (format!("{label} -> {to}"), root)
            })
        })
        .collect();
    let groups = partition(&shared);
    if groups.len() > 1 {
        result.conflicts.push(conflict(
            "every destination",
            "shared",
            &groups[0].1,
            &shared,
        ));
    }
    for ((to, caller), endpoints) in by_destination {
        let mut routes = Vec::new();
        let mut destination_values = Vec::new();
        // Named endpoints first: an unnamed route matches every request.
        let mut ordered: Vec<_> = endpoints.into_iter().collect();
        ordered.sort_by_key(|(ep, _)| ep.is_none());
        for (endpoint, calls) in ordered {
            let label = match &endpoint {
                Some(ep) => format!("{to} ({ep})"),
                None => to.clone(),
            };
            let route_values: Vec<(String, Vec<Assign>)> = calls
                .iter()
                .map(|(caller, _, f)| (caller.clone(), f.route.clone()))
                .collect();
            let labeled: Vec<(String, Vec<Assign>)> = calls
                .iter()
                .map(|(_, label, f)| (label.clone(), f.route.clone()))
                .collect();
            destination_values.extend(
                calls.iter().map(|(caller, label, f)| {
                    (caller.clone(), label.clone(), f.destination.clone())
                }),
            );
            let groups = partition(&route_values);
            if groups.len() > 1 && writer.per_caller() == PerCaller::Routes {
                // Caller-specific routes first, the most common policy as the catch-all.
                for (callers, fields) in groups.iter().skip(1) {
                    routes.push(RoutePlan {
                        endpoint: endpoint.clone(),
                        callers: Some(callers.clone()),
                        fields: fields.clone(),
                    });
                }
                routes.push(RoutePlan {
                    endpoint: endpoint.clone(),
                    callers: None,
                    fields: groups[0].1.clone(),
                });
                continue;
            }
            if groups.len() > 1 {
                result
                    .conflicts
                    .push(conflict(&label, "route", &groups[0].1, &labeled));
            }
            routes.push(RoutePlan {
                endpoint,
                callers: None,
                fields: groups[0].1.clone(),
            });
        }
        let by_caller: Vec<(String, Vec<Assign>)> = destination_values
            .iter()
            .map(|(caller, _, values)| (caller.clone(), values.clone()))
            .collect();
        let groups = partition(&by_caller);
        if groups.len() > 1 {
            let labeled: Vec<(String, Vec<Assign>)> = destination_values
                .into_iter()
                .map(|(_, label, values)| (label, values))
                .collect();
            result
                .conflicts
                .push(conflict(&to, "destination", &groups[0].1, &labeled));
        }
        result.destinations.push(DestinationPlan {
            to,
            caller,
            routes,
            destination: groups.into_iter().next().map(|g| g.1).unwrap_or_default(),
            port: None,
        });
    }
    result
}

/// The conflict at `label`: `written` is the policy chosen (by caller, [`partition`]'s first
/// group), and each call is named by its label in `labeled`, with its values: those holding
/// `written` are the written, the others the not written, with how theirs differ.
fn conflict(
    label: &str,
    part: &'static str,
    written: &[Assign],
    labeled: &[(String, Vec<Assign>)],
) -> Conflict {
    let mut conflict = Conflict {
        to: label.to_string(),
        part,
        written: Vec::new(),
        not_written: Vec::new(),
    };
    for (name, values) in labeled {
        if values.as_slice() == written {
            if !conflict.written.contains(name) {
                conflict.written.push(name.clone());
            }
        } else {
            let item = (name.clone(), difference(written, values));
            if !conflict.not_written.contains(&item) {
                conflict.not_written.push(item);
            }
        }
    }
    conflict
}
