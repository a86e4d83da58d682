//! What `check` found: findings, and the figures of each service.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Span;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to fix.
    Info,
    /// Likely to hurt under failure.
    Warning,
    /// Will break: fix before it ships.
    Error,
}

/// One thing wrong in the graph: what, why it matters, and the value to set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// The rule's id, e.g. `retry-amplification` (part of the interface).
    pub rule: &'static str,
    /// How bad.
    pub severity: Severity,
    /// The calling service, for a finding on a call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The called service, for a finding on a call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The service, for a finding on a service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// What is wrong, in numbers, and why it matters, in one sentence.
    pub message: String,
    /// The fix: the value to set.
    pub fix: String,
    /// The figure the rule measured (ms, attempts, a rate), where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The limit it was measured against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// Where in the file (the call's or service's table).
    #[serde(skip)]
    pub span: Option<Span>,
}

/// The figures of one service.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ServiceFigures {
    /// The longest it may keep working on one request, in ms.
    pub worst_case_ms: f64,
    /// Worst-case attempts it receives per user request when everything below the entry fails.
    pub amplification: f64,
    /// The same with retry budgets holding (`1 + ratio` per budgeted edge).
    pub sustained_amplification: f64,
    /// Calls from the entry on the longest path to it (the entry is 0).
    pub depth: u32,
}

/// Counts of findings by severity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Errors.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
    /// Infos.
    pub infos: usize,
}

/// Everything `check` found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Findings, grouped by service then call order, errors first within a place.
    pub findings: Vec<Finding>,
    /// Figures by service (services unreachable from the entry are absent).
    pub services: BTreeMap<String, ServiceFigures>,
    /// Counts by severity.
    pub summary: Summary,
}
