//! The report as SARIF 2.1.0, so GitHub code scanning shows each finding on the line of the
//! graph file that causes it, in the pull request that changes it.

use serde_json::{json, Value};

use crate::report::{Finding, Report, Severity};

/// Every rule of `check`, with its default severity and what it catches. SARIF wants the rules
/// declared up front (viewers show the description and let users filter by rule), and listing
/// all of them, not only those that fired, lets code scanning close an alert once it is fixed.
const RULES: [(&str, Severity, &str); 18] = [
    ("missing-timeout", Severity::Error, "A call has no timeout: a hung callee holds the caller forever."),
    ("missing-connect-timeout", Severity::Warning, "A call has no connect timeout: an unreachable host costs the whole request timeout."),
    ("timeout-inversion", Severity::Error, "The callee may keep working longer than the caller waits for it: the edge gives up while the back end still retries."),
    ("entry-budget", Severity::Error, "The entry service's worst case exceeds how long a user waits."),
    ("retry-amplification", Severity::Error, "Worst-case attempts at a service per user request exceed the limit: retries multiply down the stack."),
    ("layered-retries", Severity::Warning, "More than one layer on a path retries: retry at one point in the stack."),
    ("too-many-attempts", Severity::Warning, "More than two attempts on a call: zero or one retry is enough."),
    ("retry-without-backoff", Severity::Warning, "Retries without backoff hit a struggling service at once."),
    ("backoff-without-jitter", Severity::Warning, "Constant or exponential backoff without jitter: clients that fail together retry together."),
    ("retry-without-budget", Severity::Warning, "Retries with neither a retry budget nor a token bucket: an outage multiplies the load."),
    ("non-idempotent-retry", Severity::Error, "A call that is not idempotent is retried or hedged: the request may be applied twice."),
    ("same-timeout-everywhere", Severity::Warning, "Calls at different depths share one timeout: timeouts do not telescope."),
    ("connect-timeout-below-rtt", Severity::Error, "The connect timeout is at or below the round trip: every connection fails."),
    ("connect-timeout-too-long", Severity::Warning, "The connect timeout is far above the round trip: an unreachable host is detected late."),
    ("timeout-below-latency", Severity::Warning, "The per-attempt timeout is below the callee's tail latency: healthy requests time out."),
    ("single-instance-retry", Severity::Warning, "Retries to a service with one instance hit the instance that just failed."),
    ("hedge-without-budget", Severity::Warning, "A hedge without max_extra can double the load when the callee slows down."),
    ("call-cycle", Severity::Error, "The calls form a cycle: a request can call itself until every timeout runs out."),
];

/// The report as a SARIF 2.1.0 log for `file` (the path as given, which code scanning resolves
/// against the repository root): one run of the `stormguard` tool, every rule declared, and each
/// finding located at the line and column of its call or service table (line 1 when the finding
/// has no place in the file).
pub fn sarif(report: &Report, file: &str) -> String {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|(id, severity, description)| {
            json!({
                "id": id,
                "shortDescription": { "text": description },
                "defaultConfiguration": { "level": level(*severity) },
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
    if let Some(index) = RULES.iter().position(|(id, _, _)| *id == finding.rule) {
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
    RULES.iter().map(|(id, _, _)| *id).collect()
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
