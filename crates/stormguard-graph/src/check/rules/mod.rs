//! The rules: each reads the model's figures or one call's settings and reports what is wrong,
//! why it matters, and the value to set. Split by theme (timeouts, retries, the graph's shape),
//! with the plumbing they share here: where a finding sits, and how numbers are written.

use std::cmp::Reverse;
use std::fmt::Write;
use std::time::Duration;

use stormguard::duration::format;

use crate::parse::ranges::{Bounds, TIMEOUT};

use super::figure::Figure;
use super::figures::{Model, Target};
use crate::model::{Call, CheckConfig};
use crate::report::{Edit, Finding, Severity};

mod amplification;
mod attempts;
mod capacity;
mod deadlines;
pub(super) mod docs;
mod fit;
mod queues;
mod retries;
mod shape;
mod timeouts;

/// Runs every rule over `model`; findings ordered by service name, then endpoint, then call
/// index (a service's own findings before its calls'), then severity (errors first), then rule
/// id.
pub(super) fn run(model: &Model<'_>) -> Vec<Finding> {
    let mut out = Findings::default();
    let mut walker = amplification::Walker::new(model);
    for svc in 0..model.services.len() {
        for s in model.service_nodes[svc].clone() {
            for i in 0..model.nodes[s].calls.len() {
                let at = CallAt::new(model, s, i);
                timeouts::on_call(&at, &mut out);
                deadlines::on_call(&at, &mut out);
                retries::on_call(&at, &mut out);
                attempts::on_call(&at, &mut out);
            }
            deadlines::on_node(model, s, &mut out);
        }
        amplification::on_service(model, svc, &mut walker, &mut out);
        capacity::on_service(model, svc, &mut out);
        queues::on_service(model, svc, &mut out);
    }
    timeouts::on_graph(model, &mut out);
    shape::on_graph(model, &mut out);
    out.sorted()
}

/// One call, with what the rules look up about it.
pub(super) struct CallAt<'m, 'g> {
    /// The model.
    pub model: &'m Model<'g>,
    /// The calling node's index.
    pub service: usize,
    /// The call's index among its node's calls.
    pub index: usize,
    /// The call.
    pub call: &'g Call,
    /// Where it goes, if the called service is in the graph.
    pub callee: Option<Target>,
}

impl<'m, 'g> CallAt<'m, 'g> {
    fn new(model: &'m Model<'g>, service: usize, index: usize) -> Self {
        CallAt {
            model,
            service,
            index,
            call: &model.nodes[service].calls[index],
            callee: model.callee[service][index],
        }
    }

    /// The thresholds.
    pub fn config(&self) -> &CheckConfig {
        &self.model.graph.check
    }

    /// The caller's name (`gateway`, or `gateway/checkout` for an endpoint's call).
    pub fn from(&self) -> &'m str {
        &self.model.nodes[self.service].name
    }

    /// The called service's own settings (instances, latency), if it is in the graph.
    pub fn callee_service(&self) -> Option<&'g crate::model::Service> {
        self.callee.map(|t| self.model.services[t.service])
    }

    /// `from -> to`, as messages name a call.
    pub fn edge(&self) -> String {
        call_name(self.model, self.service, self.index)
    }

    /// An edit setting `key` of this call to the TOML text `value`.
    pub fn set(&self, key: &'static str, value: &str) -> Edit {
        set(self.model, self.service, self.index, key, value)
    }

    /// An edit removing `key` from this call.
    pub fn remove(&self, key: &'static str) -> Edit {
        let node = &self.model.nodes[self.service];
        Edit::remove(
            &self.model.services[node.service].name,
            &self.call.to,
            self.index,
            key,
        )
        .in_endpoint(node.endpoint)
    }

    /// Whether the call closes a cycle: then `call-cycle` says what is wrong, and the rules that
    /// weigh it against its callee's figures, which leave it out, stay silent.
    pub fn closes_cycle(&self) -> bool {
        self.model.in_cycle[self.service][self.index]
    }
}

/// Call `i` of node `s` as messages name it: `from -> to`, with the caller's endpoint
/// (`gateway/checkout -> orders`) and the callee's when the call names one (`-> orders/place`),
/// and the call's number among the caller's calls (`from -> to (call 2)`) when the caller calls
/// `to` more than once, so that a fix never leaves the reader to guess which one.
pub(super) fn call_name(model: &Model<'_>, s: usize, i: usize) -> String {
    let mut name = String::new();
    push_call_name(&mut name, model, s, i);
    name
}

/// [`call_name`], appended to `out`: the amplification rule names many calls per finding, in
/// graphs with a finding per service, so it writes them without a string each.
pub(super) fn push_call_name(out: &mut String, model: &Model<'_>, s: usize, i: usize) {
    let node = &model.nodes[s];
    let call = &node.calls[i];
    let to = &call.to;
    out.push_str(&node.name);
    out.push_str(" -> ");
    out.push_str(to);
    if let Some(endpoint) = &call.endpoint {
        out.push('/');
        out.push_str(endpoint);
    }
    if node.calls.iter().filter(|c| &c.to == to).nth(1).is_some() {
        let _ = write!(out, " (call {})", i + 1);
    }
}

/// An edit setting `key` of call `i` of node `s` to the TOML text `value`.
pub(super) fn set(model: &Model<'_>, s: usize, i: usize, key: &'static str, value: &str) -> Edit {
    let node = &model.nodes[s];
    let service = model.services[node.service];
    Edit::set(&service.name, &node.calls[i].to, i, key, value).in_endpoint(node.endpoint)
}

/// A timeout as a TOML value: `"250ms"`, within a timeout's range (1 ms to 1 h, see
/// [`crate::parse::ranges::TIMEOUT`]), so that a fix never writes a file its parser refuses: a
/// callee whose p99.9 is past an hour gets the longest timeout a file may hold, and the finding
/// that remains says the rest.
pub(super) fn duration_value(duration: Duration) -> String {
    let Bounds::Duration(min, max) = TIMEOUT.bounds else {
        unreachable!("a timeout's range is of durations")
    };
    format!("\"{}\"", format(duration.clamp(min, max)))
}

/// Items joined as a person lists them: `a`, `a and b`, `a, b and c`.
pub(super) fn listed(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// What a finding says, before it is placed.
pub(super) struct Said {
    /// The rule's id.
    pub rule: &'static str,
    /// How bad.
    pub severity: Severity,
    /// What is wrong, in numbers, and why it matters.
    pub message: String,
    /// The value to set.
    pub fix: String,
    /// The figure measured.
    pub value: Option<Figure>,
    /// The limit it was measured against.
    pub limit: Option<Figure>,
    /// The fix as settings `check --fix` writes; empty when no value makes it.
    pub edits: Vec<Edit>,
}

type SortKey = (usize, Option<usize>, Reverse<Severity>, &'static str);

/// Findings as the rules report them, each with the place it sorts by.
#[derive(Default)]
pub(super) struct Findings {
    items: Vec<(SortKey, Finding)>,
}

impl Findings {
    /// A finding on a call.
    pub fn on_call(&mut self, at: &CallAt<'_, '_>, said: Said) {
        self.on_call_of(at.model, at.service, at.index, said);
    }

    /// A finding on call `index` of node `service`.
    pub fn on_call_of(&mut self, model: &Model<'_>, service: usize, index: usize, said: Said) {
        let from = &model.nodes[service];
        let call = &from.calls[index];
        let key = (service, Some(index), Reverse(said.severity), said.rule);
        self.items.push((
            key,
            Finding {
                rule: said.rule,
                severity: said.severity,
                from: Some(from.name.clone()),
                to: Some(call.to.clone()),
                service: None,
                message: said.message,
                fix: said.fix,
                value: said.value.map(Figure::reported),
                limit: said.limit.map(Figure::reported),
                span: Some(call.span),
                edits: said.edits,
            },
        ));
    }

    /// A finding on a node: a service without endpoints, or one endpoint of one.
    pub fn on_node(&mut self, model: &Model<'_>, node: usize, said: Said) {
        let place = &model.nodes[node];
        self.on_place(node, place.name.clone(), place.span, said);
    }

    /// A finding on a service as a whole, every endpoint of it.
    pub fn on_service(&mut self, model: &Model<'_>, service: usize, said: Said) {
        let svc = model.services[service];
        let first = model.service_nodes[service].start;
        self.on_place(first, svc.name.clone(), svc.span, said);
    }

    fn on_place(&mut self, node: usize, name: String, span: crate::model::Span, said: Said) {
        let key = (node, None, Reverse(said.severity), said.rule);
        self.items.push((
            key,
            Finding {
                rule: said.rule,
                severity: said.severity,
                from: None,
                to: None,
                service: Some(name),
                message: said.message,
                fix: said.fix,
                value: said.value.map(Figure::reported),
                limit: said.limit.map(Figure::reported),
                span: Some(span),
                edits: said.edits,
            },
        ));
    }

    fn sorted(self) -> Vec<Finding> {
        // Sorting the keys alone moves a few bytes per finding instead of a whole finding;
        // stable, so two findings of one rule at one place keep the order they were found in.
        let mut order: Vec<(SortKey, usize)> = self
            .items
            .iter()
            .enumerate()
            .map(|(i, (key, _))| (*key, i))
            .collect();
        order.sort_by(|a, b| a.0.cmp(&b.0));
        let mut findings: Vec<Option<Finding>> =
            self.items.into_iter().map(|(_, f)| Some(f)).collect();
        order
            .into_iter()
            .filter_map(|(_, i)| findings[i].take())
            .collect()
    }
}

/// A figure in ms as a duration text, rounded up to a whole ms so that a limit printed from it
/// is never below the figure; "unbounded" when it overflowed.
pub(super) fn ms_text(ms: f64) -> String {
    if !ms.is_finite() || ms >= u64::MAX as f64 {
        return "unbounded".to_string();
    }
    format(Duration::from_millis(ms.ceil() as u64))
}

/// A duration rounded up to a whole ms, the precision a fix is given in.
pub(super) fn ceil_ms(ms: f64) -> Duration {
    if !ms.is_finite() || ms >= u64::MAX as f64 {
        return Duration::MAX;
    }
    Duration::from_millis(ms.ceil().max(0.0) as u64)
}

/// A count or factor: whole numbers without decimals (243), others with two (1.61), and
/// numbers past a billion in scientific notation (1.000e300), which says as much and does not
/// print three hundred digits.
pub(super) fn num_text(x: f64) -> String {
    if !x.is_finite() {
        "unbounded".to_string()
    } else if x.abs() >= 1e9 {
        format!("{x:.3e}")
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// A rate as a percentage with enough digits to tell 0.1% from 0.12%.
pub(super) fn percent_text(rate: f64) -> String {
    let percent = rate * 100.0;
    if percent >= 10.0 {
        format!("{percent:.0}%")
    } else if percent >= 1.0 {
        format!("{percent:.1}%")
    } else {
        format!("{percent:.2}%")
    }
}

/// The retry budget every fix recommends: one retry per ten requests, so that a failing
/// dependency gets at most 10% more load, with a floor so that a quiet service can still retry.
pub(super) const BUDGET_VALUE: &str = "{ ratio = 0.1, min_per_sec = 10 }";
