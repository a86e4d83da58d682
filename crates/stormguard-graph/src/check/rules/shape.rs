//! Rules on the graph's shape rather than on any one setting.

use super::{Findings, Said};
use crate::check::figure::Figure;
use crate::check::figures::Model;
use crate::report::Severity;

/// Every shape rule.
pub(super) fn on_graph(model: &Model<'_>, out: &mut Findings) {
    call_cycle(model, out);
}

/// `call-cycle` (error): the calls form a cycle, so one request can circle until every timeout
/// on the way expires, its retries multiplying on each lap. Reported once per call that closes a
/// cycle in a depth-first search from the entry (then from the other services, in name order),
/// on that call; removing those calls leaves no cycle, and the figures are computed without
/// them.
fn call_cycle(model: &Model<'_>, out: &mut Findings) {
    for cycle in &model.cycles {
        let name = |s: usize| model.nodes[s].name.as_str();
        let mut names: Vec<&str> = cycle.path.iter().map(|&s| name(s)).collect();
        if cycle.len > cycle.path.len() {
            names.insert(cycle.path.len() / 2, "...");
        }
        names.push(name(cycle.path[0]));
        let from = name(cycle.service);
        let to = name(cycle.path[0]);
        out.on_call_of(
            model,
            cycle.service,
            cycle.call,
            Said {
                rule: "call-cycle",
                severity: Severity::Error,
                message: format!(
                    "the calls {} form a cycle of {} service{}: one request can circle until \
                     every timeout on the way expires, its retries multiplying on each lap; the \
                     figures leave this call out",
                    names.join(" -> "),
                    cycle.len,
                    if cycle.len == 1 { "" } else { "s" }
                ),
                fix: format!("remove the call from {from} to {to}, or break the cycle elsewhere"),
                value: Some(Figure::Number(cycle.len as f64)),
                limit: None,
                // Which call to remove is a question of design, not a value to write.
                edits: Vec::new(),
            },
        );
    }
}
