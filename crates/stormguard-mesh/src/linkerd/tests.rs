//! Both Linkerd paths (annotations on a Service and its HTTPRoute; a ServiceProfile), read from
//! files shaped like Linkerd's docs examples (`tests/data/linkerd/`).

use crate::gateway::tests::{line_of, load, routes_to};
use crate::inventory::System;
use crate::testing::setting;

const ANNOTATED: &str = "linkerd/emojivoto-annotations.yaml";
const PROFILE: &str = "linkerd/booksapp-profile.yaml";

#[test]
fn service_annotations_make_the_services_default_route() {
    let inv = load(&[ANNOTATED]).unwrap();
    let voting = routes_to(&inv, "voting-svc");
    assert_eq!(voting.len(), 1, "{voting:#?}");
    let route = voting[0];
    assert_eq!(route.system, System::Linkerd);
    assert_eq!(route.resource.kind, "Service");
    assert_eq!(route.name, None);
    let at = |needle| line_of(ANNOTATED, "name: voting-svc", needle);
    // A range expands to statuses; the retry timeout is per attempt, and retried.
    assert_eq!(
        setting(route, "retry_on"),
        (
            "[\"refused-stream\", \"500\", \"501\", \"502\", \"503\", \"504\", \"429\", \"timeout\"]".into(),
            at("retry.linkerd.io/http")
        )
    );
    assert_eq!(
        setting(route, "timeout"),
        ("\"300ms\"".into(), at("retry.linkerd.io/timeout"))
    );
    // limit unset: Linkerd's default of one retry.
    assert_eq!(setting(route, "max_attempts"), ("2".into(), 0));
    assert!(route
        .policy
        .get("max_attempts")
        .unwrap()
        .origin
        .to_string()
        .contains("limit 1"));
    // Annotation retries have no budget in Linkerd (linkerd2-proxy counts retries only).
    assert_eq!(setting(route, "retry_budget"), ("\"none\"".into(), 0));
    assert_eq!(
        setting(route, "backoff"),
        ("\"equal-jitter(base=50ms, cap=250ms)\"".into(), 0)
    );
    assert_eq!(setting(route, "idempotent"), ("true".into(), 0));
    assert!(route.policy.get("request_timeout").is_none());
    let idle = inv
        .unread
        .iter()
        .find(|u| u.what == "timeout.linkerd.io/idle")
        .expect("idle listed");
    assert_eq!(
        idle.origin.file_line().unwrap().1,
        at("timeout.linkerd.io/idle")
    );
    assert!(inv
        .meshes
        .iter()
        .any(|m| m.system == System::Linkerd && m.namespace.as_deref() == Some("emojivoto")));
}

#[test]
fn route_annotations_replace_the_services_family_and_inherit_the_other() {
    let inv = load(&[ANNOTATED]).unwrap();
    let web = routes_to(&inv, "web-svc");
    // The Service has an HTTPRoute: its annotations apply through the route, not as a route.
    assert!(
        web.iter().all(|r| r.resource.kind == "HTTPRoute"),
        "{web:#?}"
    );
    assert_eq!(web.len(), 2);
    let vote = web[0];
    assert_eq!(vote.method.as_deref(), Some("POST"));
    assert_eq!(vote.name.as_deref(), Some("rule-0"));
    let route_line = |needle| line_of(ANNOTATED, "name: web-api", needle);
    let svc_line = |needle| line_of(ANNOTATED, "name: web-svc", needle);
    // Retries: the route's gateway-error replaces the Service's 5xx and limit 2.
    assert_eq!(
        setting(vote, "retry_on"),
        (
            "[\"refused-stream\", \"gateway-error\"]".into(),
            route_line("retry.linkerd.io/http")
        )
    );
    assert_eq!(setting(vote, "max_attempts"), ("2".into(), 0));
    // Timeouts: the route sets none, so the Service's apply.
    assert_eq!(
        setting(vote, "request_timeout"),
        ("\"4s\"".into(), svc_line("timeout.linkerd.io/request"))
    );
    assert_eq!(
        setting(vote, "timeout"),
        ("\"1s\"".into(), svc_line("timeout.linkerd.io/response"))
    );
    assert_eq!(
        web[1].policy, vote.policy,
        "both rules take the route's annotations"
    );
}

#[test]
fn without_its_route_the_services_own_annotations_apply() {
    // Only the Service documents of the same file: its own retry family applies.
    let (file, text) = crate::gateway::tests::data(ANNOTATED);
    let documents: Vec<_> = crate::doc::parse_documents(&file, &text)
        .unwrap()
        .into_iter()
        .filter(|d| d.root.get("kind").and_then(|k| k.as_str()) == Some("Service"))
        .collect();
    let inv = crate::inventory(&documents).unwrap();
    let web = routes_to(&inv, "web-svc")[0];
    let svc_line = |needle| line_of(ANNOTATED, "name: web-svc", needle);
    assert_eq!(
        setting(web, "max_attempts"),
        ("3".into(), svc_line("retry.linkerd.io/limit"))
    );
    assert_eq!(
        setting(web, "retry_on"),
        (
            "[\"refused-stream\", \"5xx\"]".into(),
            svc_line("retry.linkerd.io/http")
        )
    );
    assert_eq!(
        setting(web, "timeout"),
        ("\"1s\"".into(), svc_line("timeout.linkerd.io/response"))
    );
}

#[test]
fn service_profile_routes_timeouts_retries_and_budget() {
    let inv = load(&[PROFILE]).unwrap();
    let routes = routes_to(&inv, "authors.booksapp.svc.cluster.local");
    assert_eq!(routes.len(), 3, "{routes:#?}");
    let get = routes[0];
    let at = |after, needle| line_of(PROFILE, after, needle);
    assert_eq!(get.name.as_deref(), Some("GET /authors/{id}.json"));
    assert_eq!(get.method.as_deref(), Some("GET"));
    assert_eq!(
        get.origin.file_line().unwrap().1,
        at("routes:", "- condition:")
    );
    // The timeout wraps the retries: the whole call.
    assert_eq!(
        setting(get, "request_timeout"),
        ("\"300ms\"".into(), at("GET /authors", "timeout: 300ms"))
    );
    assert!(get.policy.get("timeout").is_none());
    // No count in Linkerd: the budget binds, at the graph's most attempts.
    assert_eq!(setting(get, "max_attempts"), ("100".into(), 0));
    assert_eq!(
        setting(get, "idempotent"),
        ("true".into(), at("GET /authors", "isRetryable: true"))
    );
    assert_eq!(setting(get, "backoff"), ("\"none\"".into(), 0));
    assert_eq!(
        setting(get, "retry_budget"),
        (
            "{ ratio = 0.1, min_per_sec = 5 }".into(),
            at("retryBudget:", "retryRatio")
        )
    );
    let (retry_on, line) = setting(get, "retry_on");
    assert!(
        retry_on.starts_with("[\"5xx\", \"unknown\", \"deadline-exceeded\""),
        "{retry_on}"
    );
    assert_eq!(line, 0, "no response classes: Linkerd's default failures");

    // Not retryable: one attempt; its classes are not retries.
    let delete = routes[1];
    assert_eq!(delete.method.as_deref(), Some("DELETE"));
    assert_eq!(setting(delete, "max_attempts"), ("1".into(), 0));
    assert!(delete.policy.get("retry_on").is_none());

    // First matching class wins: 503 is a success here, 429 a failure; other 5xx stay failures.
    let list = routes[2];
    assert_eq!(list.method, None);
    let (retry_on, line) = setting(list, "retry_on");
    assert!(
        retry_on.starts_with("[\"429\", \"500\", \"501\", \"502\", \"504\", \"505\""),
        "{retry_on}"
    );
    assert!(!retry_on.contains("\"503\""), "{retry_on}");
    assert_eq!(line, at("name: /authors.json", "responseClasses:") + 1);

    // ttl 1m is not the graph's 10 s window; no timeout: the docs' 10 s is not applied.
    let ttl = inv
        .unread
        .iter()
        .find(|u| u.what == "retryBudget.ttl")
        .expect("ttl listed");
    assert_eq!(
        ttl.origin.file_line().unwrap().1,
        at("retryBudget:", "ttl: 1m")
    );
    let no_timeout = inv
        .unread
        .iter()
        .find(|u| u.what == "ServiceProfile route without timeout")
        .expect("listed");
    assert!(no_timeout.why.contains("applies none"), "{no_timeout:?}");
}

#[test]
fn a_profile_with_routes_replaces_the_services_annotations() {
    let inv = load(&[PROFILE]).unwrap();
    assert!(
        routes_to(&inv, "authors").is_empty(),
        "no route from the Service's annotations"
    );
    let note = inv
        .unread
        .iter()
        .find(|u| u.what == "Service authors annotations")
        .expect("listed");
    assert!(
        note.why.contains(
            "authors.booksapp.svc.cluster.local at tests/data/linkerd/booksapp-profile.yaml:10"
        ),
        "{note:?}"
    );
}

#[test]
fn a_profile_replaces_an_httproute_of_its_service() {
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: authors\n  namespace: booksapp\n  annotations:\n    retry.linkerd.io/limit: \"3\"\nspec:\n  parentRefs:\n  - {kind: Service, group: core, name: authors}\n";
    let (file, text) = crate::gateway::tests::data(PROFILE);
    let mut documents = crate::doc::parse_documents(&file, &text).unwrap();
    documents.extend(crate::doc::parse_documents("route.yaml", route).unwrap());
    let inv = crate::inventory(&documents).unwrap();
    assert!(
        inv.routes
            .iter()
            .all(|r| r.resource.kind == "ServiceProfile"),
        "{:#?}",
        inv.routes
    );
    assert!(inv
        .unread
        .iter()
        .any(|u| u.what == "HTTPRoute authors" && u.why.contains("replaced")));
}

#[test]
fn default_budget_and_linkerd_defaults() {
    let inv = load(&["linkerd/default-budget-profile.yaml"]).unwrap();
    let post = &inv.routes[0];
    assert_eq!(
        setting(post, "retry_budget"),
        ("{ ratio = 0.2, min_per_sec = 10 }".into(), 0)
    );
    assert_eq!(post.method.as_deref(), Some("POST"));
    assert_eq!(inv.kinds.get("ServiceProfile"), Some(&1));
    let default = super::default_policy();
    assert_eq!(default.get("max_attempts").unwrap().value, "1");
    assert!(default.get("timeout").is_none() && default.get("request_timeout").is_none());
}

#[test]
fn resolving_twice_changes_nothing() {
    let mut inv = load(&[ANNOTATED, PROFILE]).unwrap();
    let before = inv.clone();
    super::resolve(&mut inv);
    assert_eq!(inv, before);
}

#[test]
fn malformed_annotations_and_profiles_name_file_line_column_and_field() {
    let e = load(&["linkerd/bad-limit.yaml"]).unwrap_err().to_string();
    assert!(
        e.starts_with("tests/data/linkerd/bad-limit.yaml:7:29: `metadata.annotations[\"retry.linkerd.io/limit\"]`"),
        "{e}"
    );
    let e = load(&["linkerd/bad-http.yaml"]).unwrap_err().to_string();
    assert!(
        e.starts_with("tests/data/linkerd/bad-http.yaml:7:28:"),
        "{e}"
    );
    assert!(e.contains("` 429` is not a retry condition"), "{e}");
    let e = load(&["linkerd/bad-profile-timeout.yaml"])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "tests/data/linkerd/bad-profile-timeout.yaml:11:14: `spec.routes[0].timeout`"
        ),
        "{e}"
    );
}

#[test]
fn every_policy_read_is_one_the_graph_accepts() {
    let files = [
        ANNOTATED,
        PROFILE,
        "linkerd/default-budget-profile.yaml",
        "gateway-api/gamma-reviews.yaml",
        "gateway-api/gateway-store.yaml",
        "gateway-api/grpc-echo.yaml",
    ];
    let inv = load(&files).unwrap();
    let mut routes: Vec<&crate::inventory::Route> = inv.routes.iter().collect();
    let mut default = inv.routes[0].clone();
    default.policy = super::default_policy();
    routes.push(&default);
    for route in routes {
        let mut text = String::from(
            "[entry]\nservice = \"a\"\n[services.b]\n[[services.a.calls]]\nto = \"b\"\n",
        );
        for setting in &route.policy.settings {
            text.push_str(&format!("{} = {}\n", setting.key, setting.value));
        }
        if let Err(e) = stormguard_graph::parse::parse("imported.toml", &text) {
            panic!("{e:?}\n{text}");
        }
    }
}

#[test]
fn the_example_shows_the_findings_its_readme_lists() {
    let findings = crate::gateway::tests::example_findings("linkerd");
    let of = |name: &str| {
        findings
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} in {findings:?}"))
            .1
            .clone()
    };
    let voting = of("voting-svc");
    for rule in ["too-many-attempts", "retry-without-budget"] {
        assert!(voting.contains(&rule), "{rule}: {voting:?}");
    }
    let vote = of("web-svc");
    for rule in [
        "too-many-attempts",
        "retry-without-budget",
        "missing-timeout",
    ] {
        assert!(vote.contains(&rule), "{rule}: {vote:?}");
    }
    let list = of("emoji-svc.emojivoto.svc.cluster.local/GET /api/list");
    for rule in [
        "too-many-attempts",
        "missing-timeout",
        "retry-without-backoff",
        "retry-amplification",
    ] {
        assert!(list.contains(&rule), "{rule}: {list:?}");
    }
}

#[test]
fn a_grpc_route_takes_its_services_grpc_retries_and_keeps_its_own_timeouts() {
    const F: &str = "linkerd/emoji-grpc.yaml";
    let inv = load(&[F]).unwrap();
    let list = routes_to(&inv, "emoji-svc");
    assert_eq!(list.len(), 1, "{list:#?}");
    let list = list[0];
    assert_eq!(
        (list.system, list.resource.kind.as_str()),
        (System::Linkerd, "GRPCRoute")
    );
    let svc = |needle| line_of(F, "name: emoji-svc", needle);
    assert_eq!(
        setting(list, "retry_on"),
        (
            "[\"refused-stream\", \"unavailable\", \"resource-exhausted\"]".into(),
            svc("retry.linkerd.io/grpc")
        )
    );
    assert_eq!(
        setting(list, "max_attempts"),
        ("3".into(), svc("retry.linkerd.io/limit"))
    );
    assert_eq!(
        setting(list, "request_timeout"),
        (
            "\"2s\"".into(),
            line_of(F, "name: emoji-list", "timeout.linkerd.io/request")
        )
    );
    assert!(
        list.policy.get("timeout").is_none(),
        "the route's timeouts replace the Service's"
    );
}

#[test]
fn grpc_retries_without_a_grpc_route_and_an_hour_long_timeout_are_listed() {
    const F: &str = "linkerd/emoji-grpc.yaml";
    let inv = load(&[F]).unwrap();
    let voting = routes_to(&inv, "voting-svc")[0];
    assert_eq!(setting(voting, "max_attempts"), ("1".into(), 0));
    assert_eq!(setting(voting, "request_timeout").0, "\"3600s\"");
    let grpc = inv
        .unread
        .iter()
        .find(|u| u.what == "retry.linkerd.io/grpc")
        .expect("listed");
    assert!(grpc.why.contains("has none"), "{grpc:?}");
    let clamp = inv
        .unread
        .iter()
        .find(|u| u.what == "a duration over 1h")
        .expect("listed");
    assert_eq!(
        clamp.origin.file_line().unwrap().1,
        line_of(F, "name: voting-svc", "request: 2h")
    );
}

#[test]
fn a_linkerd_httproute_rule_reads_its_request_timeout_or_takes_its_services() {
    const F: &str = "linkerd/policy-httproute.yaml";
    let inv = load(&[F]).unwrap();
    let books = routes_to(&inv, "books");
    assert_eq!(books.len(), 2, "{books:#?}");
    assert_eq!(
        setting(books[0], "request_timeout"),
        ("\"5s\"".into(), line_of(F, "timeouts:", "request: 5s"))
    );
    assert!(books[0].policy.get("timeout").is_none());
    let backend = inv
        .unread
        .iter()
        .find(|u| u.what == "timeouts.backendRequest")
        .expect("listed");
    assert!(backend.why.contains("not applied"), "{backend:?}");
    // The second rule sets no timeout: the Service's, with its response timeout (10s) cut to
    // the request timeout (8s) the graph requires it to fit in.
    let svc = |needle| line_of(F, "name: books", needle);
    assert_eq!(
        setting(books[1], "request_timeout"),
        ("\"8s\"".into(), svc("timeout.linkerd.io/request"))
    );
    assert_eq!(
        setting(books[1], "timeout"),
        ("\"8s\"".into(), svc("timeout.linkerd.io/request"))
    );
    let clamp = inv
        .unread
        .iter()
        .find(|u| u.what == "a per-attempt timeout above the request timeout")
        .expect("listed");
    assert_eq!(
        clamp.origin.file_line().unwrap().1,
        svc("timeout.linkerd.io/response")
    );
}

#[test]
fn a_profile_with_only_dst_overrides_splits_every_request() {
    let inv = load(&["linkerd/policy-httproute.yaml"]).unwrap();
    let webapp = routes_to(&inv, "webapp.booksapp.svc.cluster.local");
    assert_eq!(webapp.len(), 1);
    let weights: Vec<(&str, f64)> = webapp[0]
        .backends
        .iter()
        .map(|b| (b.host.name.as_str(), b.weight))
        .collect();
    assert_eq!(
        weights,
        [
            ("webapp-v1.booksapp.svc.cluster.local:7000", 0.75),
            ("webapp-v2.booksapp.svc.cluster.local:7000", 0.25)
        ]
    );
    assert_eq!(setting(webapp[0], "max_attempts"), ("1".into(), 0));
    assert_eq!(webapp[0].name, None);
}
