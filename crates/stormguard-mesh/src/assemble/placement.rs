//! Where the inventory's policies land: the graph name of each destination, its instances, the
//! mesh it runs in, and which route's policy a call from one caller to one callee gets.
//!
//! ## Why names are decided once, for the whole inventory
//! The same service is named many ways (`reviews`, `reviews.prod.svc.cluster.local`, an Envoy
//! cluster `outbound|9080||reviews.prod.svc.cluster.local`), and two namespaces may each have a
//! `reviews`. Deciding every name from the set of all destinations, in sorted order, makes the
//! output the same whatever order the files were read in, and gives both `reviews`s a name of
//! their own (`reviews-prod`, `reviews-staging`) instead of merging them.

use std::collections::{BTreeMap, BTreeSet};

use crate::inventory::{Host, Inventory, Policy, Route, System, Unread, Workload};
use crate::names::{graph_name, service_of};
use crate::source::Origin;
use crate::{istio, linkerd};

/// A destination as names.rs reads it: the service name and its namespace, if known.
pub(crate) type Key = (String, Option<String>);

/// The graph name of every destination of the inventory.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    by_key: BTreeMap<Key, String>,
    /// Every graph name given: a name given to none is matched by the service name alone
    /// (see [`keys_of`](Self::keys_of)).
    given: BTreeSet<String>,
    /// Every destination's service name as a graph name, for the same.
    service_names: BTreeSet<String>,
    /// The graph name of each route's host, by the route's index.
    routes: Vec<String>,
    /// The graph name of each destination policy's host, by its index.
    pub(super) destinations: Vec<String>,
    /// The workloads, indexed.
    pub workloads: Workloads,
}

impl Names {
    /// Names every destination the inventory mentions: route hosts and backends, destination
    /// policies' hosts, and Kubernetes Services. A name in one namespace is the name; a name in
    /// several is `NAME-NAMESPACE` for each; a destination of no namespace takes the name of the
    /// one namespaced destination of that name, if there is one.
    pub(crate) fn new(inv: &Inventory) -> Names {
        let mut keys: BTreeSet<Key> = BTreeSet::new();
        for route in &inv.routes {
            keys.insert(service_of(&route.host));
            keys.extend(route.backends.iter().map(|b| service_of(&b.host)));
        }
        keys.extend(inv.destinations.iter().map(|d| service_of(&d.host)));
        keys.extend(
            inv.workloads
                .iter()
                .filter(|w| w.kind == "Service")
                .map(|w| (w.name.clone(), Some(w.namespace.clone()))),
        );
        let mut namespaces: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (name, namespace) in &keys {
            let entry = namespaces.entry(name.as_str()).or_default();
            if let Some(namespace) = namespace {
                entry.insert(namespace.as_str());
            }
        }
        let mut by_key = BTreeMap::new();
        let mut used: BTreeSet<String> = BTreeSet::new();
        for key in &keys {
            let (name, namespace) = key;
            let several = namespaces[name.as_str()].len() > 1;
            let wanted = match namespace {
                Some(namespace) if several => graph_name(&format!("{name}-{namespace}")),
                _ => graph_name(name),
            };
            // A destination of no namespace is the namespaced one of its name, when one.
            let same = namespace.is_none() && !several && namespaces[name.as_str()].len() == 1;
            let chosen = if same || !used.contains(&wanted) {
                wanted
            } else {
                (2..)
                    .map(|n| format!("{wanted}-{n}"))
                    .find(|n| !used.contains(n))
                    .expect("an unused name")
            };
            used.insert(chosen.clone());
            by_key.insert(key.clone(), chosen);
        }
        let service_names = by_key.keys().map(|(name, _)| graph_name(name)).collect();
        let mut names = Names {
            given: used,
            service_names,
            by_key,
            routes: Vec::new(),
            destinations: Vec::new(),
            workloads: Workloads::new(inv),
        };
        names.routes = inv.routes.iter().map(|r| names.of(&r.host)).collect();
        names.destinations = inv.destinations.iter().map(|d| names.of(&d.host)).collect();
        names
    }

    /// The graph name of `host`.
    pub(super) fn of(&self, host: &Host) -> String {
        let key = service_of(host);
        self.by_key
            .get(&key)
            .cloned()
            .unwrap_or_else(|| graph_name(&key.0))
    }

    /// The destinations a base graph's call `to` names: those whose graph name is `to`, else
    /// those whose service name, as a graph name, is `to` (a base graph written before the
    /// import knows `reviews`, not `reviews-prod`), else those it names as the import names a
    /// service of several namespaces (`reviews-prod`, when only prod's files are read again).
    pub(crate) fn keys_of(&self, to: &str) -> Vec<Key> {
        let exact: Vec<Key> = self
            .by_key
            .iter()
            .filter(|(_, name)| name.as_str() == to)
            .map(|(key, _)| key.clone())
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        let by_name: Vec<Key> = self
            .by_key
            .keys()
            .filter(|(name, _)| graph_name(name) == to)
            .cloned()
            .collect();
        if !by_name.is_empty() {
            return by_name;
        }
        self.by_key
            .keys()
            .filter(|key| named_apart(key, to))
            .cloned()
            .collect()
    }

    /// Whether the destination `key` is graph service `to`: one of [`keys_of`](Self::keys_of)
    /// `to`, without making the list. What export matches the files' resources by, so that a
    /// Service name of two namespaces, imported as `api-shop` and `api-other`, is found again
    /// in its own namespace (its service name alone, `api`, matches neither).
    pub(crate) fn is(&self, key: &Key, to: &str) -> bool {
        if self.given.contains(to) {
            self.by_key.get(key).is_some_and(|name| name == to)
        } else if self.service_names.contains(to) {
            graph_name(&key.0) == to
        } else {
            named_apart(key, to)
        }
    }

    /// The graph names of `keys`.
    pub(super) fn graph_names(&self, keys: &[Key]) -> Vec<&str> {
        keys.iter()
            .filter_map(|k| self.by_key.get(k).map(String::as_str))
            .collect()
    }
}

/// Whether `to` is the graph name the import gives destination `key` when its service name is
/// in several namespaces (`NAME-NAMESPACE`): what a graph imported from more files than are
/// read again calls it.
fn named_apart((name, namespace): &Key, to: &str) -> bool {
    namespace
        .as_deref()
        .is_some_and(|namespace| graph_name(&format!("{name}-{namespace}")) == to)
}

/// The workloads of the inventory by name and by pod label, so that a thousand Services each
/// find theirs without reading every workload.
#[derive(Clone, Debug, Default)]
pub(crate) struct Workloads {
    by_name: BTreeMap<String, Vec<usize>>,
    by_label: BTreeMap<(String, String, String), Vec<usize>>,
}

impl Workloads {
    /// The index of `inv`'s workloads.
    pub(super) fn new(inv: &Inventory) -> Workloads {
        let mut index = Workloads::default();
        for (i, w) in inv.workloads.iter().enumerate() {
            index.by_name.entry(w.name.clone()).or_default().push(i);
            if w.kind != "Service" {
                for (k, v) in &w.labels {
                    let key = (w.namespace.clone(), k.clone(), v.clone());
                    index.by_label.entry(key).or_default().push(i);
                }
            }
        }
        index
    }

    /// The workloads (Services included) that `keys` name.
    fn named<'i>(&self, inv: &'i Inventory, keys: &[Key]) -> Vec<&'i Workload> {
        let mut found: Vec<usize> = keys
            .iter()
            .flat_map(|(name, ns)| {
                self.by_name
                    .get(name)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|&i| {
                        ns.as_deref()
                            .is_none_or(|ns| ns == inv.workloads[i].namespace)
                    })
            })
            .collect();
        found.sort_unstable();
        found.dedup();
        found.into_iter().map(|i| &inv.workloads[i]).collect()
    }

    /// The workloads (not Services) whose pod labels a Service's selector matches.
    fn selected<'i>(&self, inv: &'i Inventory, service: &Workload) -> Vec<&'i Workload> {
        let Some((k, v)) = service.labels.iter().next() else {
            return Vec::new();
        };
        let key = (service.namespace.clone(), k.clone(), v.clone());
        self.by_label
            .get(&key)
            .into_iter()
            .flatten()
            .map(|&i| &inv.workloads[i])
            .filter(|w| {
                service
                    .labels
                    .iter()
                    .all(|(k, v)| w.labels.get(k) == Some(v))
            })
            .collect()
    }

    /// A service's instances: the replicas of the workloads a Kubernetes Service selects, else
    /// of a workload of the service's name, with where they are written.
    pub(super) fn instances(&self, inv: &Inventory, keys: &[Key]) -> Option<(u32, Origin)> {
        let named = self.named(inv, keys);
        if let Some(service) = named.iter().find(|w| w.kind == "Service") {
            let selected: Vec<&(u32, Origin)> = self
                .selected(inv, service)
                .into_iter()
                .filter_map(|w| w.instances.as_ref())
                .collect();
            if let Some((_, origin)) = selected.first() {
                let total = selected.iter().map(|(n, _)| *n).sum();
                return Some((total, origin.clone()));
            }
        }
        // A Kubernetes workload's replicas before an Envoy static cluster's endpoints.
        named
            .iter()
            .filter(|w| w.kind != "Service")
            .min_by_key(|w| w.kind == crate::envoy::ENVOY_CLUSTER)
            .and_then(|w| w.instances.clone())
    }

    /// The mesh whose sidecars carry calls to `keys`: said by the callee's own workloads (or
    /// those its Service selects), else by evidence for its namespace or for every namespace.
    pub(super) fn mesh_of(&self, inv: &Inventory, keys: &[Key]) -> Option<(System, Origin)> {
        let named = self.named(inv, keys);
        let own = named.iter().find_map(|w| w.mesh.clone()).or_else(|| {
            named
                .iter()
                .filter(|w| w.kind == "Service")
                .flat_map(|s| self.selected(inv, s))
                .find_map(|w| w.mesh.clone())
        });
        if own.is_some() {
            return own;
        }
        inv.meshes
            .iter()
            .find(|m| match &m.namespace {
                None => true,
                Some(ns) => keys.iter().any(|(_, k)| k.as_deref() == Some(ns.as_str())),
            })
            .map(|m| (m.system, m.origin.clone()))
    }
}

/// The policy one call gets, and where it comes from.
#[derive(Clone, Debug)]
pub(super) struct Chosen {
    /// The policy, destination settings filled in.
    pub policy: Policy,
    /// The route's origin (or the mesh's default's), for the call's table header.
    pub origin: Origin,
    /// The route's one method, if it says.
    pub method: Option<String>,
    /// A comment for the call: where the policy comes from when no route does.
    pub note: Option<String>,
    /// The system that applies the policy: what a finding's fix can write depends on it.
    pub system: System,
}

/// The policy of a call from `caller` to the destinations `keys`, naming the callee's endpoint
/// `endpoint` if the call does. Routes for that caller are preferred to routes for every caller;
/// of several named routes, the one `endpoint` names, else their common policy, else the
/// catch-all (with a note naming the others). Destination policies fill in what the route
/// lacks and replace what it has only as a system's default. No route to a destination in a mesh:
/// that mesh's default policy. `None`: nothing applies.
pub(super) fn choose(
    inv: &Inventory,
    names: &Names,
    caller: Option<&str>,
    keys: &[Key],
    endpoint: Option<&str>,
    notes: &mut Vec<Unread>,
) -> Option<Chosen> {
    let targets = names.graph_names(keys);
    let for_callee: Vec<&Route> = inv
        .routes
        .iter()
        .zip(&names.routes)
        .filter(|(_, name)| targets.contains(&name.as_str()))
        .map(|(route, _)| route)
        .collect();
    let own: Vec<&Route> = for_callee
        .iter()
        .copied()
        .filter(|r| r.caller.is_some() && r.caller.as_deref() == caller)
        .collect();
    let candidates = if own.is_empty() {
        for_callee
            .into_iter()
            .filter(|r| r.caller.is_none())
            .collect()
    } else {
        own
    };
    let route = pick(&candidates, endpoint, caller, notes);
    let mut chosen = match route {
        Some(route) => from_route(route),
        None => {
            let (system, said) = names.workloads.mesh_of(inv, keys)?;
            let policy = match system {
                System::Istio => istio::default_policy(),
                System::Linkerd => linkerd::default_policy(),
                _ => return None,
            };
            Chosen {
                policy,
                origin: system.default_origin(),
                system,
                method: None,
                note: Some(format!(
                    "no route: the defaults of {} sidecars (mesh: {said})",
                    system_title(system)
                )),
            }
        }
    };
    fill_destinations(inv, names, keys, caller, &mut chosen);
    Some(chosen)
}

/// The policy of `route` as it is written.
pub(super) fn from_route(route: &Route) -> Chosen {
    Chosen {
        policy: route.policy.clone(),
        origin: route.origin.clone(),
        method: route.method.clone(),
        note: None,
        system: route.system,
    }
}

/// Fills in `chosen` the settings of the destination policies of `keys` for `caller`.
pub(super) fn fill_destinations(
    inv: &Inventory,
    names: &Names,
    keys: &[Key],
    caller: Option<&str>,
    chosen: &mut Chosen,
) {
    let targets = names.graph_names(keys);
    for (destination, _) in inv
        .destinations
        .iter()
        .zip(&names.destinations)
        .filter(|(d, name)| {
            targets.contains(&name.as_str())
                && d.caller.as_deref().is_none_or(|c| Some(c) == caller)
        })
    {
        fill(&mut chosen.policy, &destination.policy);
    }
}

/// A system's name as a sentence writes it.
pub(super) fn system_title(system: System) -> &'static str {
    match system {
        System::Kubernetes => "Kubernetes",
        System::Istio => "Istio's",
        System::GatewayApi => "Gateway API",
        System::Linkerd => "Linkerd's",
        System::Envoy => "Envoy's",
        System::Grpc => "gRPC",
    }
}

/// Sets each key of `from` that `policy` lacks, or has only as a system's default.
fn fill(policy: &mut Policy, from: &Policy) {
    for setting in &from.settings {
        let replace = match policy.get(setting.key) {
            None => true,
            Some(own) => {
                matches!(own.origin, Origin::Default(_))
                    && matches!(setting.origin, Origin::File { .. })
            }
        };
        if replace {
            policy.set(setting.key, setting.value.clone(), setting.origin.clone());
        }
    }
}

/// Of the routes that may carry a call, the one that does.
fn pick<'r>(
    candidates: &[&'r Route],
    endpoint: Option<&str>,
    caller: Option<&str>,
    notes: &mut Vec<Unread>,
) -> Option<&'r Route> {
    match candidates {
        [] => return None,
        [one] => return Some(one),
        _ => {}
    }
    if let Some(endpoint) = endpoint {
        if let Some(named) = candidates
            .iter()
            .find(|r| r.name.as_deref().is_some_and(|n| graph_name(n) == endpoint))
        {
            return Some(named);
        }
    }
    let same = |a: &Policy, b: &Policy| {
        a.settings.len() == b.settings.len()
            && a.settings
                .iter()
                .all(|s| b.get(s.key).is_some_and(|o| o.value == s.value))
    };
    if candidates
        .iter()
        .all(|r| same(&r.policy, &candidates[0].policy))
    {
        return Some(candidates[0]);
    }
    let chosen = candidates
        .iter()
        .find(|r| r.name.is_none())
        .unwrap_or(&candidates[candidates.len() - 1]);
    let others: Vec<String> = candidates
        .iter()
        .filter(|r| !std::ptr::eq(**r, *chosen))
        .map(|r| {
            format!(
                "{} ({})",
                r.name.as_deref().unwrap_or("unnamed"),
                r.origin.short()
            )
        })
        .collect();
    notes.push(Unread {
        origin: chosen.origin.clone(),
        what: format!("routes to {} with different policies", chosen.host.name),
        why: format!(
            "the call from {} takes the catch-all route {}; the others apply to other requests \
             and are not on this call: {} (name one with endpoint = \"ROUTE\" on the base call)",
            caller.unwrap_or("every caller"),
            chosen.name.as_deref().unwrap_or("(no match)"),
            others.join(", ")
        ),
    });
    Some(chosen)
}
