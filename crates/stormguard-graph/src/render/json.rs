//! The report as JSON, for scripts and CI: the shape of the issue, stable across versions.

use crate::report::Report;

/// The report as pretty-printed JSON: `{"findings": [...], "services": {...}, "summary": {...}}`,
/// fields a finding does not have left out, so scripts can test for presence instead of `null`.
///
/// The shape is the serde derive of [`Report`], so the JSON cannot drift from the types; figures
/// that are not finite (an unbounded amplification on a cycle) become `null`, as JSON has no
/// infinity.
pub fn json(report: &Report) -> String {
    let mut out = serde_json::to_string_pretty(report)
        .expect("a Report always serializes: string keys and plain fields only");
    out.push('\n');
    out
}
