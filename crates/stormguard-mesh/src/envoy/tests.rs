//! The Envoy reader on a bootstrap (YAML and the same as JSON) and on an Istio sidecar's
//! `/config_dump` (camelCase, 64-bit integers as strings), shaped like Envoy's and Istio's own
//! examples: settings, origins, defaults, unread entries and errors.

use crate::inventory::{Inventory, System};
use crate::source::Origin;
use crate::testing::{
    assert_graph_accepts, destination, inventory_of, line, line_of, load, origin, route,
    unread_about, value,
};

const YAML: &str = "envoy/front-proxy.yaml";
const JSON: &str = "envoy/front-proxy.json";
const DUMP: &str = "envoy/productpage-config-dump.json";

#[test]
fn bootstrap_route_with_its_own_retry_policy() {
    let (text, inv) = load(YAML);
    assert_eq!(inv.kinds.get("Envoy bootstrap"), Some(&1));
    let orders = route(&inv, "orders", Some("orders-create"));
    assert_eq!(orders.system, System::Envoy);
    assert_eq!(orders.caller.as_deref(), Some("frontend"));
    assert_eq!(orders.method.as_deref(), Some("POST"));
    assert!(orders.backends.is_empty());
    assert_eq!(
        line(&orders.origin),
        line_of(&text, "- name: orders-create")
    );
    assert_eq!(orders.resource.kind, "bootstrap");
    assert_eq!(orders.resource.name, "local_route");
    assert_eq!(
        orders.resource.path,
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config\
         .virtual_hosts[0].routes[0]"
    );

    let p = &orders.policy;
    assert_eq!(value(p, "request_timeout"), "\"2s\"");
    assert_eq!(
        line(origin(p, "request_timeout")),
        line_of(&text, "timeout: 2s")
    );
    assert_eq!(value(p, "timeout"), "\"800ms\"");
    assert_eq!(
        line(origin(p, "timeout")),
        line_of(&text, "per_try_timeout: 0.8s")
    );
    // num_retries counts retries: 3 retries are 4 attempts.
    assert_eq!(value(p, "max_attempts"), "4");
    assert_eq!(
        line(origin(p, "max_attempts")),
        line_of(&text, "num_retries: 3")
    );
    // 5xx also retries resets and connect failures, and a per-try timeout; 409 from
    // retriable_status_codes; envoy-ratelimited has no equivalent.
    assert_eq!(
        value(p, "retry_on"),
        "[\"5xx\", \"connect-failure\", \"refused-stream\", \"reset\", \"409\", \"timeout\"]"
    );
    assert_eq!(
        line(origin(p, "retry_on")),
        line_of(&text, "retry_on: 5xx,retriable-status-codes")
    );
    assert_eq!(value(p, "backoff"), "\"full-jitter(base=100ms, cap=1s)\"");
    assert_eq!(
        line(origin(p, "backoff")),
        line_of(&text, "base_interval: 0.1s")
    );
    assert_eq!(value(p, "idempotent"), "true");
    assert_eq!(
        origin(p, "idempotent"),
        &Origin::Default("Envoy default: retries any method")
    );
    assert!(p.get("hedge").is_none());

    for what in [
        "retry_on envoy-ratelimited",
        "retry_host_predicate",
        "host_selection_retry_max_attempts",
    ] {
        assert_eq!(
            unread_about(&inv, what).len(),
            1,
            "{what}: {:#?}",
            inv.unread
        );
    }
    let predicate = unread_about(&inv, "retry_host_predicate")[0];
    assert!(predicate.why.contains("informational"), "{}", predicate.why);
    assert_eq!(
        line(&predicate.origin),
        line_of(&text, "- name: envoy.retry_host_predicates.previous_hosts")
    );
    // The backoff note is written once per file.
    assert_eq!(unread_about(&inv, "retry_back_off").len(), 1);
    assert_graph_accepts(p, "");
}

#[test]
fn bootstrap_defaults_weights_hedging_and_header_overrides() {
    let (text, inv) = load(YAML);

    // No timeout: Envoy's 15s, written as Envoy's default; hedging on the 250ms per-try timeout.
    let catalog = route(&inv, "catalog-v1", Some("/api/catalog"));
    let weights: Vec<(&str, f64)> = catalog
        .backends
        .iter()
        .map(|b| (b.host.name.as_str(), b.weight))
        .collect();
    assert_eq!(weights, [("catalog-v1", 90.0), ("catalog-v2", 10.0)]);
    let p = &catalog.policy;
    assert_eq!(value(p, "request_timeout"), "\"15s\"");
    assert_eq!(
        origin(p, "request_timeout"),
        &Origin::Default("Envoy default: route timeout 15s, retries included")
    );
    assert_eq!(value(p, "hedge"), "{ delay = \"250ms\", max_extra = 1.0 }");
    assert_eq!(
        line(origin(p, "hedge")),
        line_of(&text, "hedge_on_per_try_timeout: true")
    );
    // A hedged attempt is not cut at the per-try timeout.
    assert_eq!(value(p, "timeout"), "\"15s\"");
    assert_eq!(value(p, "max_attempts"), "3");
    assert_eq!(
        value(p, "retry_on"),
        "[\"gateway-error\", \"connect-failure\", \"refused-stream\", \"reset\", \"timeout\"]"
    );
    assert_eq!(value(p, "backoff"), "\"full-jitter(base=25ms, cap=250ms)\"");
    assert_eq!(
        origin(p, "backoff"),
        &Origin::Default("Envoy default: backoff base 25ms, max 10 × base")
    );
    let hedge_note = unread_about(&inv, "hedge_on_per_try_timeout");
    assert_eq!(hedge_note.len(), 1);
    assert!(
        hedge_note[0].why.contains("up to 2 hedged"),
        "{}",
        hedge_note[0].why
    );
    assert_graph_accepts(p, "");

    // timeout 0s disables the route timeout: no request_timeout and no per-attempt timeout
    // (check then says missing-timeout, the truth). The virtual host's retry policy applies,
    // and x-envoy-max-retries added to every request overrides its count.
    let web = route(&inv, "web", Some("/"));
    let p = &web.policy;
    assert!(p.get("request_timeout").is_none(), "{p:#?}");
    assert!(p.get("timeout").is_none(), "{p:#?}");
    assert_eq!(value(p, "max_attempts"), "5");
    assert_eq!(
        line(origin(p, "max_attempts")),
        line_of(&text, "key: x-envoy-max-retries")
    );
    assert_eq!(
        value(p, "retry_on"),
        "[\"connect-failure\", \"refused-stream\"]"
    );
    assert_eq!(
        line(origin(p, "retry_on")),
        line_of(&text, "retry_on: connect-failure,refused-stream")
    );
    let grpc_on = unread_about(&inv, "x-envoy-retry-grpc-on");
    assert_eq!(grpc_on.len(), 1);
    assert_eq!(grpc_on[0].why, "per-request header override: not read");
    assert_graph_accepts(p, "timeout = \"1s\"\n");

    // A direct response makes no upstream call: listed, not a route.
    assert_eq!(unread_about(&inv, "direct_response").len(), 1);
    assert_eq!(inv.routes.len(), 3);
}

#[test]
fn bootstrap_clusters_connect_timeouts_and_circuit_breakers() {
    let (text, inv) = load(YAML);
    let orders = destination(&inv, "orders");
    assert_eq!(orders.caller.as_deref(), Some("frontend"));
    assert_eq!(value(&orders.policy, "connect_timeout"), "\"250ms\"");
    assert_eq!(
        line(origin(&orders.policy, "connect_timeout")),
        line_of(&text, "connect_timeout: 0.25s")
    );
    assert_eq!(
        value(&orders.policy, "retry_budget"),
        "{ ratio = 0.25, min_per_sec = 5 }"
    );
    let budget = unread_about(&inv, "retry_budget");
    assert_eq!(budget.len(), 1);
    assert!(
        budget[0].why.starts_with("approximate"),
        "{}",
        budget[0].why
    );
    let max_retries = unread_about(&inv, "circuit_breakers.max_retries");
    assert!(max_retries
        .iter()
        .any(|u| u.why.contains("retry_budget is set")));
    assert!(max_retries
        .iter()
        .any(|u| u.why.contains("at most 10 retries in flight")));
    assert_eq!(unread_about(&inv, "outlier_detection").len(), 1);

    // Envoy's defaults where the cluster is silent.
    let v2 = destination(&inv, "catalog-v2");
    assert_eq!(value(&v2.policy, "connect_timeout"), "\"5s\"");
    assert_eq!(
        origin(&v2.policy, "connect_timeout"),
        &Origin::Default("Envoy default: connect_timeout 5s")
    );
    assert_eq!(value(&v2.policy, "retry_budget"), "\"none\"");
    assert!(max_retries.iter().any(|u| u
        .why
        .contains("at most 3 retries in flight at once (Envoy's default")));
    let web = destination(&inv, "web");
    assert_eq!(value(&web.policy, "retry_budget"), "\"none\"");
    for d in &inv.destinations {
        assert_graph_accepts(&d.policy, "timeout = \"1h\"\n");
    }
}

/// A route's host, name and settings, without origins.
type RouteValues = (String, Option<String>, Vec<(String, String)>);

#[test]
fn the_same_bootstrap_as_json_gives_the_same_policies_at_its_own_lines() {
    let (_, yaml) = load(YAML);
    let (json_text, json) = load(JSON);
    let values = |inv: &Inventory| -> Vec<RouteValues> {
        inv.routes
            .iter()
            .map(|r| {
                (
                    r.host.name.clone(),
                    r.name.clone(),
                    r.policy
                        .settings
                        .iter()
                        .map(|s| (s.key.to_string(), s.value.clone()))
                        .collect(),
                )
            })
            .collect()
    };
    assert_eq!(values(&yaml), values(&json));
    assert_eq!(yaml.unread.len(), json.unread.len());
    let orders = route(&json, "orders", Some("orders-create"));
    assert_eq!(
        line(origin(&orders.policy, "timeout")),
        line_of(&json_text, "\"per_try_timeout\": \"0.8s\"")
    );
    assert_eq!(
        origin(&orders.policy, "timeout").file_line().unwrap().0,
        JSON
    );
}

#[test]
fn istio_config_dump_in_camel_case() {
    let (text, inv) = load(DUMP);
    assert_eq!(inv.kinds.get("Envoy config_dump"), Some(&1));

    // Istio's default retry policy, as the sidecar runs it: 2 retries, its conditions, 503.
    let reviews = route(
        &inv,
        "outbound|9080||reviews.bookinfo.svc.cluster.local",
        None,
    );
    assert_eq!(reviews.caller.as_deref(), Some("productpage.bookinfo"));
    assert_eq!(reviews.resource.kind, "config_dump");
    assert_eq!(reviews.resource.name, "9080");
    assert_eq!(
        reviews.resource.path,
        "configs[4].dynamic_route_configs[0].route_config.virtual_hosts[0].routes[0]"
    );
    let p = &reviews.policy;
    assert!(p.get("request_timeout").is_none(), "timeout 0s disables it");
    assert!(p.get("timeout").is_none());
    assert_eq!(value(p, "max_attempts"), "3");
    assert_eq!(
        line(origin(p, "max_attempts")),
        line_of(&text, "\"numRetries\": 2")
    );
    assert_eq!(
        value(p, "retry_on"),
        "[\"connect-failure\", \"refused-stream\", \"unavailable\", \"cancelled\", \"503\"]"
    );
    assert_eq!(value(p, "backoff"), "\"full-jitter(base=25ms, cap=250ms)\"");
    assert_eq!(unread_about(&inv, "max_grpc_timeout").len(), 1);

    // Durations as "1.500s" and {seconds: "0", nanos}; per-try × attempts beyond the route
    // timeout is kept as written (the graph rule attempts-cannot-fit reports it).
    let ratings = route(
        &inv,
        "outbound|9080|v1|ratings.bookinfo.svc.cluster.local",
        Some("ratings-route"),
    );
    assert_eq!(ratings.backends.len(), 2);
    assert_eq!(ratings.backends[1].weight, 20.0);
    let p = &ratings.policy;
    assert_eq!(value(p, "request_timeout"), "\"1500ms\"");
    assert_eq!(
        line(origin(p, "request_timeout")),
        line_of(&text, "\"1.500s\"")
    );
    assert_eq!(value(p, "timeout"), "\"600ms\"");
    assert_eq!(value(p, "max_attempts"), "4");
    assert_eq!(value(p, "backoff"), "\"full-jitter(base=50ms, cap=500ms)\"");
    assert_eq!(
        value(p, "retry_on"),
        "[\"gateway-error\", \"connect-failure\", \"refused-stream\", \"reset\", \"timeout\"]"
    );
    // int64 as a string, read and listed.
    assert_eq!(
        unread_about(&inv, "host_selection_retry_max_attempts").len(),
        2
    );
    // A route config with several routes names the catch-all one.
    let default = route(
        &inv,
        "outbound|9080||ratings.bookinfo.svc.cluster.local",
        Some("ratings-default"),
    );
    assert_eq!(
        value(&default.policy, "max_attempts"),
        "1",
        "no retry_policy: Envoy does not retry"
    );
    assert_eq!(
        origin(&default.policy, "max_attempts"),
        &Origin::Default("Envoy default: no retry_policy, no retries")
    );
    // Pass-through and inbound routes and clusters are no calls between services.
    assert_eq!(inv.routes.len(), 3);
    assert!(!unread_about(&inv, "PassthroughCluster").is_empty());
    assert_eq!(unread_about(&inv, "inbound|9080||").len(), 2);
    assert_eq!(unread_about(&inv, "BlackHoleCluster").len(), 1);
    assert_eq!(unread_about(&inv, "SecretsConfigDump").len(), 1);
    assert!(unread_about(&inv, "ScopedRoutesConfigDump").is_empty());
    for r in &inv.routes {
        assert_graph_accepts(&r.policy, "timeout = \"1h\"\n");
    }
}

#[test]
fn istio_config_dump_clusters() {
    let (text, inv) = load(DUMP);
    assert_eq!(inv.destinations.len(), 2);
    let reviews = destination(&inv, "outbound|9080||reviews.bookinfo.svc.cluster.local");
    assert_eq!(reviews.caller.as_deref(), Some("productpage.bookinfo"));
    assert_eq!(value(&reviews.policy, "connect_timeout"), "\"10s\"");
    assert_eq!(value(&reviews.policy, "retry_budget"), "\"none\"");
    let unbounded = unread_about(&inv, "circuit_breakers.max_retries");
    assert!(unbounded
        .iter()
        .any(|u| u.why.contains("no limit on retries in flight")));
    assert_eq!(unread_about(&inv, "circuit_breakers.max_requests").len(), 1);
    let ratings = destination(&inv, "outbound|9080||ratings.bookinfo.svc.cluster.local");
    assert_eq!(value(&ratings.policy, "connect_timeout"), "\"500ms\"");
    assert_eq!(
        value(&ratings.policy, "retry_budget"),
        "{ ratio = 0.1, min_per_sec = 2 }"
    );
    assert_eq!(
        line(origin(&ratings.policy, "retry_budget")),
        line_of(&text, "\"retryBudget\"")
    );
    assert_eq!(unread_about(&inv, "outlier_detection").len(), 1);
}

/// A bootstrap with one route to cluster `a`, open for the route's fields (at 18 spaces).
const HCM: &str = r#"static_resources:
  listeners:
  - filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          route_config:
            virtual_hosts:
            - routes:
              - match: {prefix: /}
                route:
                  cluster: a
"#;

#[test]
fn malformed_values_are_errors_at_their_line_column_and_field() {
    let text =
        format!("{HCM}                  retry_policy: {{retry_on: 5xx, per_try_timeout: fast}}\n");
    let error = inventory_of("bad.yaml", &text).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "bad.yaml:13:66: `static_resources.listeners[0].filter_chains[0].filters[0]\
             .typed_config.route_config.virtual_hosts[0].routes[0].route.retry_policy\
             .per_try_timeout`: not a duration"
        ),
        "{error}"
    );

    let dump =
        "{\"configs\": [{\"@type\": \"type.googleapis.com/envoy.admin.v3.RoutesConfigDump\",\n\
                \"dynamicRouteConfigs\": [{\"routeConfig\": {\"name\": \"80\", \"virtualHosts\": \
                [{\"routes\": [{\"match\": {\"prefix\": \"/\"}, \"route\": {\"cluster\": \"a\",\n\
                \"retryPolicy\": {\"retryOn\": \"5xx\", \"numRetries\": \"-1\"}}}]}]}}]}]}";
    let error = inventory_of("dump.json", dump).unwrap_err().to_string();
    assert!(
        error.starts_with("dump.json:3:49: `configs[0].dynamic_route_configs[0]"),
        "{error}"
    );
    assert!(
        error.contains("retry_policy.num_retries`: not a whole number"),
        "{error}"
    );

    let backoff = format!(
        "{HCM}                  retry_policy:\n                    retry_on: reset\n          \
         \x20         retry_back_off: {{base_interval: 1s, max_interval: 100ms}}\n"
    );
    let error = inventory_of("backoff.yaml", &backoff)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("backoff.yaml:15:71: "), "{error}");
    assert!(
        error.contains("retry_back_off.max_interval`: 100ms is below base_interval 1s"),
        "{error}"
    );
}

#[test]
fn per_try_timeout_above_the_route_timeout_is_clamped_with_a_note() {
    let text = format!(
        "{HCM}                  timeout: 1s\n                  retry_policy: {{retry_on: \
         connect-failure, per_try_timeout: 3s}}\n"
    );
    let inv = inventory_of("clamp.yaml", &text).unwrap();
    let p = &inv.routes[0].policy;
    assert_eq!(value(p, "request_timeout"), "\"1s\"");
    assert_eq!(value(p, "timeout"), "\"1s\"");
    assert_eq!(value(p, "max_attempts"), "2");
    assert_eq!(
        origin(p, "max_attempts"),
        &Origin::Default("Envoy default: num_retries 1, so 2 attempts")
    );
    let note = unread_about(&inv, "per_try_timeout");
    assert_eq!(note.len(), 1);
    assert!(
        note[0].why.contains("3s is above the route timeout 1s"),
        "{}",
        note[0].why
    );
    assert_graph_accepts(p, "");
}

#[test]
fn the_example_imports_with_its_bad_settings() {
    let dir = format!("{}/../../examples/mesh/envoy", env!("CARGO_MANIFEST_DIR"));
    let docs = crate::read_paths(&[dir.into()]).unwrap();
    let inv = crate::inventory(&docs).unwrap();
    let checkout = route(&inv, "checkout", Some("checkout"));
    assert_eq!(checkout.caller.as_deref(), Some("edge"));
    assert_eq!(checkout.method.as_deref(), Some("POST"));
    // 4 attempts × 500ms cannot fit in the 1s route timeout.
    assert_eq!(value(&checkout.policy, "max_attempts"), "4");
    assert_eq!(value(&checkout.policy, "timeout"), "\"500ms\"");
    assert_eq!(value(&checkout.policy, "request_timeout"), "\"1s\"");
    let search = route(&inv, "search", Some("search"));
    assert_eq!(value(&search.policy, "request_timeout"), "\"15s\"");
    assert_eq!(value(&search.policy, "timeout"), "\"15s\"");
    assert_eq!(
        value(&destination(&inv, "checkout").policy, "retry_budget"),
        "\"none\""
    );
    assert_eq!(
        value(&destination(&inv, "checkout").policy, "connect_timeout"),
        "\"5s\""
    );
}

#[test]
fn a_resource_filtered_dump_lists_the_entries_themselves() {
    // `curl 'localhost:15000/config_dump?resource=dynamic_route_configs'`.
    let text = r#"{"configs": [
 {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump.DynamicRouteConfig",
  "route_config": {"name": "80", "virtual_hosts": [{"name": "a", "domains": ["*"], "routes": [
   {"match": {"prefix": "/"}, "route": {"cluster": "outbound|80||a.shop.svc.cluster.local",
    "timeout": "3s", "retry_policy": {"retry_on": "reset", "num_retries": "2"}}}]}]}},
 {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster",
  "cluster": {"name": "outbound|80||a.shop.svc.cluster.local", "connect_timeout": "1s"}}
]}"#;
    let inv = inventory_of("routes.json", text).unwrap();
    let a = route(&inv, "outbound|80||a.shop.svc.cluster.local", None);
    assert_eq!(value(&a.policy, "request_timeout"), "\"3s\"");
    assert_eq!(value(&a.policy, "max_attempts"), "3");
    // Envoy's `reset` retries every reset, a failed connection and a refused stream included
    // (`wouldRetryFromReset`); without a per-try timeout, no `timeout`.
    assert_eq!(
        value(&a.policy, "retry_on"),
        "[\"reset\", \"connect-failure\", \"refused-stream\"]"
    );
    let cluster = destination(&inv, "outbound|80||a.shop.svc.cluster.local");
    assert_eq!(value(&cluster.policy, "connect_timeout"), "\"1s\"");
}

/// The Envoy reader and the Istio reader give every Envoy retry name the same conditions (Istio
/// hands `retryOn` to Envoy as it is), with a per-try timeout and without.
#[test]
fn envoy_and_istio_read_every_retry_name_alike() {
    let names = "5xx gateway-error reset reset-before-request connect-failure refused-stream \
                 retriable-4xx cancelled deadline-exceeded internal resource-exhausted unavailable";
    for name in names.split(' ') {
        for per_try in [true, false] {
            let envoy_per_try = if per_try { ", per_try_timeout: 1s" } else { "" };
            let envoy = format!(
                "{HCM}                  timeout: 5s\n                  retry_policy: \
                 {{retry_on: {name}{envoy_per_try}}}\n"
            );
            let envoy = inventory_of("envoy.yaml", &envoy).unwrap();
            let istio_per_try = if per_try {
                "\n      perTryTimeout: 1s"
            } else {
                ""
            };
            let istio = format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: a\n\
                 spec:\n  hosts: [a]\n  http:\n  - route:\n    - destination:\n        host: a\n    \
                 timeout: 5s\n    retries:\n      attempts: 2\n      retryOn: {name}{istio_per_try}\n"
            );
            let istio = inventory_of("vs.yaml", &istio).unwrap();
            assert_eq!(
                value(&envoy.routes[0].policy, "retry_on"),
                value(&istio.routes[0].policy, "retry_on"),
                "{name}, per-try timeout {per_try}"
            );
        }
    }
}
