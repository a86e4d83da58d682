//! The application's own retries on top of the sidecar's: the sidecar made explicit, so that
//! `check` sees both layers.

use std::time::Duration;

use super::*;
use crate::inventory::Inventory;

const APP_RETRIES: &str = r#"[entry]
service = "web"

[services.web]
instances = 3

# The application's own client: 4 tries of 1 s.
[[services.web.calls]]
to = "reviews"
timeout = "1s"
max_attempts = 4
method = "GET"

[services.reviews]
instances = 2
"#;

fn inventory() -> Inventory {
    Inventory {
        routes: vec![route(System::Istio, "reviews", "prod", "vs.yaml", 10)
            .set("timeout", "\"200ms\"", 14)
            .set("max_attempts", "3", 15)
            .default("retry_budget", "\"none\"", "Istio default")],
        ..Inventory::default()
    }
}

#[test]
fn an_applications_retries_go_through_an_explicit_sidecar_that_carries_the_meshs() {
    let imported = import_onto(&inventory(), APP_RETRIES);
    let toml = &imported.toml;
    let graph = parsed(&imported);
    let app = &graph.services["web"].calls[0];
    assert_eq!(app.to, "web-sidecar");
    assert_eq!(app.endpoint.as_deref(), Some("reviews"));
    assert_eq!(
        (app.timeout, app.max_attempts),
        (Some(Duration::from_secs(1)), 4)
    );
    assert!(toml.contains("# The application's own client: 4 tries of 1 s."));
    let sidecar = &graph.services["web-sidecar"];
    assert_eq!(sidecar.instances, 3, "as many as its caller");
    assert_eq!(sidecar.latency.p50, Duration::from_micros(100));
    let call = &sidecar.endpoint("reviews").unwrap().calls[0];
    assert_eq!((call.to.as_str(), call.max_attempts), ("reviews", 3));
    assert_eq!(call.timeout, Some(Duration::from_millis(200)));
    assert_eq!(
        call.method, "GET",
        "the application's method goes with the request"
    );
    let header = line_of(toml, "[[services.web-sidecar.endpoints.reviews.calls]]");
    assert_eq!(
        imported.sources.locate(header),
        Some(&at("vs.yaml", 10, "route to reviews"))
    );
    assert!(
        toml.contains("explicit sidecar") || toml.contains("CALLER-sidecar"),
        "{toml}"
    );

    // check sees the two layers.
    let report = stormguard_graph::check::check(&graph);
    let rules: Vec<&str> = report.findings.iter().map(|f| f.rule).collect();
    assert!(rules.contains(&"layered-retries"), "{rules:?}");
    let amplification = report
        .findings
        .iter()
        .find(|f| f.rule == "retry-amplification")
        .unwrap_or_else(|| panic!("{rules:?}"));
    assert_eq!(amplification.service.as_deref(), Some("reviews"));
    assert!(
        amplification.message.contains("12"),
        "{}",
        amplification.message
    );

    let finding = imported
        .findings
        .iter()
        .find(|f| f.rule == "mesh-retries-stacked")
        .unwrap();
    assert_eq!(finding.severity, stormguard_graph::Severity::Warning);
    assert!(
        finding.message.starts_with(
            "the application makes up to 4 attempts through a sidecar that makes up to 3: up to 12 at reviews"
        ),
        "{}",
        finding.message
    );
    assert_eq!(finding.origin.short(), "base.toml:8");
    assert!(finding.fix.contains("vs.yaml:10"), "{}", finding.fix);
    assert!(
        toml.contains("# warning[mesh-retries-stacked] base.toml:8: the application makes up to 4")
    );
}

#[test]
fn an_application_timeout_alone_stacks_without_a_retry_finding() {
    let base = APP_RETRIES.replace("max_attempts = 4\n", "");
    let imported = import_onto(&inventory(), &base);
    let graph = parsed(&imported);
    assert_eq!(graph.services["web"].calls[0].to, "web-sidecar");
    assert!(imported
        .findings
        .iter()
        .all(|f| f.rule != "mesh-retries-stacked"));
}

#[test]
fn a_call_without_client_settings_takes_the_policy_directly() {
    let base = APP_RETRIES
        .replace("timeout = \"1s\"\n", "")
        .replace("max_attempts = 4\n", "");
    let imported = import_onto(&inventory(), &base);
    let graph = parsed(&imported);
    assert!(!graph.services.contains_key("web-sidecar"));
    assert_eq!(graph.services["web"].calls[0].max_attempts, 3);
}

#[test]
fn a_sidecar_name_taken_by_a_service_gets_a_number() {
    let base = format!("{APP_RETRIES}[services.web-sidecar]\n");
    let imported = import_onto(&inventory(), &base);
    assert_eq!(
        parsed(&imported).services["web"].calls[0].to,
        "web-sidecar-2"
    );
}
