//! The report as SARIF 2.1.0, so GitHub code scanning shows each finding on the line of the
//! graph file that causes it, in the pull request that changes it.

use serde_json::{json, Value};

use crate::check::RULES;
use crate::report::{Finding, Report, Severity};

/// The report as a SARIF 2.1.0 log for `file` (the path as given, which code scanning resolves
/// against the repository root): one run of the `stormguard` tool, every rule declared, and each
/// finding located at the line and column of its call or service table (line 1 when the finding
/// has no place in the file).
pub fn sarif(report: &Report, file: &str) -> String {
    // SARIF wants the rules declared up front (viewers show the description and let users
    // filter by rule), and listing all of them, not only those that fired, lets code scanning
    // close an alert once it is fixed.
    let rules: Vec<Value> = RULES
        .iter()
        .map(|rule| {
            json!({
                "id": rule.id,
                "shortDescription": { "text": rule.summary },
                "defaultConfiguration": { "level": level(rule.severity) },
            })
        })
        .collect();
    let results: Vec<Value> = report.findings.iter().map(|f| result(f, file)).collect();
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

fn result(finding: &Finding, file: &str) -> Value {
    let span = finding.span.unwrap_or_default();
    let mut result = json!({
        "ruleId": finding.rule,
        "level": level(finding.severity),
        "message": { "text": format!("{} Fix: {}", finding.message, finding.fix) },
        "locations": [{
            "physicalLocation": {
                "artifactLocation": artifact(file),
                "region": {
                    "startLine": span.line.max(1),
                    "startColumn": span.column.max(1),
                },
            },
        }],
    });
    if let Some(index) = RULES.iter().position(|rule| rule.id == finding.rule) {
        // Lets viewers find the rule without matching ids; left out for a rule this table lacks,
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
