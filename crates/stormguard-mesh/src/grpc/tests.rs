//! The gRPC reader on a service config shaped like grpc's own examples: settings, origins,
//! defaults, the capped `maxAttempts` finding, unread entries and errors.

use stormguard_graph::Severity;

use super::{DEFAULT_HOST, MAX_ATTEMPTS_CAPPED};
use crate::inventory::{Inventory, System};
use crate::source::Origin;
use crate::testing::{
    assert_graph_accepts, inventory_of, line, line_of, origin, route, unread_about, value,
};

fn load() -> (String, Inventory) {
    crate::testing::load(FILE)
}

const FILE: &str = "grpc/shop-service-config.json";

#[test]
fn timeout_only_is_the_deadline_and_no_retry() {
    let (text, inv) = load();
    assert_eq!(inv.kinds.get("gRPC service config"), Some(&1));
    assert_eq!(inv.routes.len(), 5);
    let charge = route(&inv, "paymentservice", Some("Charge"));
    assert_eq!(charge.system, System::Grpc);
    assert_eq!(charge.resource.kind, "ServiceConfig");
    assert_eq!(charge.resource.path, "methodConfig[0]");
    assert_eq!(
        line(&charge.origin),
        line_of(&text, "\"method\": \"Charge\"")
    );
    let p = &charge.policy;
    assert_eq!(value(p, "request_timeout"), "\"2s\"");
    assert_eq!(value(p, "timeout"), "\"2s\"");
    assert_eq!(
        line(origin(p, "timeout")),
        line_of(&text, "\"timeout\": \"2s\"")
    );
    assert_eq!(value(p, "max_attempts"), "1");
    assert_eq!(
        origin(p, "max_attempts"),
        &Origin::Default("gRPC default: no retryPolicy, no retries")
    );
    assert!(p.get("retry_on").is_none() && p.get("idempotent").is_none());
    assert_eq!(unread_about(&inv, "waitForReady").len(), 1);
    assert_eq!(unread_about(&inv, "loadBalancingConfig").len(), 1);
    assert_graph_accepts(p, "");
}

#[test]
fn retry_policy_capped_at_five_with_a_finding() {
    let (text, inv) = load();
    for method in ["GetProduct", "ListProducts"] {
        let r = route(&inv, "catalogservice", Some(method));
        let p = &r.policy;
        assert_eq!(value(p, "request_timeout"), "\"1500ms\"");
        assert_eq!(value(p, "timeout"), "\"1500ms\"");
        // maxAttempts counts tries; gRPC treats 6 as 5.
        assert_eq!(value(p, "max_attempts"), "5");
        assert_eq!(
            line(origin(p, "max_attempts")),
            line_of(&text, "\"maxAttempts\": 6")
        );
        // Names and numbers (4 is DEADLINE_EXCEEDED), in kebab case.
        assert_eq!(
            value(p, "retry_on"),
            "[\"unavailable\", \"resource-exhausted\", \"deadline-exceeded\"]"
        );
        // Multiplier 2 is stormguard's doubling: exact.
        assert_eq!(value(p, "backoff"), "\"full-jitter(base=100ms, cap=1s)\"");
        assert_eq!(
            line(origin(p, "backoff")),
            line_of(&text, "\"initialBackoff\": \"0.1s\"")
        );
        assert_eq!(value(p, "idempotent"), "true");
        assert_eq!(
            value(p, "token_bucket"),
            "{ capacity = 50, retry_cost = 10, timeout_cost = 10 }"
        );
        assert_eq!(
            line(origin(p, "token_bucket")),
            line_of(&text, "\"retryThrottling\"")
        );
        assert!(p.get("retry_budget").is_none());
        assert_graph_accepts(p, "");
    }
    assert_eq!(inv.findings.len(), 1, "one finding per methodConfig");
    let finding = &inv.findings[0];
    assert_eq!(finding.rule, MAX_ATTEMPTS_CAPPED);
    assert_eq!(finding.severity, Severity::Warning);
    assert_eq!(finding.host.as_ref().unwrap().name, "catalogservice");
    assert_eq!(line(&finding.origin), line_of(&text, "\"maxAttempts\": 6"));
    assert!(
        finding.message.contains("maxAttempts 6"),
        "{}",
        finding.message
    );
    let throttle = unread_about(&inv, "retryThrottling");
    assert_eq!(throttle.len(), 1);
    assert!(
        throttle[0].why.starts_with("approximate"),
        "{}",
        throttle[0].why
    );
    assert!(unread_about(&inv, "backoffMultiplier")
        .iter()
        .all(|u| line(&u.origin) != line_of(&text, "\"backoffMultiplier\": 2,")));
}

#[test]
fn hedging_policy_and_the_default_config() {
    let (text, inv) = load();
    let inventory = route(&inv, "inventoryservice", None);
    let p = &inventory.policy;
    assert_eq!(value(p, "request_timeout"), "\"300ms\"");
    assert_eq!(value(p, "max_attempts"), "3");
    assert_eq!(value(p, "hedge"), "{ delay = \"50ms\", max_extra = 1.0 }");
    assert_eq!(line(origin(p, "hedge")), line_of(&text, "\"hedgingDelay\""));
    assert_eq!(value(p, "retry_on"), "[\"unavailable\"]");
    assert_eq!(value(p, "backoff"), "\"none\"");
    assert_eq!(value(p, "idempotent"), "true");
    assert_eq!(unread_about(&inv, "hedgingPolicy.maxAttempts").len(), 1);
    assert_graph_accepts(p, "");

    // A name with no service is the channel's default, for every service it calls.
    let default = route(&inv, DEFAULT_HOST, None);
    let p = &default.policy;
    assert_eq!(value(p, "max_attempts"), "2");
    assert_eq!(value(p, "backoff"), "\"full-jitter(base=200ms, cap=2s)\"");
    let multiplier = unread_about(&inv, "backoffMultiplier");
    assert_eq!(multiplier.len(), 1);
    assert!(
        multiplier[0].why.contains("grow by 1.5"),
        "{}",
        multiplier[0].why
    );
    assert_eq!(
        line(&multiplier[0].origin),
        line_of(&text, "\"backoffMultiplier\": 1.5")
    );
    assert_eq!(unread_about(&inv, "methodConfig[3].name[0]").len(), 1);
    assert_graph_accepts(p, "");
}

#[test]
fn without_throttling_retries_have_no_limiter() {
    let text = r#"{"methodConfig": [{"name": [{"service": "helloworld.Greeter"}],
  "retryPolicy": {"maxAttempts": "3", "initialBackoff": "0.5s", "maxBackoff": "0.5s",
    "backoffMultiplier": 1, "retryableStatusCodes": [14]}}]}"#;
    let inv = inventory_of("greeter.json", text).unwrap();
    let greeter = route(&inv, "greeter", None);
    let p = &greeter.policy;
    assert_eq!(value(p, "max_attempts"), "3");
    assert_eq!(value(p, "retry_on"), "[\"unavailable\"]");
    // Multiplier 1: every wait in [0, initialBackoff], exactly.
    assert_eq!(
        value(p, "backoff"),
        "\"full-jitter(base=500ms, cap=500ms)\""
    );
    assert_eq!(value(p, "retry_budget"), "\"none\"");
    assert_eq!(
        origin(p, "retry_budget"),
        &Origin::Default("gRPC default: no retryThrottling, retries are not limited")
    );
    // No timeout in the config: no deadline, so no timeout (check says missing-timeout).
    assert!(p.get("timeout").is_none() && p.get("request_timeout").is_none());
    assert!(inv.findings.is_empty());
    assert_graph_accepts(p, "timeout = \"1s\"\n");
}

#[test]
fn malformed_configs_are_errors_at_their_line_column_and_field() {
    let cases = [
        (
            "{\"methodConfig\": [{\"name\": [{\"service\": \"a.B\"}],\n \"retryPolicy\": \
             {\"maxAttempts\": 1}}]}",
            "f.json:2:33: `methodConfig[0].retryPolicy.maxAttempts`: 1: gRFC A6 requires at least 2",
        ),
        (
            "{\"methodConfig\": [{\"name\": [{\"service\": \"a.B\"}],\n \"timeout\": \"soon\"}]}",
            "f.json:2:13: `methodConfig[0].timeout`: not a duration",
        ),
        (
            "{\"methodConfig\": [{\"name\": [{\"service\": \"a.B\"}], \"retryPolicy\": \
             {\"maxAttempts\": 2,\n \"initialBackoff\": \"1s\", \"maxBackoff\": \"1s\", \
             \"backoffMultiplier\": 2, \"retryableStatusCodes\": [\"OK\"]}}]}",
            "f.json:2:95: `methodConfig[0].retryPolicy.retryableStatusCodes[0]`: \"OK\" is not",
        ),
        (
            "{\"methodConfig\": [{\"name\": [{\"service\": \"a.B\"}], \"retryPolicy\": \
             {\"maxAttempts\": 2},\n \"hedgingPolicy\": {\"maxAttempts\": 2}}]}",
            "f.json:2:19: `methodConfig[0].hedgingPolicy`: both retryPolicy and hedgingPolicy",
        ),
        (
            "{\"methodConfig\": [{\"name\": [{\"service\": \"a.B\"}],\n \"retryPolicy\": \
             {\"maxAttempts\": 2}}]}",
            "f.json:2:17: `methodConfig[0].retryPolicy.retryableStatusCodes`: missing",
        ),
        (
            "{\"methodConfig\": [{\"name\": [\n{\"method\": \"Get\"}]}]}",
            "f.json:2:1: `methodConfig[0].name[0].service`: a method without a service",
        ),
        (
            "{\"retryThrottling\": {\"maxTokens\": 0,\n \"tokenRatio\": 0.1}}",
            "f.json:1:35: `retryThrottling.maxTokens`: not a number above zero",
        ),
        // A name twice, in two configs or in one: gRPC refuses the config (it was read as two
        // endpoints, with different timeouts).
        (
            "{\"methodConfig\": [{\"name\": [{\"service\": \"a.A\"}], \"timeout\": \"2s\"},\n\
             {\"name\": [{\"service\": \"a.A\"}], \"timeout\": \"9s\"}]}",
            "f.json:2:11: `methodConfig[1].name[0]`: duplicated name: service a.A is named by \
             methodConfig[0] too",
        ),
        (
            "{\"methodConfig\": [{\"name\": [{\"service\": \"a.A\", \"method\": \"M\"},\n\
             {\"service\": \"a.A\", \"method\": \"M\"}]}]}",
            "f.json:2:1: `methodConfig[0].name[1]`: duplicated name: service a.A method M",
        ),
    ];
    for (text, expected) in cases {
        let error = inventory_of("f.json", text).unwrap_err().to_string();
        assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
    }
}

#[test]
fn the_example_imports_with_its_capped_attempts() {
    let dir = format!("{}/../../examples/mesh/grpc", env!("CARGO_MANIFEST_DIR"));
    let docs = crate::read_paths(&[dir.into()]).unwrap();
    let inv = crate::inventory(&docs).unwrap();
    let charge = route(&inv, "paymentservice", Some("Charge"));
    assert_eq!(value(&charge.policy, "max_attempts"), "5");
    assert_eq!(value(&charge.policy, "retry_budget"), "\"none\"");
    assert_eq!(inv.findings.len(), 1);
    assert_eq!(inv.findings[0].rule, MAX_ATTEMPTS_CAPPED);
    let catalog = route(&inv, "catalogservice", None);
    assert!(catalog.policy.get("timeout").is_none());
    assert_eq!(unread_about(&inv, "backoffMultiplier").len(), 1);
}
