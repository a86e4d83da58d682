//! The graph as a Mermaid flowchart, so a README or pull request shows the calls, their timeouts
//! and attempts, and what is wrong in red, where GitHub renders it in place.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write;

use stormguard::duration;

use crate::model::{Call, Graph, Service, Span};
use crate::report::{Report, Severity};

/// Words Mermaid reads as syntax; a node with one of them as its id breaks the whole chart.
const RESERVED: [&str; 13] = [
    "end",
    "graph",
    "flowchart",
    "subgraph",
    "style",
    "class",
    "classdef",
    "click",
    "linkstyle",
    "default",
    "call",
    "href",
    "direction",
];

/// The graph as a `flowchart LR`: one node per service, whether reached or not (an unreached
/// service is worth seeing); one edge per call in declaration order, labelled with its timeout
/// and attempts (`"1s x2"`, `"no timeout x1"`), dotted when the call is not required; the entry
/// service drawn as a stadium with a `user` node calling it with the entry timeout.
///
/// Edges with an error or warning on them are drawn red (`linkStyle`, indexed in declaration
/// order, which is why the `user` edge comes last) and services with one are filled red
/// (`classDef bad`). Only the basic syntax that GitHub's Mermaid has long supported is used,
/// and node ids are reduced to `[A-Za-z0-9_]` while labels keep the real names.
pub fn mermaid(graph: &Graph, report: &Report) -> String {
    let mut ids = NodeIds::default();
    // File order (by span), so edges are numbered as the file declares them and the chart
    // reads like the file; the entry first, as the layout starts from it.
    let mut services: Vec<&Service> = graph.services.values().collect();
    services.sort_by(|a, b| a.span.cmp(&b.span).then_with(|| a.name.cmp(&b.name)));
    let mut names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    // Calls to or an entry of an undeclared service still get a node: the chart should show
    // the mistake, not fail on it.
    let declared: HashSet<&str> = names.iter().copied().collect();
    let undeclared = graph
        .services
        .values()
        .flat_map(|s| s.each_endpoint())
        .flat_map(|e| e.calls.iter().map(|c| c.to.as_str()))
        .chain(std::iter::once(graph.entry.service.as_str()))
        .filter(|name| !declared.contains(name));
    for name in undeclared {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if let Some(at) = names.iter().position(|n| *n == graph.entry.service) {
        let entry = names.remove(at);
        names.insert(0, entry);
    }
    for name in &names {
        ids.assign(name);
    }

    let mut out = String::from("flowchart LR\n");
    for name in &names {
        let id = &ids.by_name[*name];
        let label = label(name);
        if *name == graph.entry.service {
            let _ = writeln!(out, "  {id}([\"{label}\"])");
        } else {
            let _ = writeln!(out, "  {id}[\"{label}\"]");
        }
    }

    let (bad_edges, bad_services) = offenders(graph, report);
    let mut red_links = Vec::new();
    let mut index = 0;
    for service in &services {
        let from = &service.name;
        let calls = service
            .each_endpoint()
            .flat_map(|e| e.calls.iter().map(move |call| (e.name, call)));
        for (endpoint, call) in calls {
            let arrow = if call.required { "-->" } else { "-.->" };
            let _ = writeln!(
                out,
                "  {} {arrow}|\"{}\"| {}",
                ids.by_name[from.as_str()],
                edge_label(endpoint, call),
                ids.by_name[call.to.as_str()]
            );
            if bad_edges.contains(&call.span) {
                red_links.push(index);
            }
            index += 1;
        }
    }
    let user = ids.fresh("user");
    let _ = writeln!(
        out,
        "  {user}((user)) -->|\"{}\"| {}",
        duration::format(graph.entry.timeout),
        ids.by_name[graph.entry.service.as_str()]
    );

    for index in red_links {
        let _ = writeln!(out, "  linkStyle {index} stroke:red,stroke-width:2px");
    }
    let bad: Vec<&String> = names
        .iter()
        .filter(|name| bad_services.contains(*name))
        .map(|name| &ids.by_name[*name])
        .collect();
    if !bad.is_empty() {
        out.push_str("  classDef bad fill:#fdd,stroke:#c00\n");
        for id in bad {
            let _ = writeln!(out, "  class {id} bad");
        }
    }
    out
}

/// The calls and services with an error or warning: what the chart draws red. Infos are left
/// alone, as they ask for nothing to change. A call is known by its place in the file, not by
/// its two ends: a service may call another twice, and only the call at fault is drawn red.
/// A finding on one endpoint (`gateway/checkout`) reddens its service, the node the chart has.
fn offenders<'r>(graph: &Graph, report: &'r Report) -> (BTreeSet<Span>, BTreeSet<&'r str>) {
    let mut edges = BTreeSet::new();
    let mut services = BTreeSet::new();
    for finding in report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
    {
        if let (Some(_), Some(_), Some(span)) = (&finding.from, &finding.to, finding.span) {
            edges.insert(span);
        }
        if let Some(service) = &finding.service {
            let endpoint_of = service.rsplit_once('/').filter(|(name, _)| {
                !graph.services.contains_key(service.as_str()) && graph.services.contains_key(*name)
            });
            services.insert(endpoint_of.map_or(service.as_str(), |(name, _)| name));
        }
    }
    (edges, services)
}

/// `1s x2`, and `checkout: 1s x2` for a call of the caller's endpoint `checkout`.
fn edge_label(endpoint: Option<&str>, call: &Call) -> String {
    let timeout = call
        .timeout
        .map_or_else(|| "no timeout".to_string(), duration::format);
    let mut label = format!("{timeout} x{}", call.max_attempts);
    if let Some(endpoint) = endpoint {
        label.insert_str(0, &format!("{}: ", self::label(endpoint)));
    }
    if call.count > 1 {
        let _ = write!(label, ", count {}", call.count);
    }
    label
}

/// A name as text inside a quoted Mermaid label, where `"` would end the label and `#` starts
/// an entity code.
fn label(name: &str) -> String {
    name.replace('#', "#35;").replace('"', "#quot;")
}

/// Node ids, unique and safe for Mermaid, for names that may hold any character TOML allows in
/// a key (`a-b` and `a.b` would otherwise both become `a_b`).
#[derive(Default)]
struct NodeIds {
    by_name: BTreeMap<String, String>,
    taken: HashSet<String>,
}

impl NodeIds {
    fn assign(&mut self, name: &str) {
        if !self.by_name.contains_key(name) {
            let id = self.fresh(name);
            self.by_name.insert(name.to_string(), id);
        }
    }

    fn fresh(&mut self, name: &str) -> String {
        let mut base: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let starts_badly = base.chars().next().is_none_or(|c| c.is_ascii_digit());
        if starts_badly || RESERVED.contains(&base.to_ascii_lowercase().as_str()) {
            base.insert_str(0, "s_");
        }
        let mut id = base.clone();
        let mut n = 2;
        while self.taken.contains(&id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        self.taken.insert(id.clone());
        id
    }
}
