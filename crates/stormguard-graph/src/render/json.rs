//! The report as JSON, for scripts and CI: the shape of the issue, stable across versions.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::{Finding, Report, ServiceFigures, Summary};

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
/// let located = stormguard_graph::render::json_in(&report, "g.toml");
/// let json: serde_json::Value = serde_json::from_str(&located).unwrap();
/// assert_eq!(json["findings"][0]["source"]["file"], "g.toml");
/// assert_eq!(json["findings"][0]["source"]["line"], 4);
/// ```
pub fn json_in(report: &Report, file: &str) -> String {
    // The report's own shape, field for field and in its order, with a `source` in each
    // finding: a `serde_json::Value` would have sorted every object's keys.
    #[derive(Serialize)]
    struct Placed<'a> {
        #[serde(flatten)]
        finding: &'a Finding,
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<Source<'a>>,
    }
    #[derive(Serialize)]
    struct Source<'a> {
        file: &'a str,
        line: usize,
        column: usize,
    }
    #[derive(Serialize)]
    struct Located<'a> {
        findings: Vec<Placed<'a>>,
        services: &'a BTreeMap<String, ServiceFigures>,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        endpoints: &'a BTreeMap<String, ServiceFigures>,
        summary: &'a Summary,
    }
    let located = Located {
        findings: report
            .findings
            .iter()
            .map(|finding| Placed {
                finding,
                source: finding.span.map(|span| Source {
                    file,
                    line: span.line,
                    column: span.column,
                }),
            })
            .collect(),
        services: &report.services,
        endpoints: &report.endpoints,
        summary: &report.summary,
    };
    let mut out = serde_json::to_string_pretty(&located)
        .expect("a Report always serializes: string keys and plain fields only");
    out.push('\n');
    out
}
