use std::collections::HashSet;

use serde_json::Value;

use super::*;
use crate::render::sarif;

/// The rule ids of the issue's table, which are part of the interface.
const ISSUE_RULES: [&str; 22] = [
    "missing-timeout",
    "missing-connect-timeout",
    "timeout-inversion",
    "entry-budget",
    "retry-amplification",
    "layered-retries",
    "too-many-attempts",
    "retry-without-backoff",
    "backoff-without-jitter",
    "retry-without-budget",
    "non-idempotent-retry",
    "same-timeout-everywhere",
    "connect-timeout-below-rtt",
    "connect-timeout-too-long",
    "timeout-below-latency",
    "single-instance-retry",
    "hedge-without-budget",
    "call-cycle",
    "attempts-cannot-fit",
    "over-capacity",
    "retries-over-capacity",
    "queue-outlives-caller",
];

fn log(report: &Report) -> Value {
    serde_json::from_str(&sarif(report, "examples/graphs/three.toml")).unwrap()
}

#[test]
fn the_log_is_one_run_of_stormguard_declaring_every_rule() {
    let v = log(&Report::default());
    assert_eq!(
        v["$schema"],
        "https://json.schemastore.org/sarif-2.1.0.json"
    );
    assert_eq!(v["version"], "2.1.0");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "stormguard");
    // No dead links: code scanning would show one on every alert.
    assert!(driver.get("informationUri").is_none());
    let rules = driver["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "duplicate ids"
    );
    assert_eq!(
        ids.iter().copied().collect::<HashSet<_>>(),
        ISSUE_RULES.into_iter().collect::<HashSet<_>>()
    );
    assert_eq!(crate::render::sarif::rule_ids(), ids);
    for rule in rules {
        assert!(!rule["shortDescription"]["text"]
            .as_str()
            .unwrap()
            .is_empty());
        let level = rule["defaultConfiguration"]["level"].as_str().unwrap();
        assert!(["error", "warning"].contains(&level), "{rule}");
    }
    let level_of = |id: &str| {
        rules.iter().find(|r| r["id"] == id).unwrap()["defaultConfiguration"]["level"].clone()
    };
    assert_eq!(level_of("retry-amplification"), "error");
    assert_eq!(level_of("layered-retries"), "warning");
    assert!(runs[0]["results"].as_array().unwrap().is_empty());
}

#[test]
fn each_finding_is_a_result_at_its_line() {
    let mut report = three_services_report();
    report.findings.push(finding(
        "timeout-inversion",
        Severity::Info,
        Place::Call("api", "db", 16),
    ));
    report.findings.push(finding(
        "same-timeout-everywhere",
        Severity::Warning,
        Place::Graph,
    ));
    report.findings[1].span = Some(Span {
        line: 16,
        column: 3,
    });
    let v = log(&report);
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), report.findings.len());
    for (result, finding) in results.iter().zip(&report.findings) {
        assert_eq!(result["ruleId"], finding.rule);
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], finding.rule);
        assert_eq!(
            result["message"]["text"],
            format!("{} Fix: {}", finding.message, finding.fix)
        );
        let location = &result["locations"][0]["physicalLocation"];
        assert_eq!(
            location["artifactLocation"]["uri"],
            "examples/graphs/three.toml"
        );
        let span = finding.span.unwrap_or(Span { line: 1, column: 1 });
        assert_eq!(location["region"]["startLine"], span.line);
        assert_eq!(location["region"]["startColumn"], span.column);
    }
    let levels: Vec<&str> = results
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    assert_eq!(
        levels,
        ["error", "warning", "warning", "error", "note", "warning"]
    );
    assert_eq!(
        results[1]["locations"][0]["physicalLocation"]["region"]["startColumn"],
        3
    );
    assert_eq!(
        results[5]["locations"][0]["physicalLocation"]["region"]["startLine"],
        1
    );
}

#[test]
fn a_rule_outside_the_table_has_no_index() {
    let report = Report {
        findings: vec![finding("made-up", Severity::Warning, Place::Graph)],
        ..Report::default()
    };
    let v = log(&report);
    let result = &v["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "made-up");
    assert!(result.get("ruleIndex").is_none());
}

#[test]
fn a_relative_path_resolves_against_the_checkout_and_an_absolute_one_is_a_file_uri() {
    assert_eq!(
        super::super::sarif::artifact_for_test("examples/graphs/a.toml"),
        serde_json::json!({ "uri": "examples/graphs/a.toml", "uriBaseId": "%SRCROOT%" })
    );
    assert_eq!(
        super::super::sarif::artifact_for_test("/tmp/a.toml"),
        serde_json::json!({ "uri": "file:///tmp/a.toml" })
    );
}

#[test]
fn located_findings_are_shown_where_the_caller_says_and_extra_rules_are_declared() {
    use crate::render::{sarif_located, ExtraRule, Location};
    let mut report = three_services_report();
    report.findings.truncate(2);
    report
        .findings
        .push(finding("mesh-made-up", Severity::Warning, Place::Graph));
    let locations = [
        Location {
            file: "k8s/reviews.yaml".to_string(),
            line: 14,
            column: 9,
        },
        Location {
            file: "/abs/stormguard-imported.toml".to_string(),
            line: 0,
            column: 0,
        },
    ];
    let extra = [
        ExtraRule {
            id: "mesh-made-up",
            summary: "a rule of the import".to_string(),
            severity: Severity::Warning,
        },
        // An id of check's own is declared once, as check's.
        ExtraRule {
            id: "retry-amplification",
            summary: "twice".to_string(),
            severity: Severity::Info,
        },
    ];
    let v: Value = serde_json::from_str(&sarif_located(&report, &locations, &extra)).unwrap();
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), ISSUE_RULES.len() + 1);
    let results = v["runs"][0]["results"].as_array().unwrap();
    let at = |i: usize| {
        let l = &results[i]["locations"][0]["physicalLocation"];
        (
            l["artifactLocation"]["uri"].as_str().unwrap().to_string(),
            l["region"]["startLine"].as_u64().unwrap(),
            l["region"]["startColumn"].as_u64().unwrap(),
        )
    };
    assert_eq!(at(0), ("k8s/reviews.yaml".to_string(), 14, 9));
    assert_eq!(
        at(1),
        ("file:///abs/stormguard-imported.toml".to_string(), 1, 1)
    );
    // No location given: line 1 of the first location's file.
    assert_eq!(at(2), ("k8s/reviews.yaml".to_string(), 1, 1));
    let index = results[2]["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rules[index]["id"], "mesh-made-up");
    assert_eq!(
        rules[index]["shortDescription"]["text"],
        "a rule of the import"
    );
}

#[test]
fn sarif_is_sarif_located_at_each_span_of_the_one_file() {
    use crate::render::{sarif_located, Location};
    let report = three_services_report();
    let locations: Vec<Location> = report
        .findings
        .iter()
        .map(|f| Location {
            file: "examples/graphs/three.toml".to_string(),
            line: f.span.map_or(1, |s| s.line),
            column: f.span.map_or(1, |s| s.column),
        })
        .collect();
    assert_eq!(
        sarif(&report, "examples/graphs/three.toml"),
        sarif_located(&report, &locations, &[])
    );
}
