//! Gateway API routes read from files shaped like the project's docs examples
//! (`tests/data/gateway-api/`).

use crate::error::ImportError;
use crate::inventory::{Inventory, Route, System};
use crate::source::Origin;
use crate::testing::setting;

/// The test data directory's file `name` (relative, as a user would name it).
pub(crate) fn data(name: &str) -> (String, String) {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (format!("tests/data/{name}"), text)
}

/// Reads data files as `import` does (documents, then the inventory with its resolve pass).
pub(crate) fn load(names: &[&str]) -> Result<Inventory, ImportError> {
    let mut documents = Vec::new();
    for name in names {
        let (file, text) = data(name);
        documents.extend(crate::doc::parse_documents(&file, &text)?);
    }
    crate::inventory(&documents)
}

/// The 1-based line of the first line of data file `name` that contains `needle` after the
/// line containing `after` (so that tests name lines by what is on them).
pub(crate) fn line_of(name: &str, after: &str, needle: &str) -> u32 {
    let (_, text) = data(name);
    let start = text.lines().position(|l| l.contains(after)).expect(after);
    let offset = text
        .lines()
        .skip(start)
        .position(|l| l.contains(needle))
        .expect(needle);
    (start + offset + 1) as u32
}

/// The routes to `host` (by name).
pub(crate) fn routes_to<'a>(inv: &'a Inventory, host: &str) -> Vec<&'a Route> {
    inv.routes.iter().filter(|r| r.host.name == host).collect()
}

#[test]
fn gamma_route_reads_timeouts_retry_and_backends() {
    const F: &str = "gateway-api/gamma-reviews.yaml";
    let inv = load(&[F]).unwrap();
    let routes = routes_to(&inv, "reviews");
    assert_eq!(routes.len(), 2, "{routes:#?}");
    let read = routes[0];
    assert_eq!(read.system, System::GatewayApi);
    assert_eq!(read.name.as_deref(), Some("read"));
    assert_eq!(read.method.as_deref(), Some("GET"));
    assert_eq!(read.host.namespace.as_deref(), Some("bookinfo"));
    assert_eq!(read.caller, None);
    assert_eq!(read.resource.path, "spec.rules[0]");
    assert_eq!(
        read.origin.file_line().unwrap().1,
        line_of(F, "rules:", "- name: read")
    );
    assert_eq!(
        setting(read, "request_timeout"),
        ("\"10s\"".into(), line_of(F, "timeouts:", "request: 10s"))
    );
    assert_eq!(
        setting(read, "timeout"),
        (
            "\"2s\"".into(),
            line_of(F, "timeouts:", "backendRequest: 2s")
        )
    );
    // attempts counts retries: 3 retries are 4 attempts.
    assert_eq!(
        setting(read, "max_attempts"),
        ("4".into(), line_of(F, "retry:", "attempts: 3"))
    );
    assert_eq!(
        setting(read, "retry_on"),
        (
            "[\"500\", \"503\", \"connect-failure\", \"reset\", \"timeout\"]".into(),
            line_of(F, "retry:", "codes:") + 1
        )
    );
    // Never below the 100ms minimum: equal jitter over 200ms waits at least 100ms.
    assert_eq!(
        setting(read, "backoff"),
        (
            "\"equal-jitter(base=200ms, cap=2s)\"".into(),
            line_of(F, "retry:", "backoff: 100ms")
        )
    );
    assert_eq!(setting(read, "retry_budget"), ("\"none\"".into(), 0));
    assert_eq!(setting(read, "idempotent"), ("true".into(), 0));
    let weights: Vec<(&str, f64)> = read
        .backends
        .iter()
        .map(|b| (b.host.name.as_str(), b.weight))
        .collect();
    assert_eq!(weights, [("reviews-v1", 90.0), ("reviews-v2", 10.0)]);
    assert_eq!(
        read.backends[1].origin.file_line().unwrap().1,
        line_of(F, "backendRefs:", "- name: reviews-v2")
    );

    // The second rule has no name: rule-1; `0s` disables the request timeout; no retry stanza.
    let write = routes[1];
    assert_eq!(write.name.as_deref(), Some("rule-1"));
    assert_eq!(write.method.as_deref(), Some("POST"));
    assert!(write.policy.get("request_timeout").is_none(), "{write:#?}");
    assert!(write.policy.get("max_attempts").is_none(), "{write:#?}");
    assert!(inv
        .unread
        .iter()
        .any(|u| u.what == "HTTPRoute retry" && u.why.contains("GEP-1731")));
    assert!(inv.unread.iter().any(|u| u.what == "retry.backoff"));
    let noted = |what: &str| {
        inv.unread
            .iter()
            .find(|u| u.what == what)
            .map(|u| u.origin.file_line().unwrap().1)
    };
    assert_eq!(
        noted("no retry stanza"),
        Some(line_of(F, "rules:", "- matches:"))
    );
    assert_eq!(
        noted("timeouts.backendRequest unset"),
        Some(line_of(F, "rules:", "- matches:"))
    );
    assert_eq!(inv.kinds.get("HTTPRoute"), Some(&1));
    assert!(
        inv.meshes.is_empty(),
        "a plain Gateway API route shows no mesh"
    );
}

#[test]
fn gateway_route_is_on_calls_from_the_gateway() {
    const F: &str = "gateway-api/gateway-store.yaml";
    let inv = load(&[F]).unwrap();
    let hosts: Vec<(&str, Option<&str>)> = inv
        .routes
        .iter()
        .map(|r| (r.host.name.as_str(), r.caller.as_deref()))
        .collect();
    assert_eq!(
        hosts,
        [
            ("store-v1", Some("example-gateway")),
            ("store-v2", Some("example-gateway"))
        ]
    );
    let route = &inv.routes[0];
    assert_eq!(route.name, None, "one rule: every request");
    assert_eq!(
        setting(route, "request_timeout"),
        ("\"5s\"".into(), line_of(F, "timeouts:", "request: 5s"))
    );
    assert!(route.policy.get("timeout").is_none());
    let note = inv
        .unread
        .iter()
        .find(|u| u.what == "north-south route")
        .expect("noted");
    assert!(note.why.contains("caller example-gateway"), "{note:?}");
    assert_eq!(
        inv.unread
            .iter()
            .filter(|u| u.what == "north-south route")
            .count(),
        1,
        "once per file"
    );
}

#[test]
fn grpc_route_has_routes_and_no_policy() {
    const F: &str = "gateway-api/grpc-echo.yaml";
    let inv = load(&[F]).unwrap();
    let names: Vec<Option<&str>> = inv.routes.iter().map(|r| r.name.as_deref()).collect();
    assert_eq!(names, [Some("echo.v1.Echo/Say"), Some("rule-1")]);
    assert!(inv
        .routes
        .iter()
        .all(|r| r.policy.settings.is_empty() && r.method.is_none()));
    assert_eq!(inv.routes[0].host.name, "echo");
    assert!(inv
        .unread
        .iter()
        .any(|u| u.what == "GRPCRoute timeouts and retries"));
}

fn error_of(name: &str) -> String {
    load(&[name]).unwrap_err().to_string()
}

#[test]
fn malformed_values_name_file_line_column_and_field() {
    let e = error_of("gateway-api/bad-backend-request.yaml");
    let line = line_of(
        "gateway-api/bad-backend-request.yaml",
        "timeouts",
        "backendRequest",
    );
    assert!(
        e.starts_with(&format!("tests/data/gateway-api/bad-backend-request.yaml:{line}:23: `spec.rules[0].timeouts.backendRequest`")),
        "{e}"
    );
    assert!(e.contains("not a duration"), "{e}");

    let e = error_of("gateway-api/bad-code.yaml");
    let line = line_of("gateway-api/bad-code.yaml", "retry", "codes");
    assert!(
        e.contains(&format!(":{line}:20: `spec.rules[0].retry.codes[1]`")),
        "{e}"
    );

    let e = error_of("gateway-api/bad-backend-longer.yaml");
    let line = line_of(
        "gateway-api/bad-backend-longer.yaml",
        "timeouts",
        "backendRequest",
    );
    assert!(
        e.contains(&format!(":{line}:")) && e.contains("cannot be longer than request"),
        "{e}"
    );
}

#[test]
fn a_gamma_route_in_a_linkerd_namespace_is_linkerds() {
    // The same reviews route, in a namespace where a Service carries Linkerd annotations:
    // Linkerd ignores the spec's retry and timeouts of a gateway.networking.k8s.io route.
    let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\n  namespace: bookinfo\n  annotations:\n    timeout.linkerd.io/request: 3s\n";
    let (file, route) = data("gateway-api/gamma-reviews.yaml");
    let mut documents = crate::doc::parse_documents(&file, &route).unwrap();
    documents.extend(crate::doc::parse_documents("svc.yaml", text).unwrap());
    let inv = crate::inventory(&documents).unwrap();
    let read = routes_to(&inv, "reviews")[0];
    assert_eq!(read.system, System::Linkerd);
    assert_eq!(setting(read, "request_timeout"), ("\"3s\"".into(), 7));
    assert_eq!(setting(read, "max_attempts").0, "1");
    assert!(read.policy.get("timeout").is_none());
    let dropped: Vec<&str> = inv
        .unread
        .iter()
        .filter(|u| u.why.contains("Linkerd reads no rules[].retry"))
        .map(|u| u.what.as_str())
        .collect();
    assert!(dropped.contains(&"max_attempts = 4"), "{dropped:?}");
    assert!(
        dropped.contains(&"request_timeout = \"10s\""),
        "{dropped:?}"
    );
    let Origin::File { line, .. } = &inv
        .unread
        .iter()
        .find(|u| u.what == "max_attempts = 4")
        .unwrap()
        .origin
    else {
        panic!("a file origin")
    };
    assert_eq!(
        *line,
        line_of("gateway-api/gamma-reviews.yaml", "retry:", "attempts: 3")
    );
}

/// The graph's own findings on a call from a placeholder caller with each route's policy, by
/// route (`host` or `host/name`), for the examples under `examples/mesh/` (the findings only
/// imported settings make, such as `attempts-cannot-fit`, are the assembler's).
pub(crate) fn example_findings(dir: &str) -> Vec<(String, Vec<&'static str>)> {
    let path = format!("{}/../../examples/mesh/{dir}", env!("CARGO_MANIFEST_DIR"));
    let documents = crate::read_paths(&[path.into()]).unwrap();
    let inv = crate::inventory(&documents).unwrap();
    inv.routes
        .iter()
        .map(|route| {
            let mut text = String::from(
                "[entry]\nservice = \"a\"\n[services.b]\n[[services.a.calls]]\nto = \"b\"\n",
            );
            for setting in &route.policy.settings {
                text.push_str(&format!("{} = {}\n", setting.key, setting.value));
            }
            if let Some(method) = &route.method {
                text.push_str(&format!("method = \"{method}\"\n"));
            }
            let graph = stormguard_graph::parse::parse("example.toml", &text)
                .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
            let mut rules: Vec<&'static str> = stormguard_graph::check::check(&graph)
                .findings
                .iter()
                .map(|f| f.rule)
                .collect();
            rules.sort_unstable();
            rules.dedup();
            let name = match &route.name {
                Some(name) => format!("{}/{name}", route.host.name),
                None => route.host.name.clone(),
            };
            (name, rules)
        })
        .collect()
}

#[test]
fn the_example_shows_the_findings_its_readme_lists() {
    let findings = example_findings("gateway-api");
    let of = |name: &str| {
        findings
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} in {findings:?}"))
            .1
            .clone()
    };
    let order = of("checkout/place-order");
    for rule in ["too-many-attempts", "retry-without-budget"] {
        assert!(order.contains(&rule), "{rule}: {order:?}");
    }
    assert!(of("checkout/list-orders").contains(&"missing-timeout"));
    let edge = of("frontend");
    assert!(
        edge.contains(&"retry-without-budget") && edge.contains(&"too-many-attempts"),
        "{edge:?}"
    );
}

#[test]
fn zero_retries_write_one_attempt_and_no_way_of_retrying() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\nspec:\n  parentRefs:\n  - {kind: Service, group: \"\", name: ratings}\n  rules:\n  - retry:\n      attempts: 0\n      codes: [503]\n";
    let documents = crate::doc::parse_documents("zero.yaml", text).unwrap();
    let inv = crate::inventory(&documents).unwrap();
    let route = &inv.routes[0];
    assert_eq!(setting(route, "max_attempts"), ("1".into(), 10));
    for key in ["retry_on", "backoff", "retry_budget", "idempotent"] {
        assert!(route.policy.get(key).is_none(), "{key}: {route:#?}");
    }
}

#[test]
fn a_service_referenced_on_two_ports_is_one_destination() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  namespace: prod\n  annotations:\n    retry.linkerd.io/limit: \"1\"\nspec:\n  parentRefs:\n  - {kind: Service, group: core, name: ratings, port: 80}\n  - {kind: Service, group: core, name: ratings, port: 8080}\n";
    let documents = crate::doc::parse_documents("ports.yaml", text).unwrap();
    let inv = crate::inventory(&documents).unwrap();
    assert_eq!(inv.routes.len(), 1, "{:#?}", inv.routes);
    assert_eq!(setting(&inv.routes[0], "max_attempts"), ("2".into(), 7));
    assert_eq!(
        inv.meshes[0].origin.to_string(),
        "ports.yaml:1 (HTTPRoute r)"
    );
}
