//! The report as JSON, for scripts and CI: the shape of the issue, stable across versions.

use serde_json::{json, Value};

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

/// [`json()`] with each finding's place in `file`: a `source` of `file`, `line` and `column` (the
/// call's or service's table), as SARIF places it and as `check` on imported manifests gives
/// it. Why: in a graph of a hundred calls, a script (or an editor's problem list) needs the
/// line, and only SARIF had it.
///
/// ```
/// let graph = stormguard_graph::parse(
///     "g.toml",
///     "[entry]\nservice = \"a\"\n[services.a]\n[[services.a.calls]]\nto = \"b\"\n[services.b]\n",
/// )
/// .unwrap();
/// let report = stormguard_graph::check::check(&graph);
/// let json: serde_json::Value =
///     serde_json::from_str(&stormguard_graph::render::json_in(&report, "g.toml")).unwrap();
/// assert_eq!(json["findings"][0]["source"]["file"], "g.toml");
/// assert_eq!(json["findings"][0]["source"]["line"], 4);
/// ```
pub fn json_in(report: &Report, file: &str) -> String {
    let mut value = serde_json::to_value(report)
        .expect("a Report always serializes: string keys and plain fields only");
    if let Some(Value::Array(findings)) = value.get_mut("findings") {
        for (finding, of) in findings.iter_mut().zip(&report.findings) {
            if let (Value::Object(finding), Some(span)) = (finding, of.span) {
                finding.insert(
                    "source".to_string(),
                    json!({ "file": file, "line": span.line, "column": span.column }),
                );
            }
        }
    }
    let mut out = serde_json::to_string_pretty(&value).expect("a JSON value always serializes");
    out.push('\n');
    out
}
