//! `mesh-retries-non-idempotent`: the mesh replays a POST.

use super::*;
use crate::inventory::{ImportFinding, Inventory};

fn post_route() -> Route {
    route(System::Envoy, "orders", "prod", "envoy.yaml", 20)
        .method("POST")
        .set("max_attempts", "3", 22)
        .set("retry_on", "[\"connect-failure\", \"reset\", \"503\"]", 23)
        .default("idempotent", "true", "Envoy default: retries any method")
}

/// The one `mesh-retries-non-idempotent` finding of an inventory of `route` alone.
fn only_finding(route: Route) -> ImportFinding {
    let inv = Inventory {
        routes: vec![route],
        ..Inventory::default()
    };
    let mut found = non_idempotent(&inv);
    assert_eq!(found.len(), 1, "{found:#?}");
    found.remove(0)
}

fn non_idempotent(inv: &Inventory) -> Vec<ImportFinding> {
    import(inv)
        .findings
        .into_iter()
        .filter(|f| f.rule == "mesh-retries-non-idempotent")
        .collect()
}

#[test]
fn a_mesh_that_retries_a_post_after_it_was_sent_is_an_error_at_the_route() {
    let inv = Inventory {
        routes: vec![post_route()],
        ..Inventory::default()
    };
    let found = non_idempotent(&inv);
    assert_eq!(found.len(), 1, "{found:#?}");
    let finding = &found[0];
    assert_eq!(finding.severity, stormguard_graph::Severity::Error);
    assert_eq!(finding.origin, at("envoy.yaml", 20, "route to orders"));
    assert!(
        finding.message.contains("sends POST requests"),
        "{}",
        finding.message
    );
    assert!(
        finding.message.contains("on reset, 503 (envoy.yaml:23)"),
        "{}",
        finding.message
    );
    assert!(
        finding.fix.starts_with(
            "retry_on = [\"connect-failure\", \"refused-stream\", \"reset-before-request\"]"
        ),
        "{}",
        finding.fix
    );
    // The graph says POST, so check's own rules see it too.
    let imported = import(&inv);
    assert_eq!(
        parsed(&imported).services["mesh-callers"].endpoints[0].calls[0].method,
        "POST"
    );
}

/// The import draws the line where the policy core does (`RetryOn::for_any_method`): `5xx`
/// fires after the request was sent but its 503 does not, and gRPC `aborted` is an answer that
/// declines the work, retried for any method. Through an Envoy-based mesh 503 fires after
/// sending too: the server's sidecar answers it when its application's connection drops.
#[test]
fn the_safe_part_of_a_mesh_list_is_what_the_policy_core_retries_of_a_post() {
    let list = "[\"5xx\", \"aborted\", \"timeout\"]";
    let linkerd = route(System::Linkerd, "orders", "prod", "profile.yaml", 20)
        .method("POST")
        .set("max_attempts", "3", 22)
        .set("retry_on", list, 23)
        .default("idempotent", "true", "Linkerd default: retries any method");
    let envoy = post_route().set("retry_on", list, 23);
    for (route, file, safe) in [
        (linkerd, "profile.yaml", "\"503\", \"aborted\""),
        (envoy, "envoy.yaml", "\"aborted\""),
    ] {
        let found = only_finding(route);
        assert!(
            found
                .message
                .contains(&format!("on 5xx, timeout ({file}:23)")),
            "{}",
            found.message
        );
        let fix = format!(
            "retry_on = [\"connect-failure\", \"refused-stream\", \"reset-before-request\", {safe}]"
        );
        assert!(found.fix.starts_with(&fix), "{}", found.fix);
    }
}

/// A Gateway API route retries resets and timeouts whenever it retries: the fix for a POST is
/// no retry, not a list of conditions an HTTPRoute cannot say.
#[test]
fn a_gateway_api_route_that_retries_a_post_is_fixed_with_no_retry() {
    let route = route(System::GatewayApi, "orders", "prod", "routes.yaml", 20)
        .method("POST")
        .set("max_attempts", "2", 22)
        .set(
            "retry_on",
            "[\"503\", \"connect-failure\", \"reset\", \"timeout\"]",
            23,
        )
        .default("idempotent", "true", "Gateway API: retries any method");
    let found = only_finding(route);
    assert!(
        found
            .fix
            .starts_with("max_attempts = 1 (retry.attempts: 0)"),
        "{}",
        found.fix
    );
    let remedy = found.remedy.as_ref().unwrap();
    assert_eq!((remedy.key, remedy.value.as_str()), ("max_attempts", "1"));
}

#[test]
fn no_finding_when_the_user_said_idempotent_or_only_before_send_conditions_or_a_get() {
    let said = post_route().set("idempotent", "true", 24);
    let before = post_route().set("retry_on", "[\"connect-failure\", \"refused-stream\"]", 23);
    let get = post_route().method("GET");
    let once = post_route().set("max_attempts", "1", 22);
    for route in [said, before, get, once] {
        let inv = Inventory {
            routes: vec![route.clone()],
            ..Inventory::default()
        };
        assert!(non_idempotent(&inv).is_empty(), "{route:#?}");
    }
}

#[test]
fn a_base_calls_method_counts_when_the_route_matches_every_method() {
    let mut route = post_route();
    route.method = None;
    let inv = Inventory {
        routes: vec![route],
        ..Inventory::default()
    };
    let base = "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\nto = \"orders\"\nmethod = \"POST\"\n[services.orders]\n";
    let imported = import_onto(&inv, base);
    assert!(imported
        .findings
        .iter()
        .any(|f| f.rule == "mesh-retries-non-idempotent"));
    let get = import_onto(&inv, &base.replace("POST", "PUT"));
    assert!(get
        .findings
        .iter()
        .all(|f| f.rule != "mesh-retries-non-idempotent"));
}
