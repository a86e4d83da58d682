//! From an inventory to a graph: the imported policies on calls (of a base graph, or of a
//! placeholder caller), written as TOML with a comment naming the source of every value, or as
//! JSON with a `source` per value.
//!
//! ## How
//! `placement` names every destination and decides which route's policy each call gets;
//! `clamp` brings a policy within what the graph parser accepts, noting each change; the
//! calls come from a base graph (`base`, edited in place with its comments kept, and a
//! sidecar made explicit where the application retries on top of the mesh: `stack`) or from
//! one placeholder caller (`placeholder`). `summary` writes the header and the trailing list
//! of what was not read; `sources` maps each written line back to its origin, and `json`
//! converts the same graph.
//!
//! ## The contract
//! The text always parses with [`stormguard_graph::parse()`]: a value the parser would refuse is
//! clamped or left out with a note, never written; [`assemble`] checks the result and fails
//! rather than hand `check` a graph that does not load.

use std::collections::BTreeMap;

use crate::error::ImportError;
use crate::inventory::{ImportFinding, Inventory, Unread};
use crate::source::Origin;

mod base;
mod calls;
mod clamp;
mod findings;
mod json;
mod placeholder;
mod placement;

pub(crate) use placement::{Key as DestinationKey, Names};
mod sources;
mod stack;
mod summary;
#[cfg(test)]
mod tests;

/// The placeholder caller of a graph imported without a base: it stands for every client of
/// the routes, since who calls whom is in no manifest.
pub const PLACEHOLDER: &str = "mesh-callers";

/// Where the calls come from.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A base graph (its file name and text) whose calls receive the imported policies of
    /// their callees' routes; from `--base`, or built from Prometheus's edges. `None`: each
    /// route is a call from a placeholder caller.
    pub base: Option<(String, String)>,
    /// The paths imported, as given, for the output's header.
    pub inputs: Vec<String>,
}

/// Which line of the written TOML came from where: `check` maps a finding's line through it to
/// the manifest's line for SARIF.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceMap {
    /// Origin by 1-based TOML line.
    pub lines: BTreeMap<usize, Origin>,
}

impl SourceMap {
    /// The origin of TOML line `line`, if it has one.
    pub fn locate(&self, line: usize) -> Option<&Origin> {
        self.lines.get(&line)
    }
}

/// An imported graph.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The graph file, with a comment per imported value.
    pub toml: String,
    /// The same graph as JSON, with a `source` per imported value.
    pub json: serde_json::Value,
    /// TOML line to origin.
    pub sources: SourceMap,
    /// Findings only the imported settings make possible.
    pub findings: Vec<ImportFinding>,
    /// What was not read.
    pub unread: Vec<Unread>,
}

/// A table of the written graph that holds imported values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Table {
    /// `[services.NAME]`.
    Service(String),
    /// `[services.NAME.endpoints.EP]`.
    Endpoint {
        /// The service.
        service: String,
        /// The endpoint.
        endpoint: String,
    },
    /// Call `index` of a service (of its endpoint `endpoint`, when it has one).
    Call {
        /// The caller.
        service: String,
        /// The caller's endpoint.
        endpoint: Option<String>,
        /// The call's index among those calls.
        index: usize,
    },
}

/// One imported value of the written graph (`key`), or a call's policy as a whole (no key: the
/// call's table header), and where it came from.
#[derive(Clone, Debug, PartialEq)]
struct Annotation {
    /// Its table.
    pub table: Table,
    /// Its key; `None` for the table itself.
    pub key: Option<String>,
    /// Its origin.
    pub origin: Origin,
}

/// What the writers gather on the way: notes, findings, and where each value goes.
struct Context<'i> {
    /// The inventory.
    pub inv: &'i Inventory,
    /// Every destination's graph name.
    pub names: placement::Names,
    /// Notes of the assembler (clamps, routes not taken), after the readers'.
    pub notes: Vec<Unread>,
    /// Findings of the assembler, after the readers'.
    pub findings: Vec<ImportFinding>,
    /// Every imported value written.
    pub annotations: Vec<Annotation>,
    /// The policies the graph parser accepted (see [`clamp::clamp`]).
    pub accepted: std::collections::HashSet<String>,
}

/// The graph names of the services some call of the written graph goes to; `None` for a body
/// that does not parse (reported later).
fn called_services(body: &str) -> Option<std::collections::HashSet<String>> {
    let graph = stormguard_graph::parse("imported graph", body).ok()?;
    Some(
        graph
            .services
            .values()
            .flat_map(|service| service.each_endpoint())
            .flat_map(|endpoint| endpoint.calls.iter().map(|call| call.to.clone()))
            .collect(),
    )
}

/// The readers' findings about destinations that some call of the graph reaches: a base graph
/// says who calls whom, and a finding on a destination no call goes to (Istio's default
/// retries on calls to the entry service, which only users call) is about calls that do not
/// happen. A finding on no destination, or a body that does not parse, keeps them all.
fn called_only(
    cx: &Context<'_>,
    called: Option<&std::collections::HashSet<String>>,
    findings: Vec<ImportFinding>,
) -> Vec<ImportFinding> {
    let Some(called) = called else {
        return findings;
    };
    findings
        .into_iter()
        .filter(|finding| {
            finding
                .host
                .as_ref()
                .is_none_or(|host| called.contains(cx.names.of(host).as_str()))
        })
        .collect()
}

/// A note for each Istio `DestinationRule` read from a file that no call of the graph goes to:
/// its values are on no call, and were dropped without a word (a rule for a host no route,
/// Service or base call names; a host misspelt).
fn unused_destinations(
    cx: &Context<'_>,
    called: Option<&std::collections::HashSet<String>>,
) -> Vec<Unread> {
    let Some(called) = called else {
        return Vec::new();
    };
    cx.inv
        .destinations
        .iter()
        .zip(&cx.names.destinations)
        .filter(|(destination, name)| {
            // Istio's alone: an Envoy cluster may be reached in ways the import does not
            // follow (an aggregate cluster's members, a review found), and a note that no
            // call goes to it would be false.
            destination.system == crate::inventory::System::Istio
                && !called.contains(name.as_str())
                && destination
                    .policy
                    .settings
                    .iter()
                    .any(|s| matches!(s.origin, Origin::File { .. }))
        })
        .map(|(destination, _)| {
            let resource = &destination.resource;
            let keys: Vec<&str> = destination
                .policy
                .settings
                .iter()
                .filter(|s| matches!(s.origin, Origin::File { .. }))
                .map(|s| s.key)
                .collect();
            let verb = if keys.len() == 1 { "is" } else { "are" };
            Unread {
                origin: destination.origin.clone(),
                what: format!(
                    "{} {} host {}",
                    resource.kind, resource.name, destination.host.name
                ),
                why: format!(
                    "no call of the graph goes to this host: no route, Service or base graph \
                     call among what was read names it, so its {} {verb} on no call",
                    keys.join(" and ")
                ),
            }
        })
        .collect()
}

/// Puts the inventory's policies on calls and writes the graph.
///
/// # Errors
/// A base graph that does not parse, at its line; a written graph that does not parse (a bug
/// of this module, reported rather than handed on).
pub fn assemble(inv: &Inventory, options: &Options) -> Result<Imported, ImportError> {
    let mut cx = Context {
        inv,
        names: placement::Names::new(inv),
        notes: Vec::new(),
        findings: Vec::new(),
        annotations: Vec::new(),
        accepted: std::collections::HashSet::new(),
    };
    let (how, body) = match &options.base {
        None => placeholder::write(&mut cx),
        Some((file, text)) => base::write(&mut cx, file, text)?,
    };
    let called = called_services(&body);
    let mut unread = inv.unread.clone();
    unread.append(&mut cx.notes);
    unread.extend(unused_destinations(&cx, called.as_ref()));
    let mut findings = called_only(&cx, called.as_ref(), inv.findings.clone());
    findings.append(&mut cx.findings);
    let mut toml = summary::header(inv, options, &how, unread.len(), findings.len());
    toml.push_str(&body);
    if !toml.ends_with('\n') {
        toml.push('\n');
    }
    toml.push_str(&summary::trailer(&unread, &findings));
    if let Err(error) = stormguard_graph::parse("imported graph", &toml) {
        return Err(ImportError::File {
            path: options
                .base
                .as_ref()
                .map_or_else(|| "import".to_string(), |(file, _)| file.clone()),
            message: format!("the imported graph does not parse ({error}); please report it"),
        });
    }
    let sources = sources::map(&toml, &cx.annotations);
    let json = json::convert(&toml, &cx.annotations);
    Ok(Imported {
        toml,
        json,
        sources,
        findings,
        unread,
    })
}
