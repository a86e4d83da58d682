//! The checks: the model's figures and every rule, over a [`Graph`].
//!
//! Split in two because the rules judge settings against figures that need the whole graph
//! (a timeout against its callee's worst case, attempts against the product along every path):
//! `figures` computes those once, in time linear in services plus calls, and `rules` reads
//! them. The rule ids and severities are part of the interface (issue 3's table); the text of
//! messages and fixes is not. [`RULES`] says what each rule computes, why it matters and how to
//! fix it, for `stormguard explain`.

use std::collections::BTreeMap;

use crate::model::Graph;
use crate::report::{Report, ServiceFigures, Severity, Summary};
use figure::Figure;

pub use rules::docs::{rule_doc, RuleDoc, Threshold, RULES};

mod figure;
mod figures;
mod rules;
#[cfg(test)]
mod tests;

/// Checks `graph`: the figures of every service the entry reaches (and of each endpoint of those
/// that have endpoints), and every finding, ordered by service name, then endpoint (in file
/// order), then call order (a service's own findings first), then severity (errors first).
///
/// Never fails and never hangs: a cycle is a `call-cycle` finding and its closing calls are left
/// out of the figures; a call to a service not in the graph (which the parser refuses) is judged
/// on its own settings only. Figures are rounded to the precision they are reported at (a time
/// to the microsecond, anything else to nine significant digits), so they carry no float noise;
/// the rules judge the unrounded figures. Runs in time linear in services plus calls, so a graph of 10,000
/// services and 50,000 calls is checked in milliseconds.
pub fn check(graph: &Graph) -> Report {
    let model = figures::Model::new(graph);
    let mut findings = rules::run(&model);
    agree_on_attempts(&mut findings);
    let services = (0..model.services.len())
        .filter_map(|s| Some((model.services[s].name.clone(), service_figures(&model, s)?)))
        .collect();
    let endpoints = (0..model.nodes.len())
        .filter(|&n| model.reachable[n] && model.nodes[n].endpoint.is_some())
        .map(|n| {
            let figures = ServiceFigures {
                worst_case_ms: Figure::Ms(model.worst_case_ms[n]).reported(),
                amplification: Figure::Number(model.amplification[n]).reported(),
                sustained_amplification: Figure::Number(model.sustained[n]).reported(),
                depth: model.depth[n],
            };
            (model.nodes[n].name.clone(), figures)
        })
        .collect();
    let mut summary = Summary::default();
    for finding in &findings {
        match finding.severity {
            Severity::Error => summary.errors += 1,
            Severity::Warning => summary.warnings += 1,
            Severity::Info => summary.infos += 1,
        }
    }
    Report {
        findings,
        services,
        endpoints,
        summary,
    }
}

/// Findings that ask different values of one call's `max_attempts` (`too-many-attempts` 2
/// where `layered-retries` or `retry-amplification` asks 1) say the smallest in their `fix`: a
/// reader given two values for one setting does not know which to write. Every rule that sets
/// attempts asks for at most so many, so the smallest satisfies each of them, and it is what
/// `check --fix` ends with (it writes the value of the finding it ranks first, and the others
/// fire again until the smallest is written).
///
/// Only the text: the edits stay as each rule asks, so that `--fix` names, for each value it
/// writes, the rule that asked for it (an attempt taken off because a service was assumed to
/// have one instance is not one the graph's own figures asked for, and `export` tells the two
/// apart by that name).
fn agree_on_attempts(findings: &mut [crate::report::Finding]) {
    type Setting = (String, Option<String>, Option<usize>);
    // The least value asked for each setting, and the rule asking it: of several, the more
    // severe.
    let mut least: BTreeMap<Setting, (u32, &'static str, Severity)> = BTreeMap::new();
    for finding in findings.iter() {
        for edit in finding.edits.iter().filter(|e| e.key == "max_attempts") {
            let Some(value) = edit.value.as_deref().and_then(|v| v.parse::<u32>().ok()) else {
                continue;
            };
            let setting = (edit.from.clone(), edit.endpoint.clone(), edit.index);
            let held = least
                .entry(setting)
                .or_insert((value, finding.rule, finding.severity));
            if value < held.0 || (value == held.0 && finding.severity > held.2) {
                *held = (value, finding.rule, finding.severity);
            }
        }
    }
    for finding in findings.iter_mut() {
        let mut told = Vec::new();
        for edit in finding.edits.iter().filter(|e| e.key == "max_attempts") {
            let setting = (edit.from.clone(), edit.endpoint.clone(), edit.index);
            let (Some(&(value, rule, _)), Some(asked)) = (
                least.get(&setting),
                edit.value.as_deref().and_then(|v| v.parse::<u32>().ok()),
            ) else {
                continue;
            };
            if value < asked {
                told.push((edit.from.clone(), edit.to.clone(), value, rule, asked));
            }
        }
        match told.as_slice() {
            [] => {}
            // A fix that is this one setting (with, at most, another way out, which the value
            // agreed makes moot): the value agreed in its place.
            [(_, _, value, rule, asked)]
                if finding.edits.len() == 1 && {
                    let asked = format!("max_attempts = {asked}");
                    finding.fix == asked || finding.fix.starts_with(&format!("{asked}, or "))
                } =>
            {
                finding.fix = format!(
                    "max_attempts = {value}, as {rule} asks (which does for this rule too)"
                );
            }
            _ => {
                for (from, to, value, rule, _) in told {
                    finding.fix.push_str(&format!(
                        "; max_attempts = {value} on {from} -> {to}, as {rule} asks (which does \
                         for this rule too)"
                    ));
                }
            }
        }
    }
}

/// The attempts one user request brings each service and each call when nothing fails: one
/// attempt on every call, times its `count`, in each endpoint's share (the model's fan-out).
///
/// Why: a run's attempts read only against this. Above it is amplification, retries and hedges
/// that cost the service work; below it, requests that never got there because something above
/// failed, which is no improvement. `sim` judges "attempts" and "per user" by what exceeds it,
/// so that a fix that lets more requests through is not called worse for it.
///
/// # Example
///
/// ```
/// let graph = stormguard_graph::parse(
///     "g.toml",
///     r#"
/// [entry]
/// service = "web"
/// [services.web]
/// [[services.web.calls]]
/// to = "db"
/// timeout = "100ms"
/// count = 2
/// max_attempts = 3
/// [services.db]
/// "#,
/// )
/// .unwrap();
/// let normal = stormguard_graph::check::normal_load(&graph);
/// assert_eq!(normal.services["db"], 2.0);
/// assert_eq!(normal.calls["web->db"], 2.0);
/// ```
pub fn normal_load(graph: &Graph) -> NormalLoad {
    let model = figures::Model::new(graph);
    let mut load = NormalLoad::default();
    for s in 0..model.services.len() {
        if model.service_nodes[s].clone().any(|n| model.reachable[n]) {
            let name = model.services[s].name.clone();
            load.services
                .insert(name, model.service_sum(s, &model.fan_out));
        }
    }
    for (n, node) in model.nodes.iter().enumerate() {
        if !model.reachable[n] {
            continue;
        }
        for (i, call) in node.calls.iter().enumerate() {
            if model.in_cycle[n][i] {
                continue;
            }
            let from = &model.services[node.service].name;
            *load
                .calls
                .entry(format!("{from}->{}", call.to))
                .or_default() += model.fan_out[n] * f64::from(call.count);
        }
    }
    load
}

/// What [`normal_load`] returns: attempts per user request when nothing fails.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NormalLoad {
    /// By service name, every endpoint of the service together; services the entry does not
    /// reach are absent.
    pub services: BTreeMap<String, f64>,
    /// By call edge, `FROM->TO`, the calls of one service to another summed (as `sim` counts
    /// them).
    pub calls: BTreeMap<String, f64>,
}

/// The figures of service `s` as a whole, `None` when the entry reaches none of its endpoints:
/// the worst case and depth of its worst and deepest endpoint, and the attempts all of them
/// receive. For a service without endpoints, those of its one implicit endpoint.
fn service_figures(model: &figures::Model<'_>, s: usize) -> Option<ServiceFigures> {
    let reached: Vec<usize> = model.service_nodes[s]
        .clone()
        .filter(|&n| model.reachable[n])
        .collect();
    if reached.is_empty() {
        return None;
    }
    let worst = reached
        .iter()
        .map(|&n| model.worst_case_ms[n])
        .fold(0.0, f64::max);
    Some(ServiceFigures {
        worst_case_ms: Figure::Ms(worst).reported(),
        amplification: Figure::Number(model.service_sum(s, &model.amplification)).reported(),
        sustained_amplification: Figure::Number(model.service_sum(s, &model.sustained)).reported(),
        depth: reached.iter().map(|&n| model.depth[n]).max().unwrap_or(0),
    })
}
