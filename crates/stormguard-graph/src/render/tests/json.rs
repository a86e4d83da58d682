use serde_json::Value;

use super::*;
use crate::render::json;

#[test]
fn json_has_the_shape_of_the_issue() {
    let out = json(&three_services_report());
    assert!(out.ends_with("}\n"));
    let v: Value = serde_json::from_str(&out).unwrap();
    let top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(top, ["findings", "services", "summary"]);

    let call = &v["findings"][0];
    assert_eq!(call["rule"], "timeout-inversion");
    assert_eq!(call["severity"], "error");
    assert_eq!(call["from"], "web");
    assert_eq!(call["to"], "api");
    assert_eq!(call["value"], 1609.7);
    assert_eq!(call["limit"], 1000.0);
    assert!(call["message"].as_str().unwrap().contains("1.61s"));
    assert!(call["fix"].as_str().unwrap().contains("1.7s"));
    // Absent fields are left out, not null; the span is for SARIF only.
    for absent in ["service", "span"] {
        assert!(call.get(absent).is_none(), "{absent} in {call}");
    }
    let without_figure = &v["findings"][2];
    assert!(without_figure.get("value").is_none() && without_figure.get("limit").is_none());
    let on_service = &v["findings"][3];
    assert_eq!(on_service["service"], "db");
    assert!(on_service.get("from").is_none() && on_service.get("to").is_none());

    let db = &v["services"]["db"];
    assert_eq!(db["worst_case_ms"], 31.6);
    assert_eq!(db["amplification"], 6.0);
    assert_eq!(db["sustained_amplification"], 3.3);
    assert_eq!(db["depth"], 2);
    assert_eq!(v["services"].as_object().unwrap().len(), 3);
    assert_eq!(
        v["summary"],
        serde_json::json!({"errors": 2, "warnings": 2, "infos": 0})
    );
}

#[test]
fn an_unbounded_figure_is_null_rather_than_invalid_json() {
    let mut report = three_services_report();
    report.services.get_mut("web").unwrap().worst_case_ms = f64::INFINITY;
    let v: Value = serde_json::from_str(&json(&report)).unwrap();
    assert!(v["services"]["web"]["worst_case_ms"].is_null());
}

/// `json_in` is `json` with a `source` in each finding that has a place, and nothing else:
/// the same keys in the same order (a `serde_json::Value` had sorted them, so the JSON of a
/// file without findings changed byte for byte).
#[test]
fn json_in_adds_the_sources_and_changes_nothing_else() {
    let report = three_services_report();
    let plain = json(&report);
    let located = crate::render::json_in(&report, "g.toml");
    let strip = |text: &str| -> String {
        let mut v: Value = serde_json::from_str(text).unwrap();
        for finding in v["findings"].as_array_mut().unwrap() {
            finding.as_object_mut().unwrap().remove("source");
        }
        serde_json::to_string(&v).unwrap()
    };
    assert_eq!(strip(&located), strip(&plain));
    let v: Value = serde_json::from_str(&located).unwrap();
    for (finding, of) in v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&report.findings)
    {
        match of.span {
            Some(span) => {
                assert_eq!(finding["source"]["file"], "g.toml");
                assert_eq!(finding["source"]["line"], span.line);
            }
            None => assert!(finding.get("source").is_none()),
        }
    }
    // Without findings, byte for byte the same.
    let mut empty = report.clone();
    empty.findings.clear();
    assert_eq!(crate::render::json_in(&empty, "g.toml"), json(&empty));
}
