//! What the readers found, before it becomes a graph: workloads, the routes to each destination
//! with their policies in stormguard's keys, and everything that could not be read.
//!
//! ## Why an inventory between the files and the graph
//! Who calls whom is not in any of these files: an Istio `VirtualService` says how calls *to*
//! `reviews` are retried, never who makes them. The readers (one module per system) only
//! translate each system's resources into policies keyed by destination; [`crate::assemble()`]
//! then puts them on the calls of a base graph, of Prometheus's edges, or of a placeholder
//! caller. Keeping the two apart lets every reader be tested on its own files, and every source
//! of edges take the same policies.
//!
//! Policies are kept as the graph file's own key names and TOML values ([`Setting`]), each with
//! its [`Origin`]: the readers speak the graph's language directly, the writer prints a
//! comment per value, and the graph parser (the one that reads hand-written files) checks the
//! result, so an imported graph means exactly what a typed one does.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use stormguard_graph::Severity;

use crate::source::Origin;

/// A system whose settings are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum System {
    /// Kubernetes workloads and Services (instances, names).
    Kubernetes,
    /// Istio's `VirtualService` and `DestinationRule`, and its sidecars' defaults.
    Istio,
    /// Gateway API's `HTTPRoute` and `GRPCRoute`.
    GatewayApi,
    /// Linkerd's annotations, `ServiceProfile`s and defaults.
    Linkerd,
    /// Envoy: a bootstrap's static resources or an admin `/config_dump`.
    Envoy,
    /// A gRPC service config (`methodConfig`, `retryThrottling`).
    Grpc,
}

impl System {
    /// The origin of a value this system applies where its files say nothing.
    pub fn default_origin(self) -> Origin {
        Origin::Default(match self {
            System::Kubernetes => "Kubernetes default",
            System::Istio => "Istio default",
            System::GatewayApi => "Gateway API default",
            System::Linkerd => "Linkerd default",
            System::Envoy => "Envoy default",
            System::Grpc => "gRPC default",
        })
    }

    /// Its name as `export --to` and the graph's comments write it.
    pub fn name(self) -> &'static str {
        match self {
            System::Kubernetes => "kubernetes",
            System::Istio => "istio",
            System::GatewayApi => "gateway-api",
            System::Linkerd => "linkerd",
            System::Envoy => "envoy",
            System::Grpc => "grpc",
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One policy key of a call, as the graph file writes it, and where its value came from.
///
/// ```
/// use stormguard_mesh::inventory::Setting;
/// use stormguard_mesh::source::Origin;
/// let setting = Setting::new("max_attempts", "3", Origin::Default("Istio default"));
/// assert_eq!(setting.to_string(), "max_attempts = 3 # Istio default");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    /// The policy key (`timeout`, `request_timeout`, `connect_timeout`, `max_attempts`,
    /// `backoff`, `retry_on`, `retry_budget`, `token_bucket`, `hedge`, `idempotent`, `method`,
    /// `propagate_deadline`).
    pub key: &'static str,
    /// Its value as TOML text: `"1s"` (with the quotes), `3`, `["5xx", "reset"]`,
    /// `{ ratio = 0.2, min_per_sec = 10 }`.
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
}

impl Setting {
    /// A setting.
    pub fn new(key: &'static str, value: impl Into<String>, origin: Origin) -> Setting {
        Setting {
            key,
            value: value.into(),
            origin,
        }
    }
}

impl fmt::Display for Setting {
    /// As the TOML writer prints it: `key = value # origin`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {} # {}", self.key, self.value, self.origin)
    }
}

/// A call's policy: settings in the graph's keys, each key at most once, in the order set.
///
/// ```
/// use stormguard_mesh::inventory::Policy;
/// use stormguard_mesh::source::Origin;
/// let mut policy = Policy::default();
/// policy.set("max_attempts", "3", Origin::Default("Istio default"));
/// policy.set("max_attempts", "2", Origin::Default("Envoy default"));
/// assert_eq!(policy.get("max_attempts").unwrap().value, "2");
/// assert_eq!(policy.settings.len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    /// The settings.
    pub settings: Vec<Setting>,
}

impl Policy {
    /// Sets `key` (replacing an earlier value of it).
    pub fn set(&mut self, key: &'static str, value: impl Into<String>, origin: Origin) {
        let setting = Setting::new(key, value, origin);
        match self.settings.iter_mut().find(|s| s.key == key) {
            Some(existing) => *existing = setting,
            None => self.settings.push(setting),
        }
    }

    /// The setting of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key == key)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.settings.retain(|s| s.key != key);
    }

    /// Sets every key of `other` that this policy does not set.
    pub fn fill_from(&mut self, other: &Policy) {
        for setting in &other.settings {
            if self.get(setting.key).is_none() {
                self.settings.push(setting.clone());
            }
        }
    }
}

/// A destination as a resource names it: a host (`reviews`, `reviews.prod.svc.cluster.local`,
/// an Envoy cluster `outbound|9080||reviews.prod.svc.cluster.local`) and the namespace the
/// resource is in, which a short host is relative to. [`crate::names`] turns it into a graph
/// service name.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Host {
    /// The host or name as written.
    pub name: String,
    /// The resource's namespace, if it has one.
    pub namespace: Option<String>,
}

impl Host {
    /// A host in a namespace (or none).
    pub fn new(name: impl Into<String>, namespace: Option<&str>) -> Host {
        Host {
            name: name.into(),
            namespace: namespace.map(str::to_string),
        }
    }
}

/// The resource a route or policy came from, so that `export` can write a fix back into it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    /// Its kind (`VirtualService`, `HTTPRoute`, `ServiceProfile`, `Service`, `bootstrap`,
    /// `config_dump`, `ServiceConfig`).
    pub kind: String,
    /// Its namespace, if any.
    pub namespace: Option<String>,
    /// Its name (for an Envoy route configuration, its name; for a gRPC config, the file).
    pub name: String,
    /// The file it is in.
    pub file: Arc<str>,
    /// Which document of the file.
    pub document: usize,
    /// The path within the document of the part that holds the policy (`spec.http[1]`).
    pub path: String,
}

/// Where a route sends its requests, and which share of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    /// The destination.
    pub host: Host,
    /// Its weight among the route's backends (default 1).
    pub weight: f64,
    /// Where it is written.
    pub origin: Origin,
}

/// The policy of calls to one destination (or one kind of request to it), as one system
/// applies it.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// The system that applies it.
    pub system: System,
    /// The destination the resource is for (an Istio `hosts` entry, a Gateway API `parentRef`
    /// Service, an Envoy cluster, a gRPC service).
    pub host: Host,
    /// The route's name, when requests to the destination are routed by kind (an Istio
    /// `http[].name`, a Gateway API rule's name or match, a gRPC method): it becomes an
    /// endpoint. `None`: every request to the destination.
    pub name: Option<String>,
    /// The caller, when the resource belongs to one (an Envoy sidecar's `node.cluster`, an
    /// Istio route matched on `sourceLabels`); `None`: every caller.
    pub caller: Option<String>,
    /// The one HTTP method the route matches, if its match says (for `method` and the
    /// non-idempotent retry finding).
    pub method: Option<String>,
    /// Its backends; empty when it sends to `host` itself.
    pub backends: Vec<Backend>,
    /// The policy, with the system's defaults written in where the resource is silent.
    pub policy: Policy,
    /// Where the route is (for SARIF locations of findings on its call).
    pub origin: Origin,
    /// The resource, for `export`.
    pub resource: Resource,
}

/// What a system applies to every call to a destination, whatever the route: a connect
/// timeout, a retry budget or circuit breaker (Istio's `DestinationRule`, an Envoy cluster).
#[derive(Clone, Debug, PartialEq)]
pub struct DestinationPolicy {
    /// The system.
    pub system: System,
    /// The destination.
    pub host: Host,
    /// The caller, when the resource belongs to one (an Envoy sidecar's cluster).
    pub caller: Option<String>,
    /// Settings (`connect_timeout`, `retry_budget`, ...).
    pub policy: Policy,
    /// Where it is.
    pub origin: Origin,
    /// The resource, for `export`.
    pub resource: Resource,
}

/// A Kubernetes workload or Service: a graph service's name and instances.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `Service`, or an Envoy static cluster (`Envoy cluster`,
    /// whose endpoints are its instances).
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Its namespace (`default` when the manifest gives none).
    pub namespace: String,
    /// Replicas (a Deployment's `spec.replicas`, default 1 as Kubernetes applies it), with
    /// their origin; `None` for a Service.
    pub instances: Option<(u32, Origin)>,
    /// A workload's pod labels, or a Service's selector: a Service takes the instances of the
    /// workloads its selector matches.
    pub labels: BTreeMap<String, String>,
    /// The mesh its pods join, by their annotations or labels (`sidecar.istio.io/inject`,
    /// `linkerd.io/inject`), with where that is said.
    pub mesh: Option<(System, Origin)>,
    /// Where it is.
    pub origin: Origin,
}

/// Something in the files that the import did not turn into a setting: an unknown kind, a
/// field that changes nothing stormguard models, a per-request header override a static reading
/// cannot see, or a value mapped approximately. Listed in the output, never silently dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct Unread {
    /// Where it is.
    pub origin: Origin,
    /// What it is (`DestinationRule.trafficPolicy.connectionPool.tcp.idleTimeout`).
    pub what: String,
    /// Why it is not read, or how it was approximated.
    pub why: String,
}

/// A finding only imported settings make possible (a gRPC `maxAttempts` clamped at 5, Istio's
/// unbounded retry circuit breaker), at the line of the manifest. `check` reports these beside
/// its own.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportFinding {
    /// The rule's id (see [`crate::rules`]).
    pub rule: &'static str,
    /// How bad.
    pub severity: Severity,
    /// The destination it is about, if one.
    pub host: Option<Host>,
    /// What is wrong, in numbers, and why it matters.
    pub message: String,
    /// The value to set.
    pub fix: String,
    /// Where.
    pub origin: Origin,
    /// The setting that fixes it on the graph's calls, when a value does (`check --fix` on
    /// manifests writes it, and `export` then carries it to the manifests).
    pub remedy: Option<Remedy>,
}

/// A setting that fixes an import finding on the imported graph's calls from `caller` to `to`.
///
/// ```
/// use stormguard_mesh::inventory::Remedy;
/// let remedy = Remedy {
///     caller: "web/checkout".into(),
///     to: "orders".into(),
///     key: "retry_on",
///     value: r#"["connect-failure", "refused-stream", "reset-before-request"]"#.into(),
/// };
/// assert_eq!(remedy.caller_and_endpoint(), ("web", Some("checkout")));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Remedy {
    /// The calling service, `SERVICE` or `SERVICE/ENDPOINT` for an endpoint's calls.
    pub caller: String,
    /// The called service.
    pub to: String,
    /// The policy key.
    pub key: &'static str,
    /// Its value, as TOML text.
    pub value: String,
}

impl Remedy {
    /// The calling service and its endpoint, if the caller names one.
    pub fn caller_and_endpoint(&self) -> (&str, Option<&str>) {
        match self.caller.split_once('/') {
            Some((service, endpoint)) => (service, Some(endpoint)),
            None => (&self.caller, None),
        }
    }
}

/// Evidence that a namespace (or everything) runs in a mesh: a namespace label, a sidecar
/// annotation, or a resource only that mesh reads. Calls to destinations in it without a route
/// get the mesh's defaults (Istio's two retries).
#[derive(Clone, Debug, PartialEq)]
pub struct MeshEvidence {
    /// The mesh.
    pub system: System,
    /// The namespace it covers; `None`: all.
    pub namespace: Option<String>,
    /// Where it is said.
    pub origin: Origin,
}

/// Everything read from the files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    /// Workloads and Services.
    pub workloads: Vec<Workload>,
    /// Routes, in file order.
    pub routes: Vec<Route>,
    /// Per-destination policies, in file order.
    pub destinations: Vec<DestinationPolicy>,
    /// What was not read.
    pub unread: Vec<Unread>,
    /// Findings at the manifests' lines.
    pub findings: Vec<ImportFinding>,
    /// Meshes seen.
    pub meshes: Vec<MeshEvidence>,
    /// Documents read, by kind (`VirtualService` → 3), for the summary.
    pub kinds: BTreeMap<String, usize>,
    /// What the Istio reader keeps until every document is read: a `DestinationRule` (and its
    /// subsets) applies to the routes of `VirtualService`s in other files, in any order
    /// ([`crate::istio::resolve`], which [`crate::inventory()`] calls last, empties it).
    pub istio: crate::istio::Pending,
    /// Linkerd annotations and routes whose policy depends on documents read later (a route's
    /// Service, a `ServiceProfile`): [`crate::linkerd::resolve`] applies them, and
    /// [`crate::inventory()`] runs it once every document is read.
    pub linkerd: crate::linkerd::Pending,
}

impl Inventory {
    /// Records that something was not read.
    pub fn unread(&mut self, origin: Origin, what: impl Into<String>, why: impl Into<String>) {
        self.unread.push(Unread {
            origin,
            what: what.into(),
            why: why.into(),
        });
    }

    /// Counts a document of `kind`.
    pub fn saw(&mut self, kind: &str) {
        *self.kinds.entry(kind.to_string()).or_default() += 1;
    }
}
