//! A graph without a base: the placeholder caller, names, instances, weights, the mesh's
//! defaults, destination policies, clamps, and the source map.

use std::time::Duration;

use super::*;
use crate::inventory::Inventory;

fn reviews() -> Route {
    route(System::Istio, "reviews", "prod", "vs.yaml", 10)
        .set("timeout", "\"2s\"", 14)
        .set("request_timeout", "\"6s\"", 12)
        .set("max_attempts", "4", 15)
        .default("retry_budget", "\"none\"", "Istio default")
}

#[test]
fn each_route_is_a_call_of_the_placeholder_with_each_value_and_its_source() {
    let inv = Inventory {
        routes: vec![reviews()],
        workloads: vec![
            deployment("reviews-v1", "prod", 3, "deploy.yaml", 8),
            service("reviews", "prod", "reviews-v1", "svc.yaml", 2),
        ],
        kinds: [
            ("VirtualService".to_string(), 1),
            ("Deployment".to_string(), 1),
        ]
        .into(),
        ..Inventory::default()
    };
    let imported = import(&inv);
    let toml = &imported.toml;
    let graph = parsed(&imported);
    assert_eq!(graph.entry.service, "mesh-callers");
    let endpoint = graph.services["mesh-callers"].endpoint("reviews").unwrap();
    let call = &endpoint.calls[0];
    assert_eq!(call.to, "reviews");
    assert_eq!(call.timeout, Some(Duration::from_secs(2)));
    assert_eq!(call.request_timeout, Some(Duration::from_secs(6)));
    assert_eq!(call.max_attempts, 4);
    assert_eq!(call.limiter, None);
    // The Service takes the replicas of the Deployment its selector matches.
    assert_eq!(graph.services["reviews"].instances, 3);
    assert!(
        toml.contains("timeout = \"2s\" # vs.yaml:14 (timeout)\n"),
        "{toml}"
    );
    assert!(
        toml.contains("retry_budget = \"none\" # Istio default\n"),
        "{toml}"
    );
    assert!(
        toml.contains("instances = 3 # deploy.yaml:8 (spec.replicas)\n"),
        "{toml}"
    );
    assert!(
        toml.contains("# Documents read: 1 Deployment, 1 VirtualService."),
        "{toml}"
    );
    assert!(
        toml.contains("`mesh-callers`"),
        "the header names the placeholder:\n{toml}"
    );
    // The source map: each value's line, and the call's header at the route.
    let line = line_of(toml, "timeout = \"2s\"");
    assert_eq!(
        imported.sources.locate(line),
        Some(&at("vs.yaml", 14, "timeout"))
    );
    let header = line_of(toml, "[[services.mesh-callers.endpoints.reviews.calls]]");
    assert_eq!(
        imported.sources.locate(header),
        Some(&at("vs.yaml", 10, "route to reviews"))
    );
    assert_eq!(call.span.line, header);
    let instances = line_of(toml, "instances = 3");
    assert_eq!(
        imported.sources.locate(instances),
        Some(&at("deploy.yaml", 8, "spec.replicas"))
    );
}

#[test]
fn a_service_without_a_selector_match_takes_the_workload_of_its_name() {
    let inv = Inventory {
        routes: vec![reviews()],
        workloads: vec![deployment("reviews", "prod", 5, "deploy.yaml", 8)],
        ..Inventory::default()
    };
    assert_eq!(parsed(&import(&inv)).services["reviews"].instances, 5);
}

#[test]
fn one_name_in_two_namespaces_is_two_services_named_by_namespace() {
    let inv = Inventory {
        routes: vec![
            route(
                System::Istio,
                "reviews.prod.svc.cluster.local",
                "prod",
                "a.yaml",
                3,
            )
            .set("timeout", "\"1s\"", 4),
            route(System::Istio, "reviews", "staging", "b.yaml", 3).set("timeout", "\"3s\"", 4),
            route(
                System::Envoy,
                "outbound|9080||ratings.prod.svc.cluster.local",
                "x",
                "e.yaml",
                9,
            )
            .set("timeout", "\"1s\"", 10),
        ],
        ..Inventory::default()
    };
    let graph = parsed(&import(&inv));
    let callers = &graph.services["mesh-callers"];
    let to: Vec<(&str, &str)> = callers
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.calls[0].to.as_str()))
        .collect();
    assert_eq!(
        to,
        [
            ("reviews-prod", "reviews-prod"),
            ("reviews-staging", "reviews-staging"),
            ("ratings", "ratings")
        ]
    );
    // The same inventory in another order gives the same names.
    let mut reversed = inv.clone();
    reversed.routes.reverse();
    let again = parsed(&import(&reversed));
    assert!(
        again.services.contains_key("reviews-prod")
            && again.services.contains_key("reviews-staging")
    );
}

#[test]
fn a_routes_backends_split_its_endpoint_by_weight() {
    let inv = Inventory {
        routes: vec![route(System::Istio, "reviews", "prod", "vs.yaml", 3)
            .set("timeout", "\"1s\"", 4)
            .backend("reviews-v1", 80.0, 7)
            .backend("reviews-v2", 20.0, 9)],
        ..Inventory::default()
    };
    let imported = import(&inv);
    let graph = parsed(&imported);
    let callers = &graph.services["mesh-callers"];
    let shares: Vec<(Option<&str>, f64)> =
        callers.each_endpoint().map(|e| (e.name, e.share)).collect();
    assert_eq!(
        shares,
        [(Some("reviews-v1"), 0.8), (Some("reviews-v2"), 0.2)]
    );
    assert!(
        imported.toml.contains("weight = 0.8 # vs.yaml:7 (weight)"),
        "{}",
        imported.toml
    );
}

#[test]
fn a_service_in_a_mesh_with_no_route_gets_the_meshs_defaults() {
    let inv = Inventory {
        workloads: vec![
            service("details", "prod", "details", "svc.yaml", 2),
            service("outside", "other", "outside", "svc.yaml", 20),
        ],
        meshes: vec![istio_in("prod")],
        ..Inventory::default()
    };
    let imported = import(&inv);
    let graph = parsed(&imported);
    let callers = &graph.services["mesh-callers"];
    let names: Vec<&str> = callers.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["details"], "only the Service in the mesh");
    let toml = &imported.toml;
    assert!(
        toml.contains("# no route: the defaults of Istio's sidecars (mesh: ns.yaml:4 (istio-injection: enabled))"),
        "{toml}"
    );
    let header = line_of(toml, "[[services.mesh-callers.endpoints.details.calls]]");
    assert_eq!(
        imported.sources.locate(header),
        Some(&Origin::Default("Istio default"))
    );
    // Every value the mesh's default writes has the default as its source.
    for setting in crate::istio::default_policy().settings {
        assert!(toml.contains(&format!(
            "{} = {} # Istio default",
            setting.key, setting.value
        )));
    }
}

#[test]
fn a_destination_policy_fills_what_the_route_lacks_and_replaces_its_defaults() {
    let inv = Inventory {
        routes: vec![reviews().set("connect_timeout", "\"500ms\"", 16)],
        destinations: vec![destination(
            "reviews",
            "prod",
            &[
                ("retry_budget", "{ ratio = 0.2, min_per_sec = 3 }", 9),
                ("connect_timeout", "\"1s\"", 7),
                ("hedge", "{ delay = \"50ms\" }", 11),
            ],
        )],
        ..Inventory::default()
    };
    let imported = import(&inv);
    let call = &parsed(&imported).services["mesh-callers"].endpoints[0].calls[0];
    // The budget replaces Istio's default "none"; the route's own connect timeout stays.
    assert!(imported
        .toml
        .contains("retry_budget = { ratio = 0.2, min_per_sec = 3 } # dr.yaml:9 (retry_budget)"));
    assert_eq!(call.connect_timeout, Some(Duration::from_millis(500)));
    assert!(call.hedge.is_some());
}

#[test]
fn a_connect_timeout_above_the_timeout_is_clamped_and_listed_as_not_read() {
    let inv = Inventory {
        routes: vec![route(System::Envoy, "db", "prod", "envoy.yaml", 3)
            .set("timeout", "\"1s\"", 4)
            .default("connect_timeout", "\"5s\"", "Envoy default")],
        ..Inventory::default()
    };
    let imported = import(&inv);
    let call = &parsed(&imported).services["mesh-callers"].endpoints[0].calls[0];
    assert_eq!(call.connect_timeout, Some(Duration::from_secs(1)));
    let note = imported
        .unread
        .iter()
        .find(|u| u.what == "connect_timeout of mesh-callers/db -> db")
        .unwrap();
    assert_eq!(note.origin, Origin::Default("Envoy default"));
    assert!(imported.toml.contains(
        "# not read: Envoy default connect_timeout of mesh-callers/db -> db: 5s is above the attempt's timeout 1s"
    ), "{}", imported.toml);
    assert!(imported.toml.contains("# Not read: 1 (listed at the end)."));
}

#[test]
fn the_readers_unread_items_and_findings_are_listed_at_the_end() {
    let mut inv = Inventory {
        routes: vec![reviews()],
        ..Inventory::default()
    };
    inv.unread(
        at("vs.yaml", 30, "x"),
        "retryRemoteLocalities",
        "not modelled",
    );
    inv.findings.push(crate::inventory::ImportFinding {
        rule: "istio-unbounded-retries",
        severity: stormguard_graph::Severity::Warning,
        host: None,
        message: "retries with no budget".into(),
        fix: "a retryBudget".into(),
        origin: at("vs.yaml", 15, "attempts"),
        remedy: None,
    });
    let imported = import(&inv);
    assert!(imported
        .toml
        .contains("# not read: vs.yaml:30 retryRemoteLocalities: not modelled\n"));
    assert!(imported.toml.contains(
        "# warning[istio-unbounded-retries] vs.yaml:15: retries with no budget (fix: a retryBudget)\n"
    ));
    assert_eq!(imported.unread.len(), 1);
    assert_eq!(imported.findings.len(), 1);
}

#[test]
fn a_thousand_routes_and_services_are_a_thousand_calls_that_parse() {
    let mut inv = Inventory::default();
    for i in 0..1000 {
        let name = format!("svc{i}");
        inv.routes.push(
            route(System::Istio, &name, "prod", "vs.yaml", i + 2)
                .set("timeout", "\"1s\"", i + 3)
                .default("max_attempts", "3", "Istio default")
                .default("retry_budget", "\"none\"", "Istio default"),
        );
        inv.workloads
            .push(deployment(&name, "prod", 2, "deploy.yaml", i + 5));
        inv.workloads
            .push(service(&name, "prod", &name, "svc.yaml", i + 2));
    }
    let imported = import(&inv);
    let graph = parsed(&imported);
    assert_eq!(graph.services["mesh-callers"].endpoints.len(), 1000);
    assert_eq!(graph.services["svc999"].instances, 2);
    assert_eq!(imported.sources.lines.len(), 1000 * 5);
}

#[test]
fn a_destination_rule_no_call_goes_to_is_listed_as_applied_to_none() {
    // payments has a Service (its calls get Istio's defaults, with the rule's values); ghost is
    // named by no route, Service or base call: its rule's values were dropped without a word.
    let text = "apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: payments, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments, namespace: shop}
spec:
  host: payments
  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 250ms}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ghost, namespace: shop}
spec:
  host: ghost.other.svc.cluster.local
  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 250ms}}}
";
    let inv = crate::testing::inventory_of("dr.yaml", text).unwrap();
    let imported = import(&inv);
    let unused: Vec<_> = imported
        .unread
        .iter()
        .filter(|u| u.why.contains("no call of the graph goes to this host"))
        .collect();
    assert_eq!(unused.len(), 1, "{:#?}", imported.unread);
    assert_eq!(
        unused[0].what,
        "DestinationRule ghost host ghost.other.svc.cluster.local"
    );
    assert!(
        unused[0]
            .why
            .ends_with("so its connect_timeout is on no call"),
        "{}",
        unused[0].why
    );
    // At the rule's document.
    assert_eq!(
        unused[0].origin.file_line().map(|(_, line, _)| line),
        Some(17)
    );
    assert!(
        imported
            .toml
            .contains("connect_timeout = \"250ms\" # dr.yaml:"),
        "{}",
        imported.toml
    );
}
