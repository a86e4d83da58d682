//! The report as SARIF 2.1.0, so GitHub code scanning shows each finding on the line of the
//! graph file that causes it, in the pull request that changes it.
//!
//! [`sarif`] locates every finding in the one graph file checked; [`sarif_located`] takes a
//! place per finding, for a graph that was generated from other files (`stormguard check k8s/`
//! imports manifests and points each finding at the manifest line that set the value).

use serde_json::{json, Value};

use crate::check::RULES;
use crate::report::{Finding, Report, Severity};

/// Where a finding is shown: a file as code scanning resolves it (relative to the checkout, or
/// absolute) and a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: String,
    /// 1-based line (0 is taken as 1).
    pub line: usize,
    /// 1-based column (0 is taken as 1).
    pub column: usize,
}

/// A rule that is not one of `check`'s own ([`RULES`]) but has findings in the report (the
/// rules of an import, say), declared beside them so that viewers can show and filter it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraRule {
    /// Its id, as the findings name it.
    pub id: &'static str,
    /// One line on what it finds.
    pub summary: String,
    /// Its severity.
    pub severity: Severity,
}

/// The report as a SARIF 2.1.0 log for `file` (the path as given, which code scanning resolves
/// against the repository root): one run of the `stormguard` tool, every rule declared, and each
/// finding located at the line and column of its call or service table (line 1 when the finding
/// has no place in the file).
pub fn sarif(report: &Report, file: &str) -> String {
    let locations: Vec<Location> = report
        .findings
        .iter()
        .map(|f| {
            let span = f.span.unwrap_or_default();
            Location {
                file: file.to_string(),
                line: span.line,
                column: span.column,
            }
        })
        .collect();
    sarif_located(report, &locations, &[])
}

/// The report as a SARIF 2.1.0 log whose `i`th finding is shown at `locations[i]` (a finding
/// without one is shown at line 1 of the first location's file, or of `graph.toml`), and whose
/// rules are `check`'s and `extra` (an id of both is declared once, as `check`'s).
pub fn sarif_located(report: &Report, locations: &[Location], extra: &[ExtraRule]) -> String {
    // SARIF wants the rules declared up front (viewers show the description and let users
    // filter by rule), and listing all of them, not only those that fired, lets code scanning
    // close an alert once it is fixed.
    let mut declared: Vec<(&str, &str, Severity)> = RULES
        .iter()
        .map(|rule| (rule.id, rule.summary, rule.severity))
        .collect();
    for rule in extra {
        if !declared.iter().any(|(id, ..)| *id == rule.id) {
            declared.push((rule.id, &rule.summary, rule.severity));
        }
    }
    let rules: Vec<Value> = declared
        .iter()
        .map(|(id, summary, severity)| {
            json!({
                "id": id,
                "shortDescription": { "text": summary },
                "defaultConfiguration": { "level": level(*severity) },
            })
        })
        .collect();
    let fallback = Location {
        file: locations
            .first()
            .map_or_else(|| "graph.toml".to_string(), |l| l.file.clone()),
        line: 1,
        column: 1,
    };
    let results: Vec<Value> = report
        .findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let index = declared.iter().position(|(id, ..)| *id == f.rule);
            result(f, locations.get(i).unwrap_or(&fallback), index)
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "stormguard",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "results": results,
        }],
    });
    let mut out = serde_json::to_string_pretty(&log)
        .expect("a JSON value built from strings and integers always serializes");
    out.push('\n');
    out
}

fn result(finding: &Finding, location: &Location, rule_index: Option<usize>) -> Value {
    let mut result = json!({
        "ruleId": finding.rule,
        "level": level(finding.severity),
        "message": { "text": format!("{} Fix: {}", finding.message, finding.fix) },
        "locations": [{
            "physicalLocation": {
                "artifactLocation": artifact(&location.file),
                "region": {
                    "startLine": location.line.max(1),
                    "startColumn": location.column.max(1),
                },
            },
        }],
    });
    if let Some(index) = rule_index {
        // Lets viewers find the rule without matching ids; left out for a rule not declared,
        // since a wrong index is worse than none.
        result["ruleIndex"] = json!(index);
    }
    result
}

/// SARIF's word for a severity: it has no `info`, its `note` is the same thing.
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

#[cfg(test)]
pub(crate) fn rule_ids() -> Vec<&'static str> {
    RULES.iter().map(|rule| rule.id).collect()
}

/// Where the graph file is, as SARIF wants it: a relative path resolves against the checkout
/// (`%SRCROOT%`), which is how code scanning maps a result to a file in the repository; an
/// absolute one becomes a `file://` URI. The caller makes the path relative when it can.
fn artifact(file: &str) -> Value {
    let path = file.replace('\\', "/");
    if path.starts_with('/') {
        json!({ "uri": format!("file://{path}") })
    } else {
        let relative = path.trim_start_matches("./");
        json!({ "uri": relative, "uriBaseId": "%SRCROOT%" })
    }
}

#[cfg(test)]
pub(super) fn artifact_for_test(file: &str) -> Value {
    artifact(file)
}
