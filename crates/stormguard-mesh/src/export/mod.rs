//! `stormguard export`: a graph's policies written in one system's resources: Istio
//! `VirtualService`s and `DestinationRule`s, Gateway API `HTTPRoute`s, Linkerd's annotations,
//! Envoy bootstraps, gRPC service configs.
//!
//! ## What it guarantees
//! - **Nothing is dropped silently.** Each target writes what it can say exactly; every
//!   setting of a call it cannot say (Linkerd annotations have no budget, Envoy has no choice
//!   of jitter, Istio no backoff cap, gRPC no per-attempt timeout) is an [`Unexpressed`] for
//!   that call. A resource that holds one policy for several callers whose policies differ says
//!   which caller's it holds and lists the others ([`Conflict`]); Istio routes by caller
//!   (`sourceLabels`) and an Envoy bootstrap is one caller's, so those two write each caller's.
//! - **The user's files stay theirs.** Given the files that were imported ([`Existing`]), a
//!   destination that has a resource there is written into it in place ([`edit`]): only the
//!   values change, comments and every other byte stay. Destinations without one get new
//!   resources in one file per target.
//! - **The round trip holds.** Importing what was exported gives back the policies of the
//!   graph, for everything a target can express (`tests/roundtrip.rs`).
//!
//! ## Shape
//! [`plan`] groups the graph's calls by destination and asks the target's writer
//! ([`Writer`], one module per target) for each call's fields; [`export`] writes them into
//! the existing resources found by [`crate::inventory()`] and new ones for the rest.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use stormguard_graph::model::Call;
use stormguard_graph::Graph;

use crate::doc::Document;
use crate::inventory::{Inventory, Resource};
use crate::names;

pub mod edit;
mod envoy;
mod gateway;
mod grpc;
mod istio;
mod linkerd;
mod retry_names;
pub mod val;

use edit::{Path, Seg};
use val::Val;

/// A system to export to (`--to`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// `VirtualService` and `DestinationRule`.
    Istio,
    /// `HTTPRoute` attached to the Service (GAMMA).
    GatewayApi,
    /// `HTTPRoute`s with `retry.linkerd.io/*` and `timeout.linkerd.io/*` annotations.
    Linkerd,
    /// A bootstrap per caller: routes and clusters.
    Envoy,
    /// A service config: `methodConfig`, `retryThrottling`.
    Grpc,
}

impl Target {
    /// Every target, in the order `--help` lists them.
    pub const ALL: [Target; 5] = [
        Target::Istio,
        Target::GatewayApi,
        Target::Linkerd,
        Target::Envoy,
        Target::Grpc,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Istio => "istio",
            Target::GatewayApi => "gateway-api",
            Target::Linkerd => "linkerd",
            Target::Envoy => "envoy",
            Target::Grpc => "grpc",
        }
    }

    /// The target named `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    fn writer(self) -> &'static dyn Writer {
        match self {
            Target::Istio => &istio::Istio,
            Target::GatewayApi => &gateway::GatewayApi,
            Target::Linkerd => &linkerd::Linkerd,
            Target::Envoy => &envoy::Envoy,
            Target::Grpc => &grpc::Grpc,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value a writer sets, by path from the part of the resource it belongs to (a route, a
/// destination resource).
#[derive(Clone, Debug, PartialEq)]
pub struct Assign {
    /// Where, from the route's or the destination's part of its resource.
    pub path: Path,
    /// What.
    pub value: Val,
    /// A path from the document's root rather than from the route's part (a gRPC
    /// `retryThrottling`, which a service config holds once for all its methods).
    pub from_root: bool,
    /// Written only over a value the file already has (to turn it off, e.g. Istio's
    /// `timeout: 0s`); a new resource leaves it out, where the system's default already says it.
    pub only_to_replace: bool,
}

impl Assign {
    fn new(path: &[&str], value: Val) -> Assign {
        Assign {
            path: edit::keys(path),
            value,
            from_root: false,
            only_to_replace: false,
        }
    }

    /// Removes `path` from a user's file, if it is there (a setting the graph does not have
    /// that would otherwise stay in force).
    fn remove(path: &[&str]) -> Assign {
        Assign::replacing(path, Val::Remove)
    }

    fn replacing(path: &[&str], value: Val) -> Assign {
        Assign {
            only_to_replace: true,
            ..Assign::new(path, value)
        }
    }
}

/// What a target makes of one call's policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    /// Values of the route (Istio `http[]`, Gateway API rule, Envoy route, gRPC
    /// `methodConfig[]`, Linkerd: the route resource).
    pub route: Vec<Assign>,
    /// Values of the destination's own resource (Istio `DestinationRule`, Envoy cluster, gRPC
    /// `retryThrottling`).
    pub destination: Vec<Assign>,
    /// Settings the target cannot express: the graph key and why.
    pub unexpressed: Vec<(&'static str, String)>,
}

impl Fields {
    fn cannot(&mut self, key: &'static str, why: impl Into<String>) {
        self.unexpressed.push((key, why.into()));
    }
}

/// How far a target can tell callers apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PerCaller {
    /// One resource for every caller.
    No,
    /// Routes match on the caller (Istio `sourceLabels`); the destination resource is shared.
    Routes,
    /// Everything is one caller's (an Envoy bootstrap is one sidecar's).
    Everything,
}

/// A target's writer: the fields of a call, and the resources to create.
trait Writer: Sync {
    /// The fields of one call.
    fn fields(&self, call: &Call) -> Fields;
    /// Whether its routes can tell callers apart.
    fn per_caller(&self) -> PerCaller {
        PerCaller::No
    }
    /// Whether a destination's endpoints (named routes) get routes of their own; Linkerd's
    /// annotations are per route resource, so its endpoints share one.
    fn routes_by_endpoint(&self) -> bool {
        true
    }
    /// Kinds of existing resources whose routes it writes into.
    fn route_kinds(&self) -> &'static [&'static str];
    /// Kinds of existing resources whose destination policies it writes into.
    fn destination_kinds(&self) -> &'static [&'static str];
    /// The path of a route's part in its resource, from the reader's `Resource::path`.
    fn route_prefix(&self, resource: &Resource) -> Path {
        edit::parse_path(&resource.path)
    }
    /// The path of a destination's part in its resource.
    fn destination_prefix(&self, resource: &Resource) -> Path {
        let _ = resource;
        Vec::new()
    }
    /// New resources for destinations that have none in the user's files.
    fn new_files(&self, plans: &[DestinationPlan]) -> Vec<NewFile>;
    /// What, in an existing route's part, overrides the values written there (an Envoy
    /// request header such as `x-envoy-max-retries`).
    fn overridden(&self, route: &crate::doc::Node) -> Vec<String> {
        let _ = route;
        Vec::new()
    }
}

/// The node at `path` from `node`.
fn walk<'n>(node: &'n crate::doc::Node, path: &[Seg]) -> Option<&'n crate::doc::Node> {
    path.iter().try_fold(node, |node, seg| match seg {
        Seg::Key(k) => node.get(k),
        Seg::Index(i) => node.items().get(*i),
    })
}

/// A new file of resources (or one document of it), before it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct NewFile {
    /// Its name in the output directory.
    pub name: String,
    /// Its text.
    pub text: String,
    /// What it holds, for the summary (`VirtualService reviews`).
    pub resources: Vec<String>,
}

/// One route to write: a destination's endpoint (or all of it), for some callers or all.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutePlan {
    /// The endpoint (`None`: every request to the destination).
    pub endpoint: Option<String>,
    /// The callers it is for (`None`: every caller).
    pub callers: Option<Vec<String>>,
    /// Its values.
    pub fields: Vec<Assign>,
}

/// Everything written for one destination (and, for Envoy, one caller).
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationPlan {
    /// The graph service called.
    pub to: String,
    /// The caller, when the target writes one resource per caller (Envoy).
    pub caller: Option<String>,
    /// Its routes, named endpoints first, caller-specific before catch-alls.
    pub routes: Vec<RoutePlan>,
    /// Its destination resource's values.
    pub destination: Vec<Assign>,
}

/// A setting of a call that the target cannot express: not written, or written approximately.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unexpressed {
    /// The caller.
    pub caller: String,
    /// The service called.
    pub to: String,
    /// The endpoint called, if one.
    pub endpoint: Option<String>,
    /// The graph key.
    pub key: &'static str,
    /// What the target does instead.
    pub why: String,
}

impl fmt::Display for Unexpressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.caller, self.to)?;
        if let Some(ep) = &self.endpoint {
            write!(f, " ({ep})")?;
        }
        write!(f, ": `{}`: {}", self.key, self.why)
    }
}

/// Callers of one destination whose policies one resource cannot all hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The destination (and endpoint).
    pub to: String,
    /// What is shared: "route" or "destination".
    pub part: &'static str,
    /// The callers whose policy was written.
    pub written: Vec<String>,
    /// The callers whose policy was not, with how theirs differs.
    pub not_written: Vec<(String, String)>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: one {} policy for every caller: wrote {}'s",
            self.to,
            self.part,
            self.written.join(", ")
        )?;
        for (caller, diff) in &self.not_written {
            write!(f, "; not {caller}'s ({diff})")?;
        }
        Ok(())
    }
}

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
    to: &'g str,
    endpoint: Option<&'g str>,
    call: &'g Call,
}

fn calls(graph: &Graph) -> Vec<CallRef<'_>> {
    let mut out = Vec::new();
    for (name, service) in &graph.services {
        for endpoint in service.each_endpoint() {
            for call in endpoint.calls {
                out.push(CallRef {
                    caller: name,
                    to: &call.to,
                    endpoint: call.endpoint.as_deref(),
                    call,
                });
            }
        }
    }
    out
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

fn path_text(path: &[Seg]) -> String {
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
    // (to, caller for Envoy) → endpoint → [(caller, fields)]
    type ByEndpoint = BTreeMap<Option<String>, Vec<(String, Fields)>>;
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
            .push((c.caller.to_string(), fields));
    }
    // Values a resource holds once for every destination (a gRPC retryThrottling).
    let shared: Vec<(String, Vec<Assign>)> = by_destination
        .iter()
        .flat_map(|((to, _), endpoints)| {
            endpoints.values().flatten().map(move |(caller, f)| {
                let root: Vec<Assign> = f.route.iter().filter(|a| a.from_root).cloned().collect();
                (format!("{caller} -> {to}"), root)
            })
        })
        .collect();
    let groups = partition(&shared);
    if groups.len() > 1 {
        result
            .conflicts
            .push(conflict("every destination", "shared", &groups));
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
                .map(|(caller, f)| (caller.clone(), f.route.clone()))
                .collect();
            destination_values.extend(
                calls
                    .iter()
                    .map(|(caller, f)| (caller.clone(), f.destination.clone())),
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
                result.conflicts.push(conflict(&label, "route", &groups));
            }
            routes.push(RoutePlan {
                endpoint,
                callers: None,
                fields: groups[0].1.clone(),
            });
        }
        let groups = partition(&destination_values);
        if groups.len() > 1 {
            result.conflicts.push(conflict(&to, "destination", &groups));
        }
        result.destinations.push(DestinationPlan {
            to,
            caller,
            routes,
            destination: groups.into_iter().next().map(|g| g.1).unwrap_or_default(),
        });
    }
    result
}

fn conflict(label: &str, part: &'static str, groups: &[(Vec<String>, Vec<Assign>)]) -> Conflict {
    Conflict {
        to: label.to_string(),
        part,
        written: groups[0].0.clone(),
        not_written: groups[1..]
            .iter()
            .flat_map(|(callers, fields)| {
                let diff = difference(&groups[0].1, fields);
                callers.iter().map(move |c| (c.clone(), diff.clone()))
            })
            .collect(),
    }
}

/// The files the graph was imported from, read again: their text and the resources in them.
#[derive(Clone, Debug, Default)]
pub struct Existing {
    /// Every document read.
    pub documents: Vec<Document>,
    /// What the readers found in them.
    pub inventory: Inventory,
}

impl Existing {
    /// Reads `paths` as `import` does.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, at its line.
    pub fn read(paths: &[PathBuf]) -> Result<Existing, crate::ImportError> {
        let documents = crate::read_paths(paths)?;
        let inventory = crate::inventory(&documents)?;
        Ok(Existing {
            documents,
            inventory,
        })
    }
}

/// A file to write.
#[derive(Clone, Debug, PartialEq)]
pub struct OutFile {
    /// Where: a user's file as it was named (to write under the output directory at that
    /// relative path, or in place), or a new file's name.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
    /// Whether it is a user's file edited in place (else a new one).
    pub edited: bool,
    /// What was written in it, for the summary.
    pub written: Vec<String>,
}

/// What an export writes and what it could not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Export {
    /// Files: the user's, edited, then new ones.
    pub files: Vec<OutFile>,
    /// Settings the target cannot express, per call.
    pub unexpressed: Vec<Unexpressed>,
    /// Destinations whose callers' policies one resource could not all hold.
    pub conflicts: Vec<Conflict>,
    /// Values that could not be written into a user's file (written in a new resource instead,
    /// or not at all), and why.
    pub notes: Vec<String>,
}

/// Writes `graph`'s policies for `target`: into the resources of `existing` where a
/// destination has one, and into new resources for the rest.
pub fn export(graph: &Graph, target: Target, existing: &Existing) -> Export {
    let writer = target.writer();
    let plan = plan(graph, target);
    let mut out = Export {
        unexpressed: plan.unexpressed,
        conflicts: plan.conflicts,
        ..Export::default()
    };
    // Edits per document: (file, document index) → values by absolute path.
    let mut values: BTreeMap<(String, usize), Vec<(Path, Val)>> = BTreeMap::new();
    let mut written: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut new_plans = Vec::new();
    for dest in plan.destinations {
        let mut left = DestinationPlan {
            routes: Vec::new(),
            destination: Vec::new(),
            ..dest.clone()
        };
        for route in &dest.routes {
            match find_route(writer, existing, &dest, route) {
                Some(resource) if route.callers.is_none() => {
                    let prefix = writer.route_prefix(resource);
                    let node = existing
                        .documents
                        .iter()
                        .find(|d| d.file == resource.file && d.index == resource.document)
                        .and_then(|d| walk(&d.root, &prefix));
                    for why in node.map(|n| writer.overridden(n)).unwrap_or_default() {
                        out.notes.push(format!(
                            "{} {} {} in {}: {why}",
                            resource.kind, resource.name, resource.path, resource.file
                        ));
                    }
                    let entry = values
                        .entry((resource.file.to_string(), resource.document))
                        .or_default();
                    for assign in &route.fields {
                        let mut path = if assign.from_root {
                            Vec::new()
                        } else {
                            prefix.clone()
                        };
                        path.extend(assign.path.iter().cloned());
                        entry.push((path, assign.value.clone()));
                    }
                    written
                        .entry(resource.file.to_string())
                        .or_default()
                        .push(format!(
                            "{} {} {}",
                            resource.kind, resource.name, resource.path
                        ));
                }
                Some(resource) => {
                    out.notes.push(format!(
                        "{}: the route for caller(s) {} is not added to {} {} in {}: add an http \
                         route matching sourceLabels app: {} before the others (the new file \
                         has it)",
                        dest.to,
                        route.callers.as_deref().unwrap_or_default().join(", "),
                        resource.kind,
                        resource.name,
                        resource.file,
                        route.callers.as_deref().unwrap_or_default().join(", "),
                    ));
                    left.routes.push(route.clone());
                }
                None => left.routes.push(route.clone()),
            }
        }
        match find_destination(writer, existing, &dest) {
            Some(resource) if !dest.destination.is_empty() => {
                let prefix = writer.destination_prefix(resource);
                let entry = values
                    .entry((resource.file.to_string(), resource.document))
                    .or_default();
                for assign in &dest.destination {
                    let mut path = prefix.clone();
                    path.extend(assign.path.iter().cloned());
                    entry.push((path, assign.value.clone()));
                }
                written
                    .entry(resource.file.to_string())
                    .or_default()
                    .push(format!("{} {}", resource.kind, resource.name));
            }
            _ => left.destination = dest.destination.clone(),
        }
        if !left.routes.is_empty() || !left.destination.is_empty() {
            new_plans.push(left);
        }
    }
    let mut edited: BTreeMap<String, (String, Vec<edit::TextEdit>)> = BTreeMap::new();
    for ((file, index), values) in values {
        let Some(doc) = existing
            .documents
            .iter()
            .find(|d| &*d.file == file.as_str() && d.index == index)
        else {
            out.notes
                .push(format!("{file}: document {index} not found again"));
            continue;
        };
        match edit::edits(doc, &values) {
            Ok(edits) => edited
                .entry(file.clone())
                .or_insert_with(|| (doc.text.to_string(), Vec::new()))
                .1
                .extend(edits),
            Err(error) => out.notes.push(error.to_string()),
        }
    }
    for (file, (text, edits)) in edited {
        out.files.push(OutFile {
            path: PathBuf::from(&file),
            text: edit::apply(&text, edits),
            edited: true,
            written: written.remove(&file).unwrap_or_default(),
        });
    }
    // Values only to replace stay out of new resources (the system's default says them).
    for plan in &mut new_plans {
        for route in &mut plan.routes {
            route.fields.retain(|a| !a.only_to_replace);
        }
        plan.destination.retain(|a| !a.only_to_replace);
    }
    if !new_plans.is_empty() {
        for file in writer.new_files(&new_plans) {
            out.files.push(OutFile {
                path: PathBuf::from(file.name),
                text: file.text,
                edited: false,
                written: file.resources,
            });
        }
    }
    out
}

/// Whether `host` (as a resource names it) is the graph service `to`.
fn is_service(host: &crate::inventory::Host, to: &str) -> bool {
    names::graph_name(&names::service_of(host).0) == to
}

fn find_route<'e>(
    writer: &dyn Writer,
    existing: &'e Existing,
    dest: &DestinationPlan,
    route: &RoutePlan,
) -> Option<&'e Resource> {
    existing
        .inventory
        .routes
        .iter()
        .filter(|r| writer.route_kinds().contains(&r.resource.kind.as_str()))
        .filter(|r| is_service(&r.host, &dest.to))
        .filter(|r| !writer.routes_by_endpoint() || r.name == route.endpoint)
        .find(|r| match (&dest.caller, &r.caller) {
            (Some(caller), Some(route_caller)) => *caller == names::graph_name(route_caller),
            (Some(_), None) => false,
            (None, route_caller) => route_caller.is_none(),
        })
        .map(|r| &r.resource)
}

fn find_destination<'e>(
    writer: &dyn Writer,
    existing: &'e Existing,
    dest: &DestinationPlan,
) -> Option<&'e Resource> {
    existing
        .inventory
        .destinations
        .iter()
        .filter(|d| {
            writer
                .destination_kinds()
                .contains(&d.resource.kind.as_str())
        })
        .filter(|d| is_service(&d.host, &dest.to))
        .find(|d| d.caller.as_deref().map(names::graph_name) == dest.caller)
        .map(|d| &d.resource)
}

/// Reads the inputs an imported graph's header names: its leading comment lines that mention
/// the import, each word that is an existing path (relative to the current directory or to the
/// graph's own directory). Lenient by design: a graph without such a header gives none.
///
/// ```
/// let text = "# stormguard import examples/mesh/istio\n# (2 VirtualServices)\n[entry]\n";
/// let paths = stormguard_mesh::export::inputs_from_header(text, std::path::Path::new("g.toml"));
/// assert!(paths.iter().all(|p| p.exists()));
/// ```
pub fn inputs_from_header(text: &str, graph_file: &std::path::Path) -> Vec<PathBuf> {
    let base = graph_file.parent().unwrap_or(std::path::Path::new(""));
    let mut out: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix('#') else {
            break;
        };
        let lower = comment.to_ascii_lowercase();
        if !(lower.contains("import") || lower.contains("input") || lower.contains("from")) {
            continue;
        }
        for word in comment.split(|c: char| c.is_whitespace() || c == ',' || c == '`') {
            let word = word.trim_matches(|c: char| matches!(c, '"' | '\'' | '(' | ')' | ';' | ':'));
            if word.is_empty() || word.starts_with('-') {
                continue;
            }
            for candidate in [PathBuf::from(word), base.join(word)] {
                if candidate.exists() && !out.contains(&candidate) {
                    out.push(candidate);
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

/// Notes every mesh proxy shares: it retries any method, and it does not pass the remaining
/// budget downstream.
fn proxy_notes(call: &Call, system: &str, f: &mut Fields) {
    if call.max_attempts > 1 && !call.is_idempotent() {
        f.cannot(
            "idempotent",
            format!(
                "{system} retries any method: this call's requests ({}, idempotent = {}) are \
                 retried too",
                call.method, call.idempotent
            ),
        );
    }
    if call.propagate_deadline {
        f.cannot(
            "propagate_deadline",
            format!("{system} does not pass the remaining budget downstream: keep it in the application"),
        );
    }
}

/// The base delay of a backoff, and what a system that only takes a base (and applies its
/// own full jitter) loses of it.
fn backoff_base(
    backoff: &stormguard::backoff::Backoff,
    system: &str,
    default_cap_factor: Option<u32>,
    f: &mut Fields,
) -> Option<std::time::Duration> {
    use stormguard::backoff::Backoff;
    match *backoff {
        Backoff::None => {
            f.cannot(
                "backoff",
                format!("{system} always waits between retries: its default base applies"),
            );
            None
        }
        Backoff::FullJitter { base, cap } => {
            if let Some(factor) = default_cap_factor {
                if cap != base * factor {
                    f.cannot(
                        "backoff",
                        format!(
                            "{system} has no backoff cap: Envoy's {factor} × base = {} applies, \
                             not {}",
                            stormguard::duration::format(base * factor),
                            stormguard::duration::format(cap)
                        ),
                    );
                }
            }
            Some(base)
        }
        Backoff::Constant(delay) => {
            f.cannot(
                "backoff",
                format!(
                    "{system} has no constant backoff: full jitter from base {} instead",
                    stormguard::duration::format(delay)
                ),
            );
            Some(delay)
        }
        Backoff::Exponential { base, .. }
        | Backoff::EqualJitter { base, .. }
        | Backoff::DecorrelatedJitter { base, .. } => {
            f.cannot(
                "backoff",
                format!("{system} has no choice of jitter: full jitter from the same base instead of {backoff}"),
            );
            Some(base)
        }
    }
}

/// Envoy's full jitter grows as (2^N − 1) × base, stormguard's as 2^(N−1) × base: from the
/// third attempt on, Envoy's ceilings are higher (until the cap).
fn envoy_growth_note(call: &Call, system: &str, f: &mut Fields) {
    if call.max_attempts > 2 {
        if let stormguard::backoff::Backoff::FullJitter { .. } = call.backoff {
            f.cannot(
                "backoff",
                format!(
                    "approximate: {system}'s full jitter grows as (2^N-1) x base, stormguard's \
                     as 2^(N-1) x base (same first wait, longer later ones up to the cap)"
                ),
            );
        }
    }
}

/// A key step of a path (`None` for an index).
fn key_of(seg: &Seg) -> Option<&str> {
    match seg {
        Seg::Key(k) => Some(k),
        Seg::Index(_) => None,
    }
}
