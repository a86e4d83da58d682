//! The Istio reader on Bookinfo-shaped files (`tests/data/istio/`): each setting with its value
//! and the line it came from, Istio's defaults where the files are silent, the rules applied
//! across files, the finding, what is listed as unread, and malformed input.

use std::path::PathBuf;

use crate::doc::parse_documents;
use crate::inventory::{Inventory, Route};
use crate::testing::{route, setting};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/istio")
        .join(name)
}

fn import(names: &[&str]) -> Inventory {
    let paths: Vec<PathBuf> = names.iter().map(|n| data(n)).collect();
    let documents = crate::read_paths(&paths).unwrap();
    crate::inventory(&documents).unwrap()
}

fn bookinfo() -> Inventory {
    import(&[
        "virtual-services.yaml",
        "destination-rules.yaml",
        "kubectl-get.yaml",
    ])
}

fn origin_text(route: &Route, key: &str) -> String {
    route.policy.get(key).unwrap().origin.to_string()
}

fn findings_at(inv: &Inventory, host: &str) -> Vec<u32> {
    inv.findings
        .iter()
        .filter(|f| f.rule == super::UNBOUNDED_RETRIES)
        .filter(|f| f.host.as_ref().is_some_and(|h| h.name == host))
        .map(|f| f.origin.file_line().map_or(0, |(_, line, _)| line))
        .collect()
}

fn unread_mentions(inv: &Inventory, what: &str) -> bool {
    inv.unread.iter().any(|u| u.what.contains(what))
}

#[test]
fn route_with_retries_reads_every_field_and_its_line() {
    let inv = bookinfo();
    let jason = route(&inv, "reviews", Some("jason"));
    assert_eq!(jason.host.namespace.as_deref(), Some("bookinfo"));
    assert_eq!(jason.resource.path, "spec.http[0]");
    assert_eq!(jason.resource.kind, "VirtualService");
    assert_eq!(jason.resource.document, 1);
    assert_eq!(setting(jason, "timeout"), ("\"500ms\"".into(), 46));
    assert_eq!(setting(jason, "request_timeout"), ("\"2s\"".into(), 43));
    // attempts counts retries: 3 retries are 4 attempts.
    assert_eq!(setting(jason, "max_attempts"), ("4".into(), 45));
    // Envoy's 5xx retries resets and failed connections too, and the per-try timeout (set
    // here) as a reset; retriable-4xx is 409.
    assert_eq!(
        setting(jason, "retry_on"),
        (
            "[\"5xx\", \"connect-failure\", \"refused-stream\", \"reset\", \"409\", \"timeout\"]"
                .into(),
            47
        )
    );
    assert_eq!(
        setting(jason, "backoff"),
        ("\"full-jitter(base=25ms, cap=250ms)\"".into(), 0)
    );
    assert_eq!(origin_text(jason, "backoff"), "Istio default");
    assert_eq!(setting(jason, "idempotent"), ("true".into(), 0));
    // The DestinationRule's host-level connect timeout, and subset v2's retry budget.
    assert_eq!(setting(jason, "connect_timeout"), ("\"250ms\"".into(), 13));
    assert_eq!(
        setting(jason, "retry_budget"),
        ("{ ratio = 0.25, min_per_sec = 5 }".into(), 28)
    );
    assert!(origin_text(jason, "retry_budget").contains("subsets[v2].trafficPolicy.retryBudget"));
    assert_eq!(jason.backends.len(), 1);
    assert!(jason.backends[0].origin.to_string().contains("subset v2"));
    assert_eq!(jason.method, None);
    assert_eq!(jason.caller, None);
    assert!(unread_mentions(&inv, "http[0].match[0].headers"));
}

#[test]
fn route_without_retries_gets_istios_defaults() {
    let inv = bookinfo();
    let split = route(&inv, "reviews", Some("route-1"));
    // The route timeout is the attempt's too (perTryTimeout unset), and the whole call's.
    assert_eq!(setting(split, "timeout"), ("\"1s\"".into(), 57));
    assert!(origin_text(split, "timeout").contains("perTryTimeout unset"));
    assert_eq!(setting(split, "request_timeout"), ("\"1s\"".into(), 57));
    assert_eq!(setting(split, "max_attempts"), ("3".into(), 0));
    assert_eq!(origin_text(split, "max_attempts"), "Istio default");
    assert_eq!(
        setting(split, "retry_on"),
        (
            "[\"connect-failure\", \"refused-stream\", \"unavailable\", \"cancelled\"]".into(),
            0
        )
    );
    assert_eq!(setting(split, "retry_budget"), ("\"none\"".into(), 0));
    assert_eq!(setting(split, "connect_timeout"), ("\"250ms\"".into(), 13));
    let weights: Vec<f64> = split.backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [75.0, 25.0]);
    // Subsets v1 and v3 have no budget: nothing bounds these retries.
    assert_eq!(findings_at(&inv, "reviews"), [48]);
}

#[test]
fn no_timeout_means_none_not_envoys_15s() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: a\nspec:\n  hosts: [a]\n  http:\n  - route:\n    - destination:\n        host: a\n";
    let documents = parse_documents("a.yaml", text).unwrap();
    let inv = crate::inventory(&documents).unwrap();
    let only = route(&inv, "a", None);
    assert!(only.policy.get("timeout").is_none());
    assert!(only.policy.get("request_timeout").is_none());
    assert_eq!(only.host.namespace.as_deref(), Some("default"));
    assert_eq!(setting(only, "connect_timeout"), ("\"10s\"".into(), 0));
    assert_eq!(findings_at(&inv, "a"), [8]);
}

#[test]
fn per_try_timeout_above_the_route_timeout_is_clamped_and_listed() {
    let inv = bookinfo();
    let ratings = route(&inv, "ratings.bookinfo.svc.cluster.local", None);
    assert_eq!(setting(ratings, "timeout"), ("\"1s\"".into(), 84));
    assert_eq!(setting(ratings, "request_timeout"), ("\"1s\"".into(), 81));
    assert_eq!(setting(ratings, "max_attempts"), ("3".into(), 83));
    assert_eq!(
        setting(ratings, "retry_on"),
        (
            "[\"gateway-error\", \"connect-failure\", \"refused-stream\", \"reset\", \"503\", \"timeout\"]"
                .into(),
            85
        )
    );
    assert_eq!(
        setting(ratings, "backoff"),
        ("\"full-jitter(base=100ms, cap=1s)\"".into(), 86)
    );
    assert_eq!(
        setting(ratings, "retry_budget"),
        ("{ ratio = 0.2, min_per_sec = 3 }".into(), 43)
    );
    // Istio's 10 s connect timeout cannot outlive the 1 s attempt: written as it, from its
    // line (not "Istio default", which said 10 s).
    assert_eq!(setting(ratings, "connect_timeout"), ("\"1s\"".into(), 84));
    assert_eq!(ratings.caller.as_deref(), Some("reviews"));
    assert!(findings_at(&inv, "ratings.bookinfo.svc.cluster.local").is_empty());
    for what in [
        "perTryTimeout 2s",
        "retryOn envoy-ratelimited",
        "retryRemoteLocalities",
        "http[0].fault",
        "match[0].sourceLabels",
        "connect_timeout",
        "retryBudget",
        "http.http1MaxPendingRequests",
    ] {
        assert!(
            unread_mentions(&inv, what),
            "{what} not listed: {:#?}",
            inv.unread
        );
    }
}

#[test]
fn method_routes_and_disabled_retries() {
    let inv = bookinfo();
    let orders = route(&inv, "details", Some("orders"));
    assert_eq!(orders.method.as_deref(), Some("POST"));
    assert_eq!(setting(orders, "max_attempts"), ("3".into(), 108));
    assert_eq!(
        setting(orders, "retry_on"),
        (
            "[\"5xx\", \"connect-failure\", \"refused-stream\", \"reset\"]".into(),
            109
        )
    );
    assert_eq!(setting(orders, "idempotent"), ("true".into(), 0));
    assert_eq!(
        origin_text(orders, "idempotent"),
        "Istio default: retries any method"
    );
    assert_eq!(findings_at(&inv, "details"), [98]);
    let read = route(&inv, "details", Some("read"));
    assert_eq!(setting(read, "max_attempts"), ("1".into(), 116));
    // attempts 0: no retry policy, so the per-try timeout is the route's.
    assert_eq!(setting(read, "timeout"), ("\"3s\"".into(), 114));
    assert!(read.policy.get("retry_on").is_none());
    assert!(read.policy.get("idempotent").is_none());
    assert!(unread_mentions(&inv, "http[1].retries.perTryTimeout"));
}

#[test]
fn wildcard_and_gateway_hosts_and_other_kinds_are_listed() {
    let inv = bookinfo();
    assert!(unread_mentions(&inv, "VirtualService bookinfo host *"));
    assert!(!inv.routes.iter().any(|r| r.host.name == "*"));
    assert!(unread_mentions(
        &inv,
        "VirtualService bookinfo spec.gateways"
    ));
    assert!(unread_mentions(&inv, "outlierDetection"));
    assert!(inv
        .unread
        .iter()
        .any(|u| u.what == "Gateway" && u.why.contains("VirtualServices bound to it")));
    assert_eq!(inv.kinds.get("VirtualService"), Some(&4));
    assert_eq!(inv.kinds.get("DestinationRule"), Some(&2));
    // Istio runs in bookinfo: its resources and the namespace label say so.
    assert!(inv
        .meshes
        .iter()
        .any(|m| m.system == crate::inventory::System::Istio
            && m.namespace.as_deref() == Some("bookinfo")));
}

#[test]
fn destination_policy_for_calls_without_a_route() {
    let inv = bookinfo();
    let reviews = inv
        .destinations
        .iter()
        .find(|d| d.host.name == "reviews")
        .unwrap();
    assert_eq!(
        reviews.policy.get("connect_timeout").unwrap().value,
        "\"250ms\""
    );
    // The subset's budget applies only to routes to subset v2.
    assert!(reviews.policy.get("retry_budget").is_none());
    assert_eq!(reviews.resource.path, "spec.trafficPolicy");
}

#[test]
fn hop_without_a_virtual_service_gets_the_finding_at_istio_default() {
    let inv = bookinfo();
    let productpage: Vec<_> = inv
        .findings
        .iter()
        .filter(|f| f.host.as_ref().is_some_and(|h| h.name == "productpage"))
        .collect();
    assert_eq!(productpage.len(), 1);
    assert_eq!(productpage[0].origin.to_string(), "Istio default");
    assert!(productpage[0].message.contains("no VirtualService"));
    // reviews has routes: its findings are at their lines only.
    assert_eq!(findings_at(&inv, "reviews"), [48]);
}

#[test]
fn rules_apply_whatever_the_file_order() {
    let forward = bookinfo();
    let backward = import(&[
        "kubectl-get.yaml",
        "destination-rules.yaml",
        "virtual-services.yaml",
    ]);
    for (a, b) in [("reviews", Some("jason")), ("reviews", Some("route-1"))] {
        assert_eq!(
            route(&forward, a, b).policy,
            route(&backward, a, b).policy,
            "{a} {b:?}"
        );
    }
    assert_eq!(forward.findings.len(), backward.findings.len());
}

#[test]
fn resolve_runs_once() {
    let mut inv = bookinfo();
    let findings = inv.findings.len();
    super::resolve(&mut inv);
    assert_eq!(inv.findings.len(), findings);
}

#[test]
fn default_policy_is_istios() {
    let policy = super::default_policy();
    let values: Vec<(&str, &str, String)> = policy
        .settings
        .iter()
        .map(|s| (s.key, s.value.as_str(), s.origin.to_string()))
        .collect();
    let find = |key: &str| {
        values
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, v, _)| *v)
    };
    assert_eq!(find("max_attempts"), Some("3"));
    assert_eq!(
        find("retry_on"),
        Some("[\"connect-failure\", \"refused-stream\", \"unavailable\", \"cancelled\"]")
    );
    assert_eq!(
        find("backoff"),
        Some("\"full-jitter(base=25ms, cap=250ms)\"")
    );
    assert_eq!(find("connect_timeout"), Some("\"10s\""));
    assert_eq!(find("retry_budget"), Some("\"none\""));
    assert_eq!(find("idempotent"), Some("true"));
    assert_eq!(find("timeout"), None);
    assert_eq!(find("request_timeout"), None);
    assert!(values
        .iter()
        .all(|(_, _, o)| o.starts_with("Istio default")));
}

/// The error a malformed VirtualService field gives, from `http:` on.
fn vs_error(http: &str) -> String {
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: bad\nspec:\n  hosts: [bad]\n  http:\n{http}"
    );
    let documents = parse_documents("bad.yaml", &text).unwrap();
    crate::inventory(&documents).unwrap_err().to_string()
}

#[test]
fn malformed_fields_name_file_line_column_and_field() {
    let route = "  - route:\n    - destination:\n        host: bad\n";
    assert_eq!(
        vs_error(&format!("{route}    retries:\n      attempts: -1\n")),
        "bad.yaml:12:17: `spec.http[0].retries.attempts`: must be 0 or more (retries after the \
         first attempt; 0 turns retries off)"
    );
    let error = vs_error(&format!("{route}    timeout: fast\n"));
    assert!(
        error.starts_with("bad.yaml:11:14: `spec.http[0].timeout`: \"fast\" is not a duration"),
        "{error}"
    );
    let error = vs_error(&format!(
        "{route}    retries:\n      attempts: 2\n      retryOn: 5xx,sometimes\n"
    ));
    assert!(
        error.starts_with("bad.yaml:13:16: `spec.http[0].retries.retryOn`: \"sometimes\""),
        "{error}"
    );
    let error = vs_error(&format!(
        "{route}    retries:\n      attempts: 2\n      perTryTimeout: 0s\n"
    ));
    assert!(
        error.starts_with(
            "bad.yaml:13:22: `spec.http[0].retries.perTryTimeout`: must be at least 1ms"
        ),
        "{error}"
    );
    let error = vs_error("  - route:\n    - destination:\n        subset: v1\n");
    assert!(
        error.starts_with("bad.yaml:10:15: `spec.http[0].route[0].destination.host`: missing"),
        "{error}"
    );
}

#[test]
fn malformed_destination_rule_in_a_file() {
    let documents = crate::read_paths(&[data("malformed/connect-timeout.yaml")]).unwrap();
    let error = crate::inventory(&documents).unwrap_err().to_string();
    assert!(error.contains("malformed/connect-timeout.yaml:11:25: `spec.trafficPolicy.connectionPool.tcp.connectTimeout`: \"ten seconds\" is not a duration"), "{error}");
}

/// The example's README says which import findings it shows: these.
#[test]
fn example_shows_the_findings_its_readme_lists() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh/istio");
    let documents = crate::read_paths(&[example]).unwrap();
    let inv = crate::inventory(&documents).unwrap();
    let mut findings: Vec<String> = inv
        .findings
        .iter()
        .map(|f| {
            let host = f.host.as_ref().map_or("", |h| h.name.as_str());
            let at = f
                .origin
                .file_line()
                .map_or("Istio default".to_string(), |(file, line, _)| {
                    format!("{}:{line}", file.rsplit('/').next().unwrap_or(file))
                });
            format!("{} {host} {at}", f.rule)
        })
        .collect();
    findings.sort();
    assert_eq!(
        findings,
        [
            "istio-unbounded-retries checkout virtual-services.yaml:11",
            "istio-unbounded-retries checkout virtual-services.yaml:25",
            "istio-unbounded-retries frontend Istio default",
            "istio-unbounded-retries inventory Istio default",
        ]
    );
    let order = route(&inv, "checkout", Some("place-order"));
    assert_eq!(order.method.as_deref(), Some("POST"));
    assert_eq!(setting(order, "timeout"), ("\"2s\"".into(), 23));
    assert_eq!(setting(order, "request_timeout"), ("\"3s\"".into(), 20));
    assert_eq!(setting(order, "max_attempts"), ("4".into(), 22));
    // Istio's 10 s connect timeout, written as the attempt's timeout: from its line.
    assert_eq!(setting(order, "connect_timeout"), ("\"2s\"".into(), 23));
    let browse = route(&inv, "checkout", Some("browse"));
    assert_eq!(setting(browse, "timeout"), ("\"5s\"".into(), 29));
    assert_eq!(setting(browse, "max_attempts"), ("3".into(), 0));
    let payments = route(&inv, "payments.shop.svc.cluster.local", None);
    assert_eq!(setting(payments, "timeout"), ("\"1500ms\"".into(), 47));
    assert_eq!(setting(payments, "max_attempts"), ("3".into(), 46));
    assert_eq!(
        setting(payments, "retry_on").0,
        "[\"connect-failure\", \"gateway-error\", \"refused-stream\", \"reset\", \"timeout\"]"
    );
    assert_eq!(
        setting(payments, "retry_budget"),
        ("{ ratio = 0.2, min_per_sec = 3 }".into(), 13)
    );
    assert_eq!(
        setting(payments, "connect_timeout"),
        ("\"500ms\"".into(), 11)
    );
    assert_eq!(
        inv.workloads
            .iter()
            .filter(|w| w.kind == "Deployment")
            .count(),
        4
    );
}

#[test]
fn kubectl_list_of_istio_resources() {
    let inv = import(&["kubectl-get-vs-dr.yaml"]);
    let productpage = route(&inv, "productpage", None);
    assert_eq!(setting(productpage, "timeout"), ("\"4s\"".into(), 23));
    assert_eq!(
        setting(productpage, "request_timeout"),
        ("\"4s\"".into(), 23)
    );
    assert_eq!(productpage.resource.document, 0);
    // Subset v1 caps concurrent retries: bounded, so no finding, but the cap is listed.
    assert!(findings_at(&inv, "productpage").is_empty());
    assert!(unread_mentions(
        &inv,
        "subsets[v1].trafficPolicy.connectionPool.http.maxRetries"
    ));
    assert_eq!(setting(productpage, "retry_budget"), ("\"none\"".into(), 0));
}

/// The note that Envoy's backoff grows faster than the graph's points at the first retries of
/// the file (where a backoff is written, else its attempts, else the route whose default
/// retries they are), where it pointed at the document's first line (a review).
#[test]
fn the_backoff_note_points_at_the_retries_it_is_about() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: shop}
spec:
  hosts: [a]
  http:
  - route: [{destination: {host: a}}]
    retries:
      attempts: 2
";
    let inv = crate::testing::inventory_of("vs.yaml", text).unwrap();
    let notes: Vec<_> = inv
        .unread
        .iter()
        .filter(|u| u.what.starts_with("retries backoff"))
        .collect();
    assert_eq!(notes.len(), 1, "{:#?}", inv.unread);
    assert_eq!(
        notes[0].origin.file_line().map(|(_, line, _)| line),
        Some(9)
    );
    // No retries stanza: the route's default retries, at the route.
    let bare = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: shop}
spec:
  hosts: [a]
  http:
  - route: [{destination: {host: a}}]
";
    let inv = crate::testing::inventory_of("vs.yaml", bare).unwrap();
    let note = inv
        .unread
        .iter()
        .find(|u| u.what.starts_with("retries backoff"))
        .unwrap();
    assert_eq!(note.origin.file_line().map(|(_, line, _)| line), Some(7));
}
