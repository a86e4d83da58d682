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
//! (`Writer`, one module per target) for each call's fields; [`export`] writes them into
//! the existing resources found by [`crate::inventory()`] and new ones for the rest.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use stormguard_graph::model::{Call, LimiterSpec};
use stormguard_graph::Graph;

use crate::doc::Document;
use crate::inventory::{Inventory, Resource};
use crate::names;

mod application;
pub mod edit;
mod envoy;
mod gateway;
mod grpc;
mod header;
mod istio;
mod linkerd;
mod notes;
mod plan;
mod retry_names;
pub mod val;

pub use application::{application_calls, ApplicationCall};
pub use header::inputs_from_header;
use notes::{backoff_base, envoy_growth_note, envoy_safe, proxy_notes};
pub use plan::{plan, Plan};

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
    /// Written only into an existing resource of this kind, `None` for any: Linkerd reads
    /// `retry.linkerd.io/grpc` on a `GRPCRoute` only, and a call's policy does not say whether
    /// the call is gRPC, so its gRPC conditions go where the route they were read from is one.
    pub only_on: Option<&'static str>,
    /// A duration the file's value is kept over when it is at least this long: a connect
    /// timeout the import read longer than the attempt's timeout and clamped to it (the attempt
    /// ends first either way), which written back would shorten it for every other route and
    /// port of the destination.
    pub keep_at_least: Option<std::time::Duration>,
}

impl Assign {
    fn new(path: &[&str], value: Val) -> Assign {
        Assign {
            path: edit::keys(path),
            value,
            from_root: false,
            only_to_replace: false,
            only_on: None,
            keep_at_least: None,
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
    /// Whether it writes `limiter` (Istio and Envoy a retry budget, gRPC a token bucket): a
    /// resource shared by several callers takes its limiter from those it can write.
    fn writes_limiter(&self, limiter: &LimiterSpec) -> bool {
        let _ = limiter;
        true
    }
    /// Whether the file's own value `existing` at `path` stays where the graph's `value` would
    /// go: a value the import reads as the graph's (a gRPC `backoffMultiplier` of 1.5, which it
    /// reads as stormguard's doubling) is the user's to keep, not one to overwrite with the
    /// graph's approximation of it.
    fn keeps(&self, path: &[Seg], value: &Val, existing: &crate::doc::Node) -> bool {
        let _ = (path, value, existing);
        false
    }
    /// Whether a new resource that would say nothing but the system's defaults is left out:
    /// where no resource means those defaults (a mesh's route), not where the resource is what
    /// makes the destination reachable at all (an Envoy bootstrap's virtual host and cluster).
    fn omits_what_says_only_defaults(&self) -> bool {
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
    /// The kind of new resource that names its destination by port, if the target writes one
    /// (a backend reference or a cluster's endpoint): a port that the files read do not give
    /// is guessed, and the guess is said.
    fn names_port(&self, plan: &DestinationPlan) -> Option<&'static str> {
        let _ = plan;
        None
    }
    /// What, in an existing route's part, overrides the values written there (an Envoy
    /// request header such as `x-envoy-max-retries`).
    fn overridden(&self, route: &crate::doc::Node) -> Vec<String> {
        let _ = route;
        Vec::new()
    }
    /// The same for an existing destination's part (an Istio subset's own `trafficPolicy`).
    fn destination_overridden(&self, destination: &crate::doc::Node) -> Vec<String> {
        let _ = destination;
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
    /// Whether its policy is the import's placeholder caller's alone (a graph imported without
    /// `--base`): the placeholder stands for every client, so the route it was read from is
    /// edited whoever that route is for (a Gateway's edge route, one sidecar's).
    pub placeholder: bool,
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
    /// The port of its Kubernetes Service, when the files read hold that Service with one
    /// port (or one named `http`, `http-...` or `grpc`): what a new resource that names the Service by port uses,
    /// 80 when unknown ([`DestinationPlan::port_or_default`]).
    pub port: Option<u16>,
    /// Its instances as `host:port`, when the file the graph came from lists them
    /// ([`Existing::instances`]); empty otherwise.
    pub instances: Vec<String>,
    /// The namespace of its Kubernetes Service among the files read, when one namespace holds
    /// it: a new resource goes there, where a short host names the Service of the resource's
    /// own namespace.
    pub namespace: Option<String>,
}

impl DestinationPlan {
    /// The Service port a new resource names: the one read, else 80 (with a note from
    /// [`export`] to check it).
    pub fn port_or_default(&self) -> i64 {
        self.port.map_or(80, i64::from)
    }
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
    /// Why theirs, when not because most callers have it.
    pub why: Option<&'static str>,
    /// The callers whose policy was not, with how theirs differs.
    pub not_written: Vec<(String, String)>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: one {} policy for every caller: ",
            self.to, self.part
        )?;
        if self.written.is_empty() {
            // Merged from several callers' (the longest connect timeout, the strictest
            // limiter of those that retry): no caller's values all round.
            write!(f, "wrote a merge of theirs")?;
        } else {
            write!(f, "wrote {}'s", self.written.join(", "))?;
        }
        if let Some(why) = self.why {
            write!(f, " ({why})")?;
        }
        for (caller, diff) in &self.not_written {
            write!(f, "; not {caller}'s ({diff})")?;
        }
        Ok(())
    }
}

/// The files the graph was imported from, read again: their text and the resources in them.
#[derive(Clone, Debug, Default)]
pub struct Existing {
    /// Every document read.
    pub documents: Vec<Document>,
    /// What the readers found in them.
    pub inventory: Inventory,
    /// The instances of each destination (graph service name) as `host:port`, where the graph
    /// came from a file that lists them (a proxy settings file's `instances`, or its
    /// `discovery` name): a new Envoy cluster takes them as its endpoints, where it would name
    /// the destination at a guessed port.
    pub instances: BTreeMap<String, Vec<String>>,
    /// The graph name of each destination of `inventory`, as the import gives it: made at the
    /// first lookup, once for the whole export.
    names: std::sync::OnceLock<crate::assemble::Names>,
}

impl Existing {
    /// The graph `import` makes of these files, with no base: what the files say of each
    /// destination, to tell whether a graph changed it. `None` if the import fails (its error
    /// was the import's to report).
    fn imported_graph(&self) -> Option<Graph> {
        let imported =
            crate::assemble::assemble(&self.inventory, &crate::assemble::Options::default())
                .ok()?;
        stormguard_graph::parse("imported graph", &imported.toml).ok()
    }

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
            instances: BTreeMap::new(),
            names: std::sync::OnceLock::new(),
        })
    }

    /// The graph name of every destination of the files, as the import gives it: made at the
    /// first lookup.
    fn names(&self) -> &crate::assemble::Names {
        self.names
            .get_or_init(|| crate::assemble::Names::new(&self.inventory))
    }

    /// Whether the destination `host` names is graph service `to`, as the import names it: a
    /// service name of two namespaces is two services (`api-shop`, `api-other`), each found in
    /// its own namespace only; a graph that names the service alone (`api`, written before an
    /// import) matches it in every namespace, which `export` then refuses to choose between
    /// ([`namespaces_of`](Self::namespaces_of)).
    fn is_service(&self, host: &crate::inventory::Host, to: &str) -> bool {
        self.is_destination(&names::service_of(host), to)
    }

    /// The Kubernetes name and namespace of graph service `to` when the import named it apart
    /// from its service name (`api-shop`, for `api` in `shop` beside an `api` elsewhere); `None`
    /// for a graph name that is the service's own.
    fn kubernetes_name(&self, to: &str) -> Option<(String, Option<String>)> {
        let names = self.names();
        match names.keys_of(to).as_slice() {
            [(name, namespace)] if names::graph_name(name) != to => {
                Some((name.clone(), namespace.clone()))
            }
            _ => None,
        }
    }

    /// The namespaces of the destinations graph service `to` names among the files, each once,
    /// sorted: more than one when the graph names a service by a name several namespaces use.
    fn namespaces_of(&self, to: &str) -> Vec<String> {
        let mut namespaces: Vec<String> = self
            .names()
            .keys_of(to)
            .into_iter()
            .filter_map(|(_, namespace)| namespace)
            .collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }

    /// Graph service `to` as a person finds it among the files: `api (namespace shop)` for a
    /// name the import made apart (see [`kubernetes_name`](Self::kubernetes_name)), else `to`.
    fn service_label(&self, to: &str) -> String {
        match self.kubernetes_name(to) {
            Some((name, Some(namespace))) => format!("{name} (namespace {namespace})"),
            Some((name, None)) => name,
            None => to.to_string(),
        }
    }

    /// [`is_service`](Self::is_service) of a destination's name and namespace.
    fn is_destination(&self, key: &crate::assemble::DestinationKey, to: &str) -> bool {
        self.names().is(key, to)
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
    /// The user's files whose resources were found, where no value changes: not written (every
    /// value the graph asks is there, or could not be written, as the notes say).
    pub unchanged: Vec<PathBuf>,
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
    // Per file, each resource written as the summary names it, with its namespace.
    let mut written: BTreeMap<String, Vec<Written>> = BTreeMap::new();
    let mut new_plans = Vec::new();
    for mut dest in plan.destinations {
        // A graph name that is a Service's in several namespaces (a graph written before an
        // import, which names `api` where the files have `api` in `shop` and in `other`) says
        // not which: editing the first found erased the other's values.
        let namespaces = existing.namespaces_of(&dest.to);
        if namespaces.len() > 1 {
            out.notes.push(format!(
                "{}: not written: the files have a Service {} in namespaces {}, and the graph \
                 does not say which it calls; name the calls as the import does ({})",
                dest.to,
                dest.to,
                namespaces.join(", "),
                namespaces
                    .iter()
                    .map(|ns| names::graph_name(&format!("{}-{ns}", dest.to)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
            // Nothing is written for it: what the target could not have expressed is moot.
            out.unexpressed.retain(|u| u.to != dest.to);
            continue;
        }
        // A destination whose policy is its Service's annotations (no route of its own in
        // the files) is written into them, where a route inheriting them is not needed.
        let first_route = dest
            .routes
            .first()
            .and_then(|r| find_route(writer, existing, &dest, r));
        let onto_service = first_route.is_some_and(|r| r.kind == "Service");
        if target == Target::Linkerd && !onto_service {
            // The route as the note names it: the one among the files, else the new HTTPRoute.
            let route = match first_route {
                Some(r) => format!("{} {}", r.kind, r.name),
                None => format!("HTTPRoute {}", dest.to),
            };
            linkerd::under_service_retries(&mut dest, existing, &route, &mut out.notes);
        }
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
                    let root = existing
                        .documents
                        .iter()
                        .find(|d| d.file == resource.file && d.index == resource.document)
                        .map(|d| &d.root);
                    let entry = values
                        .entry((resource.file.to_string(), resource.document))
                        .or_default();
                    let inherited = match (target, node) {
                        (Target::Linkerd, Some(node)) if resource.kind != "Service" => {
                            linkerd::inherited(existing, &dest.to, node, &route.fields)
                        }
                        // A Service's annotations are its GRPCRoutes' too: while the policy
                        // retries, its gRPC retry conditions, which a call's policy never
                        // writes on a Service (the graph does not say a call is gRPC), stay;
                        // with no retry, they go with the limit (kept alone, Linkerd would
                        // read them with a limit of 1).
                        (Target::Linkerd, _) => {
                            let retries = route.fields.iter().any(|a| {
                                matches!(a.value, Val::Str(_))
                                    && a.path
                                        == edit::keys(&[
                                            "metadata",
                                            "annotations",
                                            "retry.linkerd.io/limit",
                                        ])
                            });
                            route
                                .fields
                                .iter()
                                .map(|a| {
                                    retries
                                        && a.value == Val::Remove
                                        && a.path
                                            == edit::keys(&[
                                                "metadata",
                                                "annotations",
                                                "retry.linkerd.io/grpc",
                                            ])
                                })
                                .collect()
                        }
                        _ => vec![false; route.fields.len()],
                    };
                    if let (Target::Linkerd, Some(node)) = (target, node) {
                        let note = linkerd::spec_timeout_note(
                            existing,
                            &dest.to,
                            node,
                            &route.fields,
                            &inherited,
                            graph,
                        );
                        if let Some(why) = note {
                            out.notes.push(format!(
                                "{} {} in {}: {why}",
                                resource.kind, resource.name, resource.file
                            ));
                        }
                    }
                    let fields = route
                        .fields
                        .iter()
                        .zip(&inherited)
                        .filter(|(a, i)| !**i && a.only_on.is_none_or(|k| k == resource.kind));
                    if target == Target::Linkerd
                        && route
                            .fields
                            .iter()
                            .any(|a| a.only_on == Some(resource.kind.as_str()))
                    {
                        // The route is a GRPCRoute: the call's gRPC conditions are written
                        // (or there already), not beyond the export.
                        out.unexpressed.retain(|u| {
                            !(u.to == dest.to
                                && u.key == "retry_on"
                                && u.why.ends_with(linkerd::GRPC_ONLY_ON_ROUTE))
                        });
                    }
                    for (assign, _) in fields {
                        let mut path = if assign.from_root {
                            Vec::new()
                        } else {
                            prefix.clone()
                        };
                        // Written only over a value the file has: a key the file leaves out
                        // already says it (the system's default), and adding it is noise.
                        let mut full = path.clone();
                        full.extend(assign.path.iter().cloned());
                        let there = root.and_then(|r| walk(r, &full));
                        if assign.only_to_replace && there.is_none() {
                            continue;
                        }
                        if there.is_some_and(|n| writer.keeps(&assign.path, &assign.value, n)) {
                            continue;
                        }
                        path.extend(assign.path.iter().cloned());
                        entry.push((path, assign.value.clone()));
                    }
                    // The route's part as the file has it (`spec.http[0]`), unless the writer's
                    // route is the whole resource (Linkerd's annotations).
                    let part = if prefix.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", resource.path)
                    };
                    written.entry(resource.file.to_string()).or_default().push((
                        format!("{} {}{part}", resource.kind, resource.name),
                        resource.namespace.clone(),
                        resource.document,
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
                let node = existing
                    .documents
                    .iter()
                    .find(|d| d.file == resource.file && d.index == resource.document)
                    .and_then(|d| walk(&d.root, &prefix));
                for why in node
                    .map(|n| writer.destination_overridden(n))
                    .unwrap_or_default()
                {
                    out.notes.push(format!(
                        "{} {} in {}: {why}",
                        resource.kind, resource.name, resource.file
                    ));
                }
                let entry = values
                    .entry((resource.file.to_string(), resource.document))
                    .or_default();
                let root = existing
                    .documents
                    .iter()
                    .find(|d| d.file == resource.file && d.index == resource.document)
                    .map(|d| &d.root);
                for assign in &dest.destination {
                    let mut path = prefix.clone();
                    path.extend(assign.path.iter().cloned());
                    let there = root.and_then(|r| walk(r, &path));
                    if assign.only_to_replace && there.is_none() {
                        continue;
                    }
                    let longer = there.and_then(crate::doc::Node::as_duration);
                    if assign
                        .keep_at_least
                        .is_some_and(|d| longer.is_some_and(|l| l >= d))
                    {
                        continue;
                    }
                    entry.push((path, assign.value.clone()));
                }
                written.entry(resource.file.to_string()).or_default().push((
                    format!("{} {}", resource.kind, resource.name),
                    resource.namespace.clone(),
                    resource.document,
                ));
            }
            _ => left.destination = dest.destination.clone(),
        }
        if !left.routes.is_empty() || !left.destination.is_empty() {
            new_plans.push(left);
        }
    }
    let mut edited: BTreeMap<String, (String, Vec<edit::TextEdit>)> = BTreeMap::new();
    let mut changed_documents: std::collections::BTreeSet<(String, usize)> = Default::default();
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
            Ok(edits) => {
                // A document whose edits all write what is there already is not changed,
                // and the summary does not name its resources.
                if edits
                    .iter()
                    .any(|e| doc.text.get(e.start..e.end) != Some(e.text.as_str()))
                {
                    changed_documents.insert((file.clone(), index));
                }
                edited
                    .entry(file.clone())
                    .or_insert_with(|| (doc.text.to_string(), Vec::new()))
                    .1
                    .extend(edits)
            }
            Err(error) => out.notes.push(error.to_string()),
        }
    }
    for (file, (text, edits)) in edited {
        let new = edit::apply(&text, edits);
        if new == text {
            // Every value was there: it was not written, whatever its resources' plan said.
            out.unchanged.push(PathBuf::from(&file));
            continue;
        }
        out.files.push(OutFile {
            path: PathBuf::from(&file),
            text: new,
            edited: true,
            written: summary_names(&written.remove(&file).unwrap_or_default(), |document| {
                changed_documents.contains(&(file.clone(), document))
            }),
        });
    }
    // Values only to replace stay out of new resources (the system's default says them). A
    // route left with nothing to say is not written at all, nor a resource left with no route
    // and no value: a graph read from files and sent back unchanged would otherwise add a
    // resource per destination the files had none for (an Istio VirtualService that only
    // routes to its host, an HTTPRoute with no timeout or retry), each a new routing object in
    // the cluster for nothing.
    if target == Target::Linkerd {
        for plan in &new_plans {
            if let Some(note) = linkerd::profile_left_alone(existing, plan) {
                out.notes.push(note);
            }
        }
    }
    for plan in &mut new_plans {
        for route in &mut plan.routes {
            route
                .fields
                .retain(|a| !a.only_to_replace && a.only_on.is_none());
        }
        if writer.omits_what_says_only_defaults() {
            plan.routes.retain(|r| !r.fields.is_empty());
        }
        plan.destination.retain(|a| !a.only_to_replace);
    }
    if writer.omits_what_says_only_defaults() {
        new_plans.retain(|p| !p.routes.is_empty() || !p.destination.is_empty());
    }
    if target == Target::Linkerd {
        // A destination whose policy is a ServiceProfile's, which export does not write, and
        // which the graph leaves as the import read it: a new route would say the same again,
        // and (with no matches) for every path and method of the Service, where the profile's
        // routes each have their own condition. An unchanged export wrote one.
        let profiled: Vec<&str> = new_plans
            .iter()
            .filter(|p| linkerd::profiled(existing, &p.to))
            .map(|p| p.to.as_str())
            .collect();
        if !profiled.is_empty() {
            let unchanged: Vec<String> = match existing.imported_graph() {
                Some(imported) => profiled
                    .into_iter()
                    .filter(|to| same_policies(graph, &imported, to))
                    .map(str::to_string)
                    .collect(),
                None => Vec::new(),
            };
            new_plans.retain(|p| !unchanged.contains(&p.to));
        }
    }
    if !new_plans.is_empty() {
        for plan in &mut new_plans {
            plan.port = service_port(existing, &plan.to);
            plan.instances = existing
                .instances
                .get(&plan.to)
                .cloned()
                .unwrap_or_default();
            plan.namespace = service_namespace(existing, &plan.to);
            if let (None, Some(kind)) = (plan.port, writer.names_port(plan)) {
                out.notes.push(format!(
                    "{kind} for {}: port 80 written, since no Service {} with one port (or \
                     one named http, http-... or grpc) was among the files read: check it \
                     against the Service's",
                    plan.to,
                    existing.service_label(&plan.to)
                ));
            }
        }
        if target == Target::Linkerd {
            // "If the ParentReference of an HTTPRoute is a Service, and a ServiceProfile is also
            // defined for that Service, proxies will use the ServiceProfile configuration ... as
            // long as the ServiceProfile exists" (linkerd.io, HTTPRoute reference): an HTTPRoute
            // written beside a profile changes nothing until the profile goes.
            for plan in new_plans.iter().filter(|p| !p.routes.is_empty()) {
                if linkerd::profiled(existing, &plan.to) {
                    // A profile's retries have no count, only its budget (the import reads
                    // them as the graph's most attempts), and annotations have no budget: the
                    // route, once in force, would retry that often with nothing to stop it.
                    let limit = plan
                        .routes
                        .iter()
                        .flat_map(|r| &r.fields)
                        .filter(|a| {
                            a.path
                                == edit::keys(&[
                                    "metadata",
                                    "annotations",
                                    "retry.linkerd.io/limit",
                                ])
                        })
                        .filter_map(|a| match &a.value {
                            Val::Str(text) => text.parse::<u32>().ok(),
                            _ => None,
                        })
                        .max()
                        .filter(|limit| *limit >= UNBUDGETED_LIMIT);
                    let unbudgeted = limit.map_or(String::new(), |limit| {
                        format!(
                            "; its retry.linkerd.io/limit \"{limit}\" is the profile's retries, \
                             which only the profile's retryBudget bounds and no annotation can: \
                             lower it (or fix the graph's max_attempts) before deleting the \
                             profile, or each request may be retried {limit} times"
                        )
                    });
                    // The profile's routes each have a condition; the new route has no
                    // matches, so once in force it applies to every request to the Service.
                    let conditions: Vec<&str> = existing
                        .inventory
                        .routes
                        .iter()
                        .filter(|r| {
                            r.resource.kind == "ServiceProfile"
                                && existing.is_service(&r.host, &plan.to)
                        })
                        .filter_map(|r| r.name.as_deref())
                        .collect();
                    let widened = if conditions.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; it has no matches, so it applies to every request to {}, where \
                             the profile's routes apply each to its own condition ({}): add \
                             those matches before deleting the profile",
                            plan.to,
                            conditions.join(", ")
                        )
                    };
                    out.notes.push(format!(
                        "HTTPRoute {0}: Linkerd's proxies use {0}'s ServiceProfile, not this \
                         HTTPRoute, as long as the profile exists: delete the profile for the \
                         HTTPRoute to take effect (or set the policy in the profile \
                         instead){unbudgeted}{widened}",
                        plan.to
                    ));
                }
            }
        }
        if matches!(target, Target::Istio | Target::GatewayApi | Target::Linkerd) {
            // A Kubernetes resource names the Service as Kubernetes does: a graph name the
            // import made of a name in two namespaces (`api-shop`) is `api` in `shop`.
            for plan in &mut new_plans {
                if let Some((name, namespace)) = existing.kubernetes_name(&plan.to) {
                    plan.to = name;
                    plan.namespace = plan.namespace.take().or(namespace);
                }
            }
        }
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

/// Whether every call to `to` in `graph` has a policy some call to it has in `imported`, and
/// the other way round: the graph leaves `to` as the files give it.
fn same_policies(graph: &Graph, imported: &Graph, to: &str) -> bool {
    let policies = |g: &Graph| -> Vec<Call> {
        let mut out: Vec<Call> = Vec::new();
        for call in g
            .services
            .values()
            .flat_map(|service| service.each_endpoint())
            .flat_map(|endpoint| endpoint.calls.iter())
            .filter(|call| call.to == to)
        {
            let policy = policy_of(call);
            if !out.contains(&policy) {
                out.push(policy);
            }
        }
        out
    };
    let (now, then) = (policies(graph), policies(imported));
    !now.is_empty() && now.iter().all(|p| then.contains(p)) && then.iter().all(|p| now.contains(p))
}

/// `call` with only its policy keys (`timeout` to `propagate_deadline`) as they are, the rest
/// (where it is, its callee's endpoint, how often it is made) made equal.
fn policy_of(call: &Call) -> Call {
    Call {
        to: String::new(),
        endpoint: None,
        rtt: std::time::Duration::ZERO,
        method: String::new(),
        count: 1,
        parallel: false,
        required: true,
        span: stormguard_graph::model::Span::default(),
        ..call.clone()
    }
}

/// A resource written, as the summary names it (`Kind name`, and the part of it for a route),
/// with its namespace and its document's place in the file.
type Written = (String, Option<String>, usize);

/// The summary's names of the resources of one file whose document `changed` (a resource
/// whose values were all there already is not named: a fourth review): each as `Kind name`,
/// with `(in NAMESPACE)` where two of the same kind and name are in different namespaces (it
/// said `Service api, Service api`: a third review), each once.
fn summary_names(written: &[Written], changed: impl Fn(usize) -> bool) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(written.len());
    for (label, namespace, document) in written {
        if !changed(*document) {
            continue;
        }
        // Twins among all the file's resources planned, changed or not: the one changed is
        // told from the other by its namespace.
        let twins = written
            .iter()
            .any(|(other, ns, _)| other == label && ns != namespace);
        let name = match namespace {
            Some(namespace) if twins => format!("{label} (in {namespace})"),
            _ => label.clone(),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The retry limit from which a new Linkerd route beside a ServiceProfile is said to retry
/// without bound: annotation retries have no budget, and ten retries a request is a storm.
const UNBUDGETED_LIMIT: u32 = 10;

/// The core Services (`apiVersion: v1`) among the files read that are graph service `to`, in
/// any namespace. The core Service only: a Knative Service is also of kind `Service`, and has
/// no ports.
fn core_services<'e>(
    existing: &'e Existing,
    to: &'e str,
) -> impl Iterator<Item = &'e crate::doc::Document> + 'e {
    existing.documents.iter().filter(move |doc| {
        let root = &doc.root;
        let core = root.get("apiVersion").and_then(crate::doc::Node::as_str) == Some("v1");
        let name = root
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(crate::doc::Node::as_str);
        core && root.get("kind").and_then(crate::doc::Node::as_str) == Some("Service")
            && name.is_some_and(|name| {
                let namespace = crate::kubernetes::namespace_of(root);
                existing.is_destination(&(name.to_string(), Some(namespace)), to)
            })
    })
}

/// The port of the Kubernetes Service that is graph service `to` among the files read: its
/// only port, or the one named `http` (or `http-` something, `grpc` for gRPC) of several.
/// `None` when no such Service was read, or its ports leave the choice open.
fn service_port(existing: &Existing, to: &str) -> Option<u16> {
    let mut found = None;
    for doc in core_services(existing, to) {
        let ports = doc
            .root
            .get("spec")
            .and_then(|s| s.get("ports"))
            .map(crate::doc::Node::items)
            .unwrap_or_default();
        let port_of = |p: &crate::doc::Node| {
            p.get("port")
                .and_then(crate::doc::Node::as_u64)
                .and_then(|n| u16::try_from(n).ok())
        };
        let named = |p: &&crate::doc::Node| {
            p.get("name")
                .and_then(crate::doc::Node::as_str)
                .is_some_and(|n| n == "http" || n.starts_with("http-") || n == "grpc")
        };
        let port = match ports {
            [only] => port_of(only),
            several => {
                let mut web = several.iter().filter(named);
                match (web.next(), web.next()) {
                    (Some(one), None) => port_of(one),
                    _ => None,
                }
            }
        };
        // Two Services of the same graph name (in two namespaces) with different ports: no
        // guess between them.
        match (found, port) {
            (_, None) => return None,
            (Some(seen), Some(p)) if seen != p => return None,
            _ => found = port,
        }
    }
    found
}

/// The namespace of the core Service that is graph service `to` among the files read, when
/// exactly one namespace holds one (a Service without a namespace says none); with no such
/// Service, the one its routes among the files name, when they agree.
fn service_namespace(existing: &Existing, to: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for doc in &existing.documents {
        let root = &doc.root;
        let core = root.get("apiVersion").and_then(crate::doc::Node::as_str) == Some("v1");
        if !core || root.get("kind").and_then(crate::doc::Node::as_str) != Some("Service") {
            continue;
        }
        let metadata = root.get("metadata");
        let name = metadata
            .and_then(|m| m.get("name"))
            .and_then(crate::doc::Node::as_str);
        let key = |name: &str| {
            (
                name.to_string(),
                Some(crate::kubernetes::namespace_of(root)),
            )
        };
        if !name.is_some_and(|name| existing.is_destination(&key(name), to)) {
            continue;
        }
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(crate::doc::Node::as_str)?;
        match &found {
            Some(seen) if seen != namespace => return None,
            _ => found = Some(namespace.to_string()),
        }
    }
    if found.is_some() {
        return found;
    }
    // No Service among the files: the namespace the routes read for it name, when they agree
    // (a Linkerd ServiceProfile's `emoji-svc.emojivoto.svc.cluster.local`), so that a new
    // resource does not land in the default namespace, where it names another Service.
    for route in existing
        .inventory
        .routes
        .iter()
        .filter(|r| existing.is_service(&r.host, to))
    {
        let (_, namespace) = names::service_of(&route.host);
        match (&found, namespace) {
            (Some(seen), Some(namespace)) if *seen != namespace => return None,
            (None, Some(namespace)) => found = Some(namespace),
            _ => {}
        }
    }
    found
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
        .filter(|r| existing.is_service(&r.host, &dest.to))
        .filter(|r| {
            // The name as written, or as the import makes a graph name of it.
            !writer.routes_by_endpoint()
                || r.name == route.endpoint
                || r.name.as_deref().map(names::graph_name) == route.endpoint
        })
        .filter(|r| match (&dest.caller, &r.caller) {
            // The import's placeholder stands for every client: the route of any caller.
            (Some(caller), _) if caller == crate::assemble::PLACEHOLDER => true,
            (Some(caller), Some(route_caller)) => *caller == names::graph_name(route_caller),
            (Some(_), None) => false,
            (None, route_caller) => route_caller.is_none() || route.placeholder,
        })
        // Of several, the kind the writer lists first (a Linkerd route before its Service's
        // annotations), then the first read.
        .min_by_key(|r| {
            writer
                .route_kinds()
                .iter()
                .position(|k| *k == r.resource.kind)
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
        .filter(|d| existing.is_service(&d.host, &dest.to))
        .find(|d| {
            dest.caller.as_deref() == Some(crate::assemble::PLACEHOLDER)
                || d.caller.as_deref().map(names::graph_name) == dest.caller
        })
        .map(|d| &d.resource)
}

/// A key step of a path (`None` for an index).
fn key_of(seg: &Seg) -> Option<&str> {
    match seg {
        Seg::Key(k) => Some(k),
        Seg::Index(_) => None,
    }
}

#[cfg(test)]
mod tests;
