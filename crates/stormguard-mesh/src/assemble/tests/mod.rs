//! Tests of the assembler on inventories built by hand (the readers are tested on files), each
//! checking that the written graph parses: the contract with `check`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::inventory::{
    Backend, DestinationPolicy, Host, Inventory, MeshEvidence, Policy, Resource, Route, System,
    Workload,
};
use crate::source::Origin;

use super::{assemble, Imported, Options};

mod base;
mod findings;
mod json;
mod placeholder;
mod stack;

/// An origin at `line` of `file`.
pub(super) fn at(file: &str, line: u32, what: &str) -> Origin {
    Origin::File {
        file: Arc::from(file),
        line,
        column: 3,
        what: what.to_string(),
    }
}

/// A route to `host` in namespace `ns`, written at `file:line`, with no settings yet.
pub(super) fn route(system: System, host: &str, ns: &str, file: &str, line: u32) -> Route {
    Route {
        system,
        host: Host::new(host, Some(ns)),
        name: None,
        caller: None,
        method: None,
        backends: Vec::new(),
        policy: Policy::default(),
        origin: at(file, line, &format!("route to {host}")),
        resource: Resource {
            kind: "VirtualService".into(),
            namespace: Some(ns.into()),
            name: host.into(),
            file: Arc::from(file),
            document: 0,
            path: "spec.http[0]".into(),
        },
    }
}

/// Builds a route's policy: `set("timeout", "\"1s\"", 12)` at that line of the route's file,
/// `default("max_attempts", "3", "Istio default")` as a system's default.
pub(super) trait RouteExt {
    /// A setting from the route's file at `line`.
    fn set(self, key: &'static str, value: &str, line: u32) -> Self;
    /// A setting that is the system's default.
    fn default(self, key: &'static str, value: &str, name: &'static str) -> Self;
    /// The route's name.
    fn named(self, name: &str) -> Self;
    /// The route's one method.
    fn method(self, method: &str) -> Self;
    /// The route's caller.
    fn caller(self, caller: &str) -> Self;
    /// A backend.
    fn backend(self, host: &str, weight: f64, line: u32) -> Self;
}

fn file_of(route: &Route) -> String {
    route.resource.file.to_string()
}

impl RouteExt for Route {
    fn set(mut self, key: &'static str, value: &str, line: u32) -> Self {
        let origin = at(&file_of(&self), line, key);
        self.policy.set(key, value, origin);
        self
    }
    fn default(mut self, key: &'static str, value: &str, name: &'static str) -> Self {
        self.policy.set(key, value, Origin::Default(name));
        self
    }
    fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }
    fn caller(mut self, caller: &str) -> Self {
        self.caller = Some(caller.to_string());
        self
    }
    fn backend(mut self, host: &str, weight: f64, line: u32) -> Self {
        let origin = at(&file_of(&self), line, "weight");
        let namespace = self.host.namespace.clone();
        self.backends.push(Backend {
            host: Host::new(host, namespace.as_deref()),
            weight,
            origin,
        });
        self
    }
}

/// A Deployment with `replicas` and pod labels `app: NAME`.
pub(super) fn deployment(name: &str, ns: &str, replicas: u32, file: &str, line: u32) -> Workload {
    Workload {
        kind: "Deployment",
        name: name.into(),
        namespace: ns.into(),
        instances: Some((replicas, at(file, line, "spec.replicas"))),
        labels: BTreeMap::from([("app".to_string(), name.to_string())]),
        mesh: None,
        origin: at(file, line - 3, "Deployment"),
    }
}

/// A Service named `name` selecting `app: APP`.
pub(super) fn service(name: &str, ns: &str, app: &str, file: &str, line: u32) -> Workload {
    Workload {
        kind: "Service",
        name: name.into(),
        namespace: ns.into(),
        instances: None,
        labels: BTreeMap::from([("app".to_string(), app.to_string())]),
        mesh: None,
        origin: at(file, line, "Service"),
    }
}

/// A destination policy for `host`.
pub(super) fn destination(
    host: &str,
    ns: &str,
    settings: &[(&'static str, &str, u32)],
) -> DestinationPolicy {
    let mut policy = Policy::default();
    for (key, value, line) in settings {
        policy.set(key, *value, at("dr.yaml", *line, key));
    }
    DestinationPolicy {
        system: System::Istio,
        host: Host::new(host, Some(ns)),
        caller: None,
        policy,
        origin: at("dr.yaml", 1, "DestinationRule"),
        resource: Resource::default(),
    }
}

/// Istio for namespace `ns`.
pub(super) fn istio_in(ns: &str) -> MeshEvidence {
    MeshEvidence {
        system: System::Istio,
        namespace: Some(ns.into()),
        origin: at("ns.yaml", 4, "istio-injection: enabled"),
    }
}

/// The inventory's import with no base; the graph must parse.
pub(super) fn import(inv: &Inventory) -> Imported {
    let imported = assemble(inv, &Options::default()).unwrap();
    parsed(&imported);
    imported
}

/// The inventory's import onto the base graph `base`; the graph must parse.
pub(super) fn import_onto(inv: &Inventory, base: &str) -> Imported {
    let options = Options {
        base: Some(("base.toml".into(), base.into())),
        inputs: vec!["k8s/".into()],
    };
    let imported = assemble(inv, &options).unwrap();
    parsed(&imported);
    imported
}

/// The graph the import wrote.
pub(super) fn parsed(imported: &Imported) -> stormguard_graph::Graph {
    stormguard_graph::parse("imported.toml", &imported.toml)
        .unwrap_or_else(|e| panic!("{e}\n{}", imported.toml))
}

/// The 1-based line of the first line of `text` that contains `needle`.
pub(super) fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
        + 1
}

#[test]
fn an_empty_inventory_is_a_graph_of_the_placeholder_alone() {
    let imported = import(&Inventory::default());
    let graph = parsed(&imported);
    assert_eq!(graph.entry.service, "mesh-callers");
    assert!(imported.toml.contains("# Documents read: none."));
    assert!(imported.sources.lines.is_empty());
}

#[test]
fn a_base_that_does_not_parse_is_an_error_at_its_line() {
    let options = Options {
        base: Some((
            "base.toml".into(),
            "[entry]\nservice = \"web\"\n[services.web]\ninstances = 0\n".into(),
        )),
        inputs: Vec::new(),
    };
    let error = assemble(&Inventory::default(), &options)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("base.toml:4:13: `services.web.instances`"),
        "{error}"
    );
}
