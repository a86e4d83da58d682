//! Endpoints: a request to a service with endpoints makes one endpoint's calls, so its worst
//! case is the worst endpoint's, never the sum, and its callees receive its endpoints' shares.

use super::*;

/// A gateway whose browse endpoint (9 requests in 10) calls the catalog with one retry (625 ms
/// at worst) and whose checkout endpoint (1 in 10) calls orders (1500 ms at worst), each
/// service's own work 10 ms: browse 635 ms, checkout 1510 ms.
fn gateway() -> Builder {
    Builder::new("gateway")
        .service("gateway", |s| s.latency = fixed_latency(10))
        .endpoint_call(("gateway", "browse", 9.0), "catalog", retrying(300))
        .endpoint_call(("gateway", "checkout", 1.0), "orders", timed(1500))
        .service("catalog", |s| s.latency = fixed_latency(10))
        .service("orders", |s| s.latency = fixed_latency(10))
        .instances_everywhere(2)
        .entry(|e| e.timeout = ms(2000))
}

/// The figures of the gateway's endpoint `name`.
fn endpoint(report: &Report, name: &str) -> crate::report::ServiceFigures {
    report.endpoints[&format!("gateway/{name}")]
}

#[test]
fn a_service_is_charged_its_worst_endpoint_not_the_sum_of_them() {
    let report = gateway().check();
    assert!(approx(endpoint(&report, "browse").worst_case_ms, 635.0));
    assert!(approx(endpoint(&report, "checkout").worst_case_ms, 1510.0));
    assert!(approx(report.services["gateway"].worst_case_ms, 1510.0));
    assert_eq!(found(&report), []);

    // The same calls made on every request: the gateway is charged both, 2135 ms, over the
    // 2 s a user waits; what the endpoints say it never does.
    let every_request = Builder::new("gateway")
        .service("gateway", |s| s.latency = fixed_latency(10))
        .call("gateway", "catalog", retrying(300))
        .call("gateway", "orders", timed(1500))
        .service("catalog", |s| s.latency = fixed_latency(10))
        .service("orders", |s| s.latency = fixed_latency(10))
        .instances_everywhere(2)
        .entry(|e| e.timeout = ms(2000))
        .check();
    assert!(approx(
        every_request.services["gateway"].worst_case_ms,
        2135.0
    ));
    assert_eq!(fired(&every_request, "entry-budget"), ["gateway"]);
    assert!(every_request.endpoints.is_empty());
}

#[test]
fn callees_receive_their_endpoints_share_of_the_requests() {
    let report = gateway().check();
    let figures = |name: &str| report.services[name];
    assert!(approx(figures("gateway").amplification, 1.0));
    assert!(approx(endpoint(&report, "browse").amplification, 0.9));
    assert!(approx(endpoint(&report, "checkout").amplification, 0.1));
    // Two attempts on 9 requests in 10; with the budget, 1.1 on each of those and the
    // reserve's 10 retries a second over their 90 a second.
    assert!(approx(figures("catalog").amplification, 1.8));
    assert!(approx(
        figures("catalog").sustained_amplification,
        0.9 * (1.1 + 10.0 / 90.0)
    ));
    assert!(approx(figures("orders").amplification, 0.1));
    assert_eq!((figures("catalog").depth, figures("orders").depth), (1, 1));
}

#[test]
fn the_entry_budget_is_judged_per_endpoint_and_fixed_in_the_endpoints_calls() {
    let report = gateway()
        .endpoint_call(("gateway", "checkout", 1.0), "payments", timed(800))
        .service("payments", |s| {
            s.latency = fixed_latency(10);
            s.instances = 2;
        })
        .check();
    let finding = only(&report, "entry-budget");
    assert_eq!(finding.service.as_deref(), Some("gateway/checkout"));
    assert!(approx(finding.value.unwrap(), 2310.0), "{finding:?}");
    assert!(
        finding
            .message
            .starts_with("gateway/checkout may work 2310ms"),
        "{}",
        finding.message
    );
    assert!(!finding.edits.is_empty());
    for edit in &finding.edits {
        assert_eq!(
            (edit.from.as_str(), edit.endpoint.as_deref()),
            ("gateway", Some("checkout")),
            "{edit}"
        );
    }
}

#[test]
fn a_call_naming_no_endpoint_waits_for_the_worst_and_loads_each_in_its_share() {
    let report = gateway()
        .entry(|e| e.service = "web".to_string())
        .call("web", "gateway", timed(1000))
        .instances_everywhere(2)
        .check();
    let inversion = only(&report, "timeout-inversion");
    assert_eq!(place(inversion), "web->gateway");
    assert!(approx(inversion.value.unwrap(), 1510.0));
    // Its fix cuts the endpoint that is too slow, in that endpoint's call table.
    assert!(!inversion.edits.is_empty());
    assert!(inversion
        .edits
        .iter()
        .all(|e| e.endpoint.as_deref() == Some("checkout")));
    assert!(approx(report.services["catalog"].amplification, 1.8));
    assert!(approx(report.services["orders"].amplification, 0.1));
}

#[test]
fn a_call_naming_an_endpoint_reaches_only_that_endpoint() {
    let report = gateway()
        .entry(|e| e.service = "web".to_string())
        .call("web", "gateway", |c| {
            timed(1000)(c);
            c.endpoint = Some("browse".to_string());
        })
        .instances_everywhere(2)
        .check();
    assert_eq!(fired(&report, "timeout-inversion"), Vec::<String>::new());
    assert!(approx(report.services["catalog"].amplification, 2.0));
    assert!(!report.services.contains_key("orders"), "{report:?}");
    assert!(!report.endpoints.contains_key("gateway/checkout"));
    assert!(approx(report.services["gateway"].worst_case_ms, 635.0));
}

#[test]
fn retry_amplification_counts_every_endpoint_of_a_service() {
    let report = Builder::new("web")
        .call("web", "api", |c| {
            retrying(1000)(c);
            c.max_attempts = 3;
        })
        .endpoint_call(("api", "read", 3.0), "db", timed(100))
        .endpoint_call(("api", "write", 1.0), "db", timed(100))
        .config(|c| c.max_amplification = 2.0)
        .instances_everywhere(2)
        .check();
    assert_eq!(fired(&report, "retry-amplification"), ["api", "db"]);
    let api = report
        .findings
        .iter()
        .find(|f| f.rule == "retry-amplification" && place(f) == "api")
        .unwrap();
    assert_eq!(api.value, Some(3.0));
    assert!(approx(report.endpoints["api/read"].amplification, 2.25));
    assert!(approx(report.endpoints["api/write"].amplification, 0.75));
}

/// The normal load: each endpoint's share, each call's `count`, and none of the retries, so a
/// run with retries reads against it.
#[test]
fn the_normal_load_is_the_fan_out_without_retries() {
    let graph = Builder::new("gateway")
        .endpoint_call(("gateway", "browse", 9.0), "catalog", retrying(300))
        .endpoint_call(("gateway", "checkout", 1.0), "orders", |c| {
            timed(1500)(c);
            c.count = 3;
        })
        .call("catalog", "db", retrying(100))
        .call("orders", "db", timed(500))
        .build();
    let normal = crate::check::normal_load(&graph);
    assert!(approx(normal.services["gateway"], 1.0));
    assert!(approx(normal.services["catalog"], 0.9));
    assert!(approx(normal.services["orders"], 0.3));
    // 0.9 from the catalog, 0.3 from the orders' three calls.
    assert!(approx(normal.services["db"], 1.2));
    assert!(approx(normal.calls["gateway->catalog"], 0.9));
    assert!(approx(normal.calls["gateway->orders"], 0.3));
    assert!(approx(normal.calls["catalog->db"], 0.9));
    assert!(approx(normal.calls["orders->db"], 0.3));
    assert_eq!(normal.calls.len(), 4);
}
