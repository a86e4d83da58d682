use super::plan::path_text;
use super::*;
use crate::doc::parse_documents;
use crate::inventory::{Host, Policy, Route, System};
use crate::source::Origin;

const GRAPH: &str = r#"
[entry]
service = "web"
[services.web]
[[services.web.calls]]
to = "reviews"
timeout = "500ms"
request_timeout = "2s"
max_attempts = 3
retry_on = ["connect-failure", "refused-stream", "reset", "timeout", "503"]
backoff = "full-jitter(base=25ms, cap=250ms)"
connect_timeout = "100ms"
[[services.web.calls]]
to = "ratings"
timeout = "300ms"
max_attempts = 2
token_bucket = { capacity = 500, retry_cost = 5, timeout_cost = 10 }
hedge = { delay = "p95", max_extra = 0.05 }
[services.batch]
[[services.batch.calls]]
to = "reviews"
timeout = "5s"
request_timeout = "5s"
connect_timeout = "100ms"
[services.reviews]
[services.ratings]
"#;

fn graph() -> Graph {
    stormguard_graph::parse("g.toml", GRAPH).unwrap()
}

fn assign<'p>(fields: &'p [Assign], path: &str) -> Option<&'p Val> {
    fields
        .iter()
        .find(|a| path_text(&a.path) == path)
        .map(|a| &a.value)
}

#[test]
fn istio_routes_by_caller_and_writes_retries_and_the_destination_rule() {
    let plan = plan(&graph(), Target::Istio);
    let reviews = plan
        .destinations
        .iter()
        .find(|d| d.to == "reviews")
        .unwrap();
    assert_eq!(reviews.routes.len(), 2, "{:#?}", reviews.routes);
    // The two callers have the same size of group: the first seen (batch) is the catch-all.
    let specific = &reviews.routes[0];
    assert_eq!(specific.callers.as_deref(), Some(&["web".to_string()][..]));
    assert_eq!(assign(&specific.fields, "timeout"), Some(&Val::str("2s")));
    assert_eq!(
        assign(&specific.fields, "retries.attempts"),
        Some(&Val::Int(2))
    );
    assert_eq!(
        assign(&specific.fields, "retries.perTryTimeout"),
        Some(&Val::str("500ms"))
    );
    assert_eq!(
        assign(&specific.fields, "retries.retryOn"),
        Some(&Val::str("connect-failure,refused-stream,reset,503"))
    );
    assert_eq!(
        assign(&specific.fields, "retries.backoff"),
        Some(&Val::str("25ms"))
    );
    let catch_all = &reviews.routes[1];
    assert_eq!(catch_all.callers, None);
    assert_eq!(
        assign(&catch_all.fields, "retries.attempts"),
        Some(&Val::Int(0))
    );
    assert_eq!(
        assign(
            &reviews.destination,
            "spec.trafficPolicy.retryBudget.percent"
        ),
        Some(&Val::Float(20.0))
    );
    assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
    let ratings: Vec<&Unexpressed> = plan
        .unexpressed
        .iter()
        .filter(|u| u.to == "ratings")
        .collect();
    for key in ["hedge", "token_bucket", "connect_timeout"] {
        assert!(ratings.iter().any(|u| u.key == key), "{key}: {ratings:#?}");
    }
}

#[test]
fn targets_that_cannot_tell_callers_apart_say_whose_policy_they_wrote() {
    for target in [Target::GatewayApi, Target::Linkerd, Target::Grpc] {
        let plan = plan(&graph(), target);
        let conflict = plan
            .conflicts
            .iter()
            .find(|c| c.to == "reviews" && c.part == "route")
            .unwrap_or_else(|| panic!("{target}: {:?}", plan.conflicts));
        assert_eq!(conflict.written, ["batch"], "{target}");
        assert_eq!(conflict.not_written[0].0, "web", "{target}");
        assert!(conflict.to_string().contains("not web's"), "{conflict}");
    }
    // An Envoy bootstrap is one caller's: no conflict.
    let plan = plan(&graph(), Target::Envoy);
    assert!(plan.conflicts.is_empty());
    assert_eq!(plan.destinations.len(), 3);
}

#[test]
fn what_each_target_cannot_express_is_listed() {
    let cases: [(Target, &str, &str); 6] = [
        (Target::Linkerd, "reviews", "retry_budget"),
        (Target::Envoy, "ratings", "hedge"),
        (Target::Grpc, "reviews", "timeout"),
        (Target::GatewayApi, "reviews", "connect_timeout"),
        (Target::Istio, "ratings", "token_bucket"),
        (Target::Envoy, "reviews", "backoff"),
    ];
    for (target, to, key) in cases {
        let plan = plan(&graph(), target);
        assert!(
            plan.unexpressed.iter().any(|u| u.to == to && u.key == key),
            "{target} {to} {key}: {:#?}",
            plan.unexpressed
        );
    }
}

#[test]
fn new_resources_parse_back_for_every_target() {
    for target in Target::ALL {
        let out = export(&graph(), target, &Existing::default());
        assert!(!out.files.is_empty(), "{target}");
        for file in &out.files {
            assert!(!file.edited);
            let docs = parse_documents(&file.path.display().to_string(), &file.text)
                .unwrap_or_else(|e| panic!("{target}: {e}\n{}", file.text));
            assert!(!docs.is_empty(), "{target}");
            if target == Target::Grpc {
                serde_json::from_str::<serde_json::Value>(&file.text).unwrap();
            }
        }
    }
    let istio = export(&graph(), Target::Istio, &Existing::default());
    let text = &istio.files[0].text;
    assert!(text.contains("sourceLabels:\n"), "{text}");
    assert!(text.contains("perTryTimeout: 500ms"), "{text}");
    assert!(text.contains("kind: DestinationRule"), "{text}");
    let envoy = export(&graph(), Target::Envoy, &Existing::default());
    let names: Vec<String> = envoy
        .files
        .iter()
        .map(|f| f.path.display().to_string())
        .collect();
    assert_eq!(
        names,
        ["stormguard-envoy-batch.yaml", "stormguard-envoy-web.yaml"]
    );
    assert!(
        envoy.files[1].text.contains("timeout: 2s"),
        "{}",
        envoy.files[1].text
    );
}

const USER_VS: &str = "\
# Owned by the books team. Do not reorder.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]   # short name
  http:
  - route:
    - destination:
        host: reviews
        subset: v1     # pinned until the v2 rollout
    timeout: 10s       # from the 2023 incident
    retries:
      attempts: 5
";

fn istio_route(file: &str, path: &str, host: &str) -> Route {
    Route {
        system: System::Istio,
        host: Host::new(host, Some("default")),
        name: None,
        caller: None,
        method: None,
        backends: Vec::new(),
        policy: Policy::default(),
        origin: Origin::Default("test"),
        resource: Resource {
            kind: "VirtualService".into(),
            namespace: Some("default".into()),
            name: host.into(),
            file: file.into(),
            document: 0,
            path: path.into(),
        },
    }
}

#[test]
fn an_existing_virtual_service_is_edited_in_place_and_the_rest_is_new() {
    let graph = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\nto = \"reviews\"\n\
         timeout = \"500ms\"\nrequest_timeout = \"2s\"\nmax_attempts = 3\n\
         retry_on = [\"connect-failure\", \"503\"]\n[[services.web.calls]]\nto = \"ratings\"\n\
         timeout = \"1s\"\n[services.reviews]\n[services.ratings]\n",
    )
    .unwrap();
    let documents = parse_documents("k8s/reviews.yaml", USER_VS).unwrap();
    let mut inventory = Inventory::default();
    inventory
        .routes
        .push(istio_route("k8s/reviews.yaml", "spec.http[0]", "reviews"));
    let existing = Existing {
        documents,
        inventory,
        ..Existing::default()
    };
    let out = export(&graph, Target::Istio, &existing);
    assert_eq!(out.files.len(), 2, "{:#?}", out.files);
    let edited = &out.files[0];
    assert!(edited.edited);
    assert_eq!(edited.path, PathBuf::from("k8s/reviews.yaml"));
    // Istio's default backoff (25ms) is not added: the file, which sets none, says it.
    let expected = USER_VS
        .replace("timeout: 10s       # from", "timeout: 2s       # from")
        .replace(
            "      attempts: 5\n",
            "      attempts: 2\n      perTryTimeout: 500ms\n      retryOn: connect-failure,503\n",
        );
    assert_eq!(edited.text, expected);
    let new = &out.files[1];
    assert!(!new.edited);
    assert!(new.text.contains("host: ratings"), "{}", new.text);
    // The DestinationRule of reviews (its budget) had no resource: it is new, in the namespace
    // of the VirtualService that routes reviews (no Service of it among the files).
    assert!(
        new.text
            .contains("name: reviews\n  namespace: default\nspec:\n  host: reviews"),
        "{}",
        new.text
    );
}

#[test]
fn a_header_names_the_inputs() {
    let dir = std::env::temp_dir().join(format!("sg-export-header-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    let graph = dir.join("g.toml");
    std::fs::write(dir.join("calls.toml"), "").unwrap();
    let text = "# Imported by `stormguard import` from k8s, missing.yaml, calls.toml\n\
                # Calls: the calls of the base graph calls.toml, each given its callee's imported \
                policy\n\n[entry]\n";
    let paths = inputs_from_header(text, &graph);
    assert_eq!(paths, [dir.join("k8s")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two callers that retry with different budgets: the `DestinationRule` holds one, the
/// strictest, so that neither retries more than its own policy allows (the larger group, or
/// the first seen, chose before: batch's 20%).
#[test]
fn a_destination_rule_holds_the_strictest_budget_of_the_callers_that_retry() {
    let graph = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\nto = \"reviews\"\n\
         timeout = \"1s\"\nmax_attempts = 2\nretry_budget = { ratio = 0.1, min_per_sec = 5 }\n\
         [services.batch]\n[[services.batch.calls]]\nto = \"reviews\"\ntimeout = \"1s\"\n\
         max_attempts = 2\n[services.reviews]\n",
    )
    .unwrap();
    let plan = plan(&graph, Target::Istio);
    // The routes agree (same timeout and attempts): one catch-all route, no route conflict.
    assert_eq!(plan.destinations[0].routes.len(), 1);
    assert_eq!(
        assign(
            &plan.destinations[0].destination,
            "spec.trafficPolicy.retryBudget.percent"
        ),
        Some(&Val::Float(10.0))
    );
    let conflict = plan
        .conflicts
        .iter()
        .find(|c| c.part == "destination")
        .unwrap();
    assert_eq!(conflict.written, ["web"]);
    assert_eq!(conflict.not_written[0].0, "batch");
    assert!(
        conflict.not_written[0]
            .1
            .contains("percent 20 instead of 10"),
        "{conflict}"
    );
}

/// The Istio example's shape: one caller retries with a budget and a short connect timeout
/// (it retries a refused connection elsewhere), another makes one attempt with a connect
/// timeout that rides out a lost SYN. The `DestinationRule` keeps the budget (the caller that
/// never retries is not limited by it) and the longer connect timeout (a short one would fail
/// the caller that cannot retry); the larger group chose before, and a tie dropped the budget.
#[test]
fn a_caller_that_never_retries_does_not_outvote_a_budget_and_the_longer_connect_timeout_is_kept() {
    let graph = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"browse\"\n\
         [services.browse]\n[[services.browse.calls]]\nto = \"checkout\"\ntimeout = \"2s\"\n\
         connect_timeout = \"1100ms\"\nretry_budget = \"none\"\n\
         [services.order]\n[[services.order.calls]]\nto = \"checkout\"\ntimeout = \"2s\"\n\
         max_attempts = 2\nconnect_timeout = \"3ms\"\n\
         retry_budget = { ratio = 0.1, min_per_sec = 10 }\n[services.checkout]\n",
    )
    .unwrap();
    for (target, budget_path, connect_path) in [
        (
            Target::Istio,
            "spec.trafficPolicy.retryBudget.percent",
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
        ),
        // An Envoy cluster is one caller's: each keeps its own, no conflict.
        (Target::Envoy, "", ""),
    ] {
        let plan = plan(&graph, target);
        if target == Target::Envoy {
            assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
            continue;
        }
        let destination = &plan.destinations[0].destination;
        assert_eq!(assign(destination, budget_path), Some(&Val::Float(10.0)));
        assert_eq!(assign(destination, connect_path), Some(&Val::str("1100ms")));
        // Only the connect timeout is order's loss; browse is indifferent to the budget.
        let conflict = plan
            .conflicts
            .iter()
            .find(|c| c.part == "destination")
            .unwrap_or_else(|| panic!("{:?}", plan.conflicts));
        assert_eq!(conflict.written, ["browse"], "{conflict}");
        assert_eq!(conflict.not_written.len(), 1, "{conflict}");
        assert_eq!(
            conflict.not_written[0],
            (
                "order".to_string(),
                format!("{connect_path} 3ms instead of 1100ms")
            ),
            "{conflict}"
        );
    }
}

/// A gRPC service config holds one `retryThrottling` for every method: the methods that never
/// retry do not outvote the one that does (the largest group chose before, and three methods
/// without retries removed the throttling), and the file written holds the throttling the plan
/// reports, where it took the first destination's whatever the plan said.
#[test]
fn a_grpc_throttling_is_chosen_by_the_methods_that_retry_and_written_as_reported() {
    let mut text = String::from("[entry]\nservice = \"web\"\n[services.web]\n");
    for to in ["a", "b", "c"] {
        text.push_str(&format!(
            "[[services.web.calls]]\nto = \"{to}\"\ntimeout = \"1s\"\n\
             token_bucket = {{ capacity = 50, retry_cost = 5, timeout_cost = 5 }}\n"
        ));
    }
    text.push_str(
        "[[services.web.calls]]\nto = \"z\"\ntimeout = \"1s\"\nmax_attempts = 2\n\
         retry_on = [\"unavailable\"]\n\
         token_bucket = { capacity = 100, retry_cost = 10, timeout_cost = 10 }\n",
    );
    for to in ["a", "b", "c", "z"] {
        text.push_str(&format!("[services.{to}]\n"));
    }
    let graph = stormguard_graph::parse("g.toml", &text).unwrap();
    let plan = plan(&graph, Target::Grpc);
    // Only z retries: its bucket is the only one that counts, so nothing conflicts.
    assert!(
        plan.conflicts.iter().all(|c| c.part != "shared"),
        "{:?}",
        plan.conflicts
    );
    for destination in &plan.destinations {
        for route in &destination.routes {
            assert_eq!(
                assign(&route.fields, "retryThrottling.tokenRatio"),
                Some(&Val::Float(0.1)),
                "{}",
                destination.to
            );
        }
    }
    let files = Target::Grpc.writer().new_files(&plan.destinations);
    assert!(
        files[0].text.contains("\"tokenRatio\": 0.1"),
        "{}",
        files[0].text
    );
}

/// An imported graph with the application's own client settings has an explicit sidecar
/// (`web-sidecar`): the application's call to it is no mesh resource's, and the sidecar's call
/// is web's call through the mesh. A call of one attempt with only `timeout` (what `check --fix`
/// adds to a call without one) still reaches Istio, as the route's timeout.
#[test]
fn an_explicit_sidecar_is_its_callers_mesh_and_one_attempts_timeout_is_the_routes() {
    let graph = stormguard_graph::parse(
        "g.toml",
        r#"
[entry]
service = "web"
[services.web]
[[services.web.calls]]
to = "web-sidecar"
endpoint = "reviews"
timeout = "3s"
max_attempts = 2
[services.web-sidecar]
[services.web-sidecar.endpoints.reviews]
[[services.web-sidecar.endpoints.reviews.calls]]
to = "reviews"
timeout = "1s"
[services.reviews]
"#,
    )
    .unwrap();
    let plan = plan(&graph, Target::Istio);
    let tos: Vec<&str> = plan.destinations.iter().map(|d| d.to.as_str()).collect();
    assert_eq!(tos, ["reviews"], "{:#?}", plan.destinations);
    let route = &plan.destinations[0].routes[0];
    assert_eq!(assign(&route.fields, "timeout"), Some(&Val::str("1s")));
    assert!(
        plan.unexpressed.iter().all(|u| u.caller == "web"),
        "{:#?}",
        plan.unexpressed
    );
}

/// A Service manifest with `ports`, as `import` reads it.
fn services(ports: &str) -> Existing {
    let text = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\nspec:\n  selector:\n    app: reviews\n  ports:\n{ports}"
    );
    let documents = parse_documents("k8s/reviews-svc.yaml", &text).unwrap();
    let inventory = crate::inventory(&documents).unwrap();
    Existing {
        documents,
        inventory,
        ..Existing::default()
    }
}

/// The ports the new resources of `out` name for `reviews`, read from their text.
fn ports_written(out: &Export) -> Vec<String> {
    out.files
        .iter()
        .flat_map(|f| f.text.lines())
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("port: ").or(l.strip_prefix("port_value: ")))
        .map(str::to_string)
        .collect()
}

#[test]
fn new_resources_name_the_service_s_port_when_it_was_read_and_say_when_they_guess() {
    let one = services("  - port: 8080\n    targetPort: 9080\n");
    let named = services("  - name: metrics\n    port: 9100\n  - name: http\n    port: 8080\n");
    let open = services("  - name: a\n    port: 8080\n  - name: b\n    port: 8081\n");
    // A Knative Service is of kind Service too, but not the one that names the port.
    let knative = {
        let text = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: reviews\nspec:\n  ports:\n  - port: 8080\n";
        let documents = parse_documents("k8s/knative.yaml", text).unwrap();
        Existing {
            inventory: crate::inventory(&documents).unwrap_or_default(),
            documents,
            ..Existing::default()
        }
    };
    for target in [Target::GatewayApi, Target::Linkerd, Target::Envoy] {
        for existing in [&one, &named] {
            let out = export(&graph(), target, existing);
            let ports = ports_written(&out);
            assert!(ports.contains(&"8080".to_string()), "{target}: {ports:?}");
            assert!(
                !out.notes.iter().any(|n| n.contains("reviews: port 80")),
                "{target}: {:?}",
                out.notes
            );
        }
        for existing in [&open, &knative, &Existing::default()] {
            let out = export(&graph(), target, existing);
            assert!(ports_written(&out).contains(&"80".to_string()), "{target}");
            let note = out
                .notes
                .iter()
                .find(|n| n.contains("for reviews: port 80 written"))
                .unwrap_or_else(|| panic!("{target}: {:?}", out.notes));
            assert!(note.contains("check it against the Service's"), "{note}");
        }
    }
}

/// Two endpoints of one caller with different policies for one destination: the conflict names
/// each by its endpoint, where it said "wrote frontend's; not frontend's" (a review's find on
/// the Istio example's sidecar).
#[test]
fn a_conflict_between_endpoints_of_one_caller_names_the_endpoints() {
    let graph = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"frontend\"\n[services.frontend.endpoints.browse]\n\
         [[services.frontend.endpoints.browse.calls]]\nto = \"checkout\"\ntimeout = \"1s\"\n\
         max_attempts = 2\nretry_budget = { ratio = 0.1, min_per_sec = 5 }\n\
         [services.frontend.endpoints.order]\n[[services.frontend.endpoints.order.calls]]\n\
         to = \"checkout\"\ntimeout = \"1s\"\nmax_attempts = 2\n[services.checkout]\n",
    )
    .unwrap();
    let plan = plan(&graph, Target::Istio);
    let conflict = plan
        .conflicts
        .iter()
        .find(|c| c.part == "destination")
        .unwrap_or_else(|| panic!("{:?}", plan.conflicts));
    let text = conflict.to_string();
    assert!(
        text.contains("wrote frontend (browse)'s") || text.contains("wrote frontend (order)'s"),
        "{text}"
    );
    assert!(
        text.contains("not frontend (order)'s") || text.contains("not frontend (browse)'s"),
        "{text}"
    );
    assert_eq!(conflict.written.len() + conflict.not_written.len(), 2);
}

/// A gRPC call that retries under a retry budget, which gRPC cannot say: the service config's
/// `retryThrottling` is removed (a bucket left in the user's file is no part of the policy),
/// as for a call with no limiter, so the two agree and nothing conflicts.
#[test]
fn a_grpc_call_with_a_budget_removes_the_throttling_as_one_without_a_limiter_does() {
    let graph = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\nto = \"a\"\n\
         timeout = \"1s\"\nmax_attempts = 2\nretry_on = [\"unavailable\"]\n\
         [[services.web.calls]]\nto = \"b\"\ntimeout = \"1s\"\nmax_attempts = 2\n\
         retry_on = [\"unavailable\"]\nretry_budget = \"none\"\n[services.a]\n[services.b]\n",
    )
    .unwrap();
    let plan = plan(&graph, Target::Grpc);
    assert!(plan.conflicts.is_empty(), "{:?}", plan.conflicts);
    for destination in &plan.destinations {
        let root: Vec<&Assign> = destination.routes[0]
            .fields
            .iter()
            .filter(|a| a.from_root)
            .collect();
        assert_eq!(root.len(), 1, "{}: {root:?}", destination.to);
        assert_eq!(path_text(&root[0].path), "retryThrottling");
        assert_eq!(root[0].value, Val::Remove);
    }
}

/// A connect timeout that is one caller's clamped default (its own timeout) but another's
/// explicit setting is written into the shared `DestinationRule`: left to Istio's default, the
/// second caller would read back its own timeout (a round-trip case proptest found).
#[test]
fn a_default_for_one_caller_is_written_when_another_shares_the_resource() {
    let graph = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\nto = \"d\"\n\
         timeout = \"85ms\"\nconnect_timeout = \"68ms\"\n[services.batch]\n\
         [[services.batch.calls]]\nto = \"d\"\ntimeout = \"68ms\"\nconnect_timeout = \"68ms\"\n\
         [services.d]\n",
    )
    .unwrap();
    let plan = plan(&graph, Target::Istio);
    let connect = plan.destinations[0]
        .destination
        .iter()
        .find(|a| path_text(&a.path) == "spec.trafficPolicy.connectionPool.tcp.connectTimeout")
        .expect("a connect timeout");
    assert_eq!(connect.value, Val::str("68ms"));
    assert!(!connect.only_to_replace, "{connect:?}");
    // Each caller's clamped default alone: left to Istio.
    let alone = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"batch\"\n[services.batch]\n[[services.batch.calls]]\nto = \"d\"\n\
         timeout = \"68ms\"\nconnect_timeout = \"68ms\"\n[services.d]\n",
    )
    .unwrap();
    let plan = super::plan(&alone, Target::Istio);
    let connect = plan.destinations[0]
        .destination
        .iter()
        .find(|a| path_text(&a.path) == "spec.trafficPolicy.connectionPool.tcp.connectTimeout")
        .expect("a connect timeout");
    assert!(connect.only_to_replace, "{connect:?}");
}

/// A mesh retries and hedges any method; stormguard retries a request that is not idempotent
/// only where it was never sent or was declined, and never hedges it. The export writes what
/// stormguard does: a POST's `timeout` and 502 are not handed to Istio to replay, its `5xx`
/// becomes 503, a list of which nothing is retried writes no retry, and a hedge is dropped;
/// each is said.
#[test]
fn a_call_that_is_not_idempotent_is_written_as_stormguard_retries_it() {
    let text = r#"
[entry]
service = "web"
[services.web]
[[services.web.calls]]
to = "orders"
method = "POST"
timeout = "500ms"
max_attempts = 2
retry_on = ["connect-failure", "timeout", "5xx"]
[[services.web.calls]]
to = "payments"
method = "POST"
timeout = "500ms"
max_attempts = 3
retry_on = ["timeout", "502"]
hedge = { delay = "50ms", max_extra = 0.05 }
[services.orders]
[services.payments]
"#;
    let graph = stormguard_graph::parse("g.toml", text).unwrap();
    let plan = plan(&graph, Target::Istio);
    let fields = |to: &str| {
        let dest = plan.destinations.iter().find(|d| d.to == to).unwrap();
        dest.routes[0].fields.clone()
    };
    let orders = fields("orders");
    // 5xx is 503 for a POST, and 503 through Envoy may follow an applied request: only the
    // connect failure is left.
    assert_eq!(
        assign(&orders, "retries.retryOn"),
        Some(&Val::str("connect-failure"))
    );
    assert_eq!(assign(&orders, "retries.attempts"), Some(&Val::Int(1)));
    let payments = fields("payments");
    assert_eq!(
        assign(&payments, "retries.attempts"),
        Some(&Val::Int(0)),
        "{payments:#?}"
    );
    assert_eq!(assign(&payments, "retries.retryOn"), None);
    let said = |to: &str, key: &str| {
        plan.unexpressed
            .iter()
            .find(|u| u.to == to && u.key == key)
            .map(|u| u.why.clone())
            .unwrap_or_else(|| panic!("{to} {key}: {:#?}", plan.unexpressed))
    };
    assert!(said("orders", "idempotent").contains("only on what stormguard retries of them"));
    assert!(said("orders", "retry_on").starts_with("503 and unavailable: Istio answers them"));
    assert!(said("payments", "retry_on").contains("no retry is written"));
    assert!(said("payments", "hedge").contains("never hedged"));
    // An HTTPRoute that retries at all retries resets and timeouts: no retry for a POST.
    let gateway = super::plan(&graph, Target::GatewayApi);
    let orders = gateway
        .destinations
        .iter()
        .find(|d| d.to == "orders")
        .unwrap();
    assert_eq!(
        assign(&orders.routes[0].fields, "retry.attempts"),
        Some(&Val::Int(0))
    );
    assert_eq!(assign(&orders.routes[0].fields, "retry.codes"), None);
    assert!(gateway.unexpressed.iter().any(|u| u.to == "orders"
        && u.key == "max_attempts"
        && u.why.contains("no retry written")));
    assert!(!gateway.unexpressed.iter().any(|u| u.key == "idempotent"));
}

/// A gRPC client reports a connection lost after the request was written as UNAVAILABLE, so a
/// service config retries a method that is not idempotent only on the statuses with which a
/// server declines the work and the client cannot make up.
#[test]
fn a_grpc_method_that_is_not_idempotent_is_not_retried_on_unavailable() {
    let text = r#"
[entry]
service = "web"
[services.web]
[[services.web.calls]]
to = "orders"
idempotent = false
request_timeout = "1s"
max_attempts = 3
retry_on = ["unavailable", "resource-exhausted"]
[services.orders]
"#;
    let graph = stormguard_graph::parse("g.toml", text).unwrap();
    let plan = plan(&graph, Target::Grpc);
    let route = &plan.destinations[0].routes[0];
    assert_eq!(
        assign(&route.fields, "retryPolicy.retryableStatusCodes"),
        Some(&Val::List(vec![Val::str("RESOURCE_EXHAUSTED")]))
    );
    assert!(plan
        .unexpressed
        .iter()
        .any(|u| u.key == "retry_on" && u.why.starts_with("unavailable: a gRPC client")));
}

/// A resource that holds one policy for every caller (a Linkerd or Gateway API route, a gRPC
/// method config) holds the policy of the callers whose requests are not idempotent, and says
/// why: the most common policy (two GET callers' retries) would replay the POST caller's
/// requests after a timeout or a 502.
#[test]
fn a_shared_route_holds_the_policy_that_replays_no_callers_request() {
    let text = r#"
[entry]
service = "x"
[services.x]
[[services.x.calls]]
to = "orders"
timeout = "200ms"
max_attempts = 2
[services.y]
[[services.y.calls]]
to = "orders"
timeout = "200ms"
max_attempts = 2
[services.z]
[[services.z.calls]]
to = "orders"
method = "POST"
timeout = "200ms"
[services.orders]
"#;
    let graph = stormguard_graph::parse("g.toml", text).unwrap();
    for (target, retry) in [
        (Target::Linkerd, "retry.linkerd.io/http"),
        (Target::GatewayApi, "retry.codes"),
        (Target::Grpc, "retryPolicy.retryableStatusCodes"),
    ] {
        let plan = plan(&graph, target);
        let route = &plan.destinations[0].routes[0];
        let written = assign(&route.fields, retry);
        assert!(
            written.is_none(),
            "{target}: {retry} = {written:?}\n{:#?}",
            route.fields
        );
        let conflict = plan.conflicts.iter().find(|c| c.part == "route").unwrap();
        assert_eq!(conflict.written, ["z"], "{target}");
        assert!(
            conflict
                .to_string()
                .contains("wrote z's (the policy of requests that are not idempotent"),
            "{conflict}"
        );
    }
    // Gateway API says "no retry" rather than leaving the implementation's own.
    let gateway = plan(&graph, Target::GatewayApi);
    assert_eq!(
        assign(&gateway.destinations[0].routes[0].fields, "retry.attempts"),
        Some(&Val::Int(0))
    );
}

/// A call fixed to one attempt is written to an HTTPRoute that retried as `retry.attempts: 0`,
/// not by deleting the stanza: without one the implementation's own retries apply (Istio's
/// conversion of a rule without one gives the sidecar's two retries), and the fix made three
/// attempts.
#[test]
fn gateway_api_writes_one_attempt_as_no_retry() {
    let text = r#"
[entry]
service = "x"
[services.x]
[[services.x.calls]]
to = "orders"
timeout = "200ms"
max_attempts = 1
[services.orders]
"#;
    let graph = stormguard_graph::parse("g.toml", text).unwrap();
    let gateway = plan(&graph, Target::GatewayApi);
    let fields = &gateway.destinations[0].routes[0].fields;
    assert_eq!(assign(fields, "retry.attempts"), Some(&Val::Int(0)));
    // Over a rule that has attempts only: one without a stanza is left as it is.
    let attempts = fields
        .iter()
        .find(|a| a.path == crate::export::edit::keys(&["retry", "attempts"]))
        .unwrap();
    assert!(attempts.only_to_replace);
}

/// A route made to send once under a Service whose annotations retry: Linkerd's controller
/// reads a route without retry annotations as taking the Service's, and `limit: "0"` as none
/// given, so a new route is written `limit: "1"` with no conditions, and the note says what
/// that still retries. Without Service retries, the route's retry annotations are only
/// removed. A Service whose annotations are the destination's policy (no route of its own among
/// the files) is edited instead: its retry annotations go, for one attempt exactly.
#[test]
fn a_linkerd_route_sending_once_under_service_retries_is_written_limit_1() {
    let graph = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\nto = \"reviews\"\n\
         timeout = \"500ms\"\nmax_attempts = 1\n[services.reviews]\n",
    )
    .unwrap();
    // The Service's documents, and whether the inventory holds its annotations as the
    // destination's route (as the import reads a Service with no route of its own), or not
    // (its routes are in files not read).
    let service = |annotations: &str, routed: bool| {
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\n{annotations}spec:\n  ports:\n  - port: 8080\n"
        );
        let documents = parse_documents("k8s/reviews-svc.yaml", &text).unwrap();
        let mut inventory = crate::inventory(&documents).unwrap();
        if !routed {
            inventory.routes.clear();
        }
        Existing {
            inventory,
            documents,
            ..Existing::default()
        }
    };
    let retries =
        "  annotations:\n    retry.linkerd.io/http: 5xx\n    retry.linkerd.io/limit: \"2\"\n";
    // Routed by the Service's annotations: edited there, no new route, no note.
    let out = export(&graph, Target::Linkerd, &service(retries, true));
    assert_eq!(out.files.len(), 1);
    assert!(out.files[0].edited, "{:?}", out.files[0].written);
    let text = &out.files[0].text;
    assert!(!text.contains("retry.linkerd.io/"), "{text}");
    assert!(
        text.contains("timeout.linkerd.io/response: 500ms"),
        "{text}"
    );
    assert!(!out.notes.iter().any(|n| n.contains("one attempt, under")));
    // Routed elsewhere: a new route, limit 1.
    let out = export(&graph, Target::Linkerd, &service(retries, false));
    let text: String = out
        .files
        .iter()
        .filter(|f| !f.edited)
        .map(|f| f.text.as_str())
        .collect();
    assert!(text.contains("retry.linkerd.io/limit: \"1\""), "{text}");
    assert!(!text.contains("retry.linkerd.io/http"), "{text}");
    let note = out
        .notes
        .iter()
        .find(|n| n.contains("one attempt, under the retry annotations of Service reviews,"))
        .unwrap_or_else(|| panic!("{:?}", out.notes));
    assert!(
        note.contains("only a request refused before it was sent, once"),
        "{note}"
    );
    // Read back, the route retries only what was never sent.
    let documents = parse_documents("stormguard-linkerd.yaml", &text).unwrap();
    let inv = crate::inventory(&documents).unwrap();
    let route = &inv.routes[0];
    assert_eq!(route.policy.get("max_attempts").unwrap().value, "2");
    assert_eq!(
        route.policy.get("retry_on").unwrap().value,
        "[\"refused-stream\"]"
    );
    // No Service retries (none, or a limit of 0, which Linkerd reads as none): nothing to turn
    // off, nothing written.
    for quiet in ["", "  annotations:\n    retry.linkerd.io/limit: \"0\"\n"] {
        for routed in [true, false] {
            let out = export(&graph, Target::Linkerd, &service(quiet, routed));
            let text: String = out.files.iter().map(|f| f.text.as_str()).collect();
            assert!(
                !text.contains("retry.linkerd.io/limit"),
                "{quiet:?}: {text}"
            );
            assert!(!out.notes.iter().any(|n| n.contains("one attempt, under")));
        }
    }
}

/// Istio's default connect timeout, 10 s, is written only over a value a file has, with an
/// attempt's timeout (which the import clamps it to) or without one: a new DestinationRule that
/// says only the default is noise (export leaves a connect timeout fixed from the default round
/// trip as the files had it, often that default).
#[test]
fn istio_s_default_connect_timeout_makes_no_new_destination_rule() {
    for timeout in ["", "timeout = \"20s\"\n"] {
        let graph = stormguard_graph::parse(
            "g.toml",
            &format!(
                "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\n\
                 to = \"reviews\"\nconnect_timeout = \"10s\"\n{timeout}[services.reviews]\n"
            ),
        )
        .unwrap();
        let out = export(&graph, Target::Istio, &Existing::default());
        let text: String = out.files.iter().map(|f| f.text.as_str()).collect();
        assert!(!text.contains("connectTimeout"), "{timeout:?}: {text}");
    }
}

/// The summary tells apart two resources of one kind and name in two namespaces, and names a
/// resource once however many of its parts were written.
#[test]
fn the_summary_names_twins_by_namespace_and_each_resource_once() {
    let written = vec![
        ("Service api".into(), Some("shop".into()), 0),
        ("Service api".into(), Some("other".into()), 1),
        ("Service web".into(), Some("shop".into()), 2),
        ("Service web".into(), Some("shop".into()), 2),
        ("HTTPRoute api spec.rules[0]".into(), None, 3),
    ];
    assert_eq!(
        super::summary_names(&written, |_| true),
        [
            "Service api (in shop)",
            "Service api (in other)",
            "Service web",
            "HTTPRoute api spec.rules[0]"
        ]
    );
    // Only the documents changed are named; a twin unchanged still tells the other apart.
    assert_eq!(
        super::summary_names(&written, |document| document == 0),
        ["Service api (in shop)"]
    );
}
