//! A graph read from a mesh's files and sent back unchanged changes nothing: `import` then
//! `export` of every example under `examples/mesh/` leaves each file it edits as it was, and
//! adds no resource.
//!
//! Why: `import | check --fix | export` is reviewed as a diff of the user's files. Values the
//! import read from a system's defaults (Envoy's per-try timeout that is the route's, a
//! Linkerd route's timeouts that are its Service's) or from a resource that holds them (a
//! Service's annotations) written back elsewhere, or new resources that say nothing the
//! defaults do not, bury the fix in noise, and the copies stop following the originals.

use std::path::PathBuf;

use stormguard_mesh::export::{self, Existing, Target};

fn example(dir: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/../../examples/mesh/{dir}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// The example imported (with the calls file beside it as the base, as its README runs it)
/// and exported back to `target` with its own files as the existing ones.
fn round_trip(dir: &str, target: Target) -> export::Export {
    round_trip_edited(dir, target, |toml| toml)
}

/// A case of `tests/data/unchanged/`.
fn data(dir: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/tests/data/unchanged/{dir}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// [`round_trip`] with the imported graph's text changed by `edit` before the export (what
/// `check --fix` would change).
fn round_trip_edited(
    dir: &str,
    target: Target,
    edit: impl FnOnce(String) -> String,
) -> export::Export {
    round_trip_at(example(dir), target, edit)
}

/// The note of `out` that starts with `start`; fails listing them all when none does.
fn note<'o>(out: &'o export::Export, start: &str) -> &'o String {
    out.notes
        .iter()
        .find(|n| n.starts_with(start))
        .unwrap_or_else(|| panic!("no note starting {start:?}: {:#?}", out.notes))
}

/// [`round_trip_edited`] of the files in `path`.
fn round_trip_at(
    path: PathBuf,
    target: Target,
    edit: impl FnOnce(String) -> String,
) -> export::Export {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let base = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()));
    let manifests: Vec<PathBuf> = files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e != "toml" && e != "md"))
        .collect();
    let documents = stormguard_mesh::read_paths(&manifests).unwrap();
    let inventory = stormguard_mesh::inventory(&documents).unwrap();
    let imported = stormguard_mesh::assemble(
        &inventory,
        &stormguard_mesh::Options {
            base,
            inputs: vec![path.display().to_string()],
        },
    )
    .unwrap();
    let toml = edit(imported.toml);
    let graph =
        stormguard_graph::parse("imported.toml", &toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    export::export(&graph, target, &Existing::read(&manifests).unwrap())
}

fn assert_unchanged(dir: &str, target: Target, new_allowed: &[&str]) {
    let out = round_trip(dir, target);
    for file in &out.files {
        if file.edited {
            let before = std::fs::read_to_string(&file.path).unwrap();
            assert_eq!(file.text, before, "{dir}: {} changed", file.path.display());
        } else {
            for resource in &file.written {
                assert!(
                    new_allowed.contains(&resource.as_str()),
                    "{dir}: new {resource} in {}:\n{}",
                    file.path.display(),
                    file.text
                );
            }
        }
    }
}

#[test]
fn envoy_adds_no_per_try_timeout_that_is_the_routes() {
    assert_unchanged("envoy", Target::Envoy, &[]);
}

#[test]
fn istio_adds_no_virtual_service_that_only_routes() {
    assert_unchanged("istio", Target::Istio, &[]);
}

#[test]
fn gateway_api_and_grpc_are_unchanged() {
    assert_unchanged("gateway-api", Target::GatewayApi, &[]);
    assert_unchanged("grpc", Target::Grpc, &[]);
}

/// A route keeps inheriting its Service's timeouts, and a Service whose annotations are the
/// policy is edited there, not copied into a new HTTPRoute. emoji-svc's policy is its
/// ServiceProfile's, which the export does not write (see the Linkerd writer) and the graph
/// leaves as it is: no HTTPRoute for it either (one was written, with no matches, so once the
/// profile went it retried every path and method of the Service 99 times, where the profile
/// retried only `GET /api/list`: a review).
#[test]
fn linkerd_writes_no_inherited_annotation_and_no_route_for_a_services_own() {
    assert_unchanged("linkerd", Target::Linkerd, &[]);
    let out = round_trip("linkerd", Target::Linkerd);
    assert!(out.files.is_empty(), "{:#?}", out.files);
    // voting-svc's Service was found, and holds the graph's policy already: said unchanged.
    assert!(
        !out.unchanged.is_empty(),
        "the files with resources found: {:#?}",
        out
    );
}

/// A profile's destination whose policy the graph changes gets a new HTTPRoute, in the
/// profile's namespace, and a note that the profile stays in force and that the route, without
/// matches, covers more than the profile's routes did.
#[test]
fn linkerd_a_profiles_destination_changed_gets_a_route_and_says_what_it_covers() {
    let out = round_trip_edited("linkerd", Target::Linkerd, |toml| {
        toml.replace("max_attempts = 100", "max_attempts = 3")
    });
    let new = out.files.iter().find(|f| !f.edited).unwrap();
    assert_eq!(new.written, ["HTTPRoute emoji-svc"]);
    // In the profile's namespace, where its Service is (it was written without one, into the
    // default namespace, and read back as another service).
    assert!(
        new.text
            .contains("name: emoji-svc\n  namespace: emojivoto\n"),
        "{}",
        new.text
    );
    assert!(
        new.text.contains("retry.linkerd.io/limit: \"2\""),
        "{}",
        new.text
    );
    let note = note(
        &out,
        "HTTPRoute emoji-svc: Linkerd's proxies use emoji-svc's ServiceProfile",
    );
    assert!(
        note.ends_with(
            "it has no matches, so it applies to every request to emoji-svc, where the \
             profile's routes apply each to its own condition (GET /api/list): add those \
             matches before deleting the profile"
        ),
        "{note}"
    );
}

/// What changed is written where it was read: a Service's annotation in the Service, and a
/// route's timeout, no longer its Service's, on the route.
#[test]
fn linkerd_writes_a_change_where_the_value_was_read() {
    let out = round_trip_edited("linkerd", Target::Linkerd, |toml| {
        toml.replace("request_timeout = \"3s\"", "request_timeout = \"2s\"")
            .replace("request_timeout = \"5s\"", "request_timeout = \"4s\"")
    });
    let text = |name: &str| {
        out.files
            .iter()
            .find(|f| f.edited && f.path.ends_with(name))
            .map(|f| f.text.clone())
            .unwrap_or_else(|| panic!("{name} not edited"))
    };
    let services = text("emojivoto-services.yaml");
    assert!(
        services.contains("timeout.linkerd.io/request: 4s"),
        "{services}"
    );
    // web-svc's own annotation stays: its route now says its own.
    assert!(
        services.contains("timeout.linkerd.io/request: 3s"),
        "{services}"
    );
    let route = text("web-route.yaml");
    assert!(route.contains("timeout.linkerd.io/request: 2s"), "{route}");
    assert!(out
        .files
        .iter()
        .all(|f| f.edited || f.written == ["HTTPRoute emoji-svc"]));
}

/// A `policy.linkerd.io` HTTPRoute's own `timeouts` are its timeout family: its Service's
/// annotations do not apply to it, so a timeout changed in the graph is written on the route
/// (it was skipped as inherited, and the change lost). Found by review.
#[test]
fn linkerd_a_route_with_its_own_spec_timeouts_inherits_none() {
    let out = round_trip_at(data("linkerd-spec-timeouts"), Target::Linkerd, |toml| {
        toml.replace("request_timeout = \"10s\"", "request_timeout = \"3s\"")
            .replace("max_attempts = 1", "timeout = \"1s\"\nmax_attempts = 1")
    });
    let file = out
        .files
        .iter()
        .find(|f| f.edited)
        .expect("the route edited");
    assert!(
        file.text.contains("timeout.linkerd.io/request: 3s")
            && file.text.contains("timeout.linkerd.io/response: 1s")
            && file
                .text
                .contains("name: api-route\n  namespace: shop\n  annotations:"),
        "{}",
        file.text
    );
    // The annotation is what Linkerd applies; the rule's own value, left as it was, is said.
    let note = note(&out, "HTTPRoute api-route in ");
    assert!(
        note.contains(
            "timeout.linkerd.io/request: 3s is written, which Linkerd applies over the rules' \
             timeouts.request (10s)"
        ),
        "{note}"
    );
}

/// A graph that takes the request timeout off a `policy.linkerd.io` route whose rules give
/// one cannot say it with annotations (Linkerd takes the rule's when the route has none): the
/// export says to remove it.
#[test]
fn linkerd_a_request_timeout_taken_off_a_spec_timeout_route_is_said_to_remain() {
    let out = round_trip_at(data("linkerd-spec-timeouts"), Target::Linkerd, |toml| {
        toml.lines()
            .filter(|l| !l.starts_with("request_timeout = \"10s\""))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let note = note(&out, "HTTPRoute api-route in ");
    assert!(
        note.contains(
            "the rules' timeouts.request (10s) still apply (Linkerd takes them when the route \
             has no timeout.linkerd.io/request annotation); with them removed, its Service's \
             timeout.linkerd.io/request (3s) applies: remove that too"
        ),
        "{note}"
    );
    let unchanged = round_trip_at(data("linkerd-spec-timeouts"), Target::Linkerd, |toml| toml);
    assert!(
        !unchanged
            .notes
            .iter()
            .any(|n| n.contains("timeouts.request")),
        "{:#?}",
        unchanged.notes
    );
}

/// A Service's `retry.linkerd.io/grpc`, which its GRPCRoutes take (in files not read, or added
/// later), stays when the Service's annotations are the policy written back. Found by review.
#[test]
fn linkerd_a_services_grpc_retry_conditions_stay() {
    let out = round_trip_at(data("linkerd-grpc-service"), Target::Linkerd, |toml| toml);
    for file in &out.files {
        assert!(file.edited, "new: {:?}", file.written);
        let before = std::fs::read_to_string(&file.path).unwrap();
        assert_eq!(file.text, before);
    }
}

/// An Envoy bootstrap's route and cluster are what make a destination reachable: one whose
/// every value is Envoy's default is still written (review: it vanished from the bootstrap).
#[test]
fn envoy_writes_a_destination_that_has_only_defaults() {
    let graph = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"a\"\ntimeout = \"20s\"\n[services.a]\n\
         [[services.a.calls]]\nto = \"b\"\nrequest_timeout = \"15s\"\nmax_attempts = 1\n\
         retry_budget = \"none\"\n\
         [[services.a.calls]]\nto = \"c\"\ntimeout = \"1s\"\nmax_attempts = 1\n\
         [services.b]\n[services.c]\n",
    )
    .unwrap();
    let out = export::export(&graph, Target::Envoy, &Existing::default());
    let text: String = out.files.iter().map(|f| f.text.as_str()).collect();
    assert!(text.contains("cluster: b"), "{text}");
    assert!(text.contains("cluster: c"), "{text}");
}

/// A GRPCRoute with no annotations of its own takes its Service's gRPC retries: sent back
/// unchanged, it is left so (it gained `retry.linkerd.io/limit` with no conditions, a retry
/// family of its own that retried nothing: found by review); with `unavailable` taken off its
/// retry_on, it gets a family of its own without it; with another code, that one.
#[test]
fn linkerd_a_grpc_route_keeps_its_services_grpc_retries() {
    let dir = data("linkerd-grpc-route");
    let out = round_trip_at(dir.clone(), Target::Linkerd, |toml| toml);
    for file in &out.files {
        assert!(file.edited, "new: {:?}", file.written);
        assert_eq!(file.text, std::fs::read_to_string(&file.path).unwrap());
    }
    let route_of = |out: &export::Export| {
        let text = &out.files.iter().find(|f| f.edited).unwrap().text;
        text[text.find("kind: GRPCRoute").unwrap()..].to_string()
    };
    let out = round_trip_at(dir.clone(), Target::Linkerd, |toml| {
        toml.replace(", \"unavailable\"", "")
            .replace("\"unavailable\", ", "")
    });
    let route = route_of(&out);
    assert!(route.contains("retry.linkerd.io/limit: \"2\""), "{route}");
    assert!(!route.contains("retry.linkerd.io/grpc"), "{route}");
    let out = round_trip_at(dir, Target::Linkerd, |toml| {
        toml.replace("\"unavailable\"", "\"internal\"")
    });
    let route = route_of(&out);
    assert!(route.contains("retry.linkerd.io/grpc: internal"), "{route}");
    // Written, so not among what Linkerd cannot express (it was, beside the route that had
    // it: a third review), and the summary names the route, not a part of it that the
    // annotations are not in (`spec.rules[0]`).
    assert!(
        !out.unexpressed.iter().any(|u| u.why.contains("GRPCRoute")),
        "{:#?}",
        out.unexpressed
    );
    let written: Vec<&String> = out.files.iter().flat_map(|f| &f.written).collect();
    assert_eq!(written, ["GRPCRoute rpc-route"]);
}

/// A GRPCRoute under a Service that retries, cut to one attempt, is written with a limit of
/// one, and the note says so of the GRPCRoute, by its name (it said `HTTPRoute rpc`).
#[test]
fn linkerd_a_grpc_route_cut_to_one_attempt_is_named_in_the_note() {
    let out = round_trip_at(data("linkerd-grpc-route"), Target::Linkerd, |toml| {
        toml.replace("max_attempts = 3", "max_attempts = 1")
    });
    let note = out
        .notes
        .iter()
        .find(|n| n.contains("one attempt, under the retry annotations of Service rpc,"))
        .unwrap_or_else(|| panic!("{:#?}", out.notes));
    assert!(note.starts_with("GRPCRoute rpc-route: "), "{note}");
    let text = &out.files.iter().find(|f| f.edited).unwrap().text;
    let route = &text[text.find("kind: GRPCRoute").unwrap()..];
    assert!(route.contains("retry.linkerd.io/limit: \"1\""), "{route}");
}

/// An HTTPRoute under a Service that retries both HTTP statuses and gRPC codes takes the
/// HTTP ones: sent back unchanged, it is left so (the gRPC codes, which it does not read, are
/// no reason to copy the family onto it).
#[test]
fn linkerd_an_http_route_ignores_its_services_grpc_codes() {
    let out = round_trip_at(data("linkerd-http-route-both"), Target::Linkerd, |toml| {
        toml
    });
    for file in &out.files {
        assert!(file.edited, "new: {:?}", file.written);
        assert_eq!(file.text, std::fs::read_to_string(&file.path).unwrap());
    }
}

/// Sent back unchanged, a `policy.linkerd.io` route whose spec gives its request timeout gets
/// no annotation repeating it (a second review: it gained `timeout.linkerd.io/request: 10s`).
#[test]
fn linkerd_a_route_with_spec_timeouts_is_unchanged() {
    let out = round_trip_at(data("linkerd-spec-timeouts"), Target::Linkerd, |toml| toml);
    for file in &out.files {
        assert!(file.edited, "new: {:?}", file.written);
        assert_eq!(file.text, std::fs::read_to_string(&file.path).unwrap());
    }
}

/// A destination whose policy is a ServiceProfile's, cut by the graph to one attempt (as
/// `check --fix` does to emoji-svc), leaves a new route nothing to write: the export says
/// where to set it, where it said nothing and the profile kept retrying (a second review).
#[test]
fn linkerd_a_profiles_destination_cut_to_one_attempt_is_said_to_need_the_profile() {
    let out = round_trip_edited("linkerd", Target::Linkerd, |toml| {
        toml.replace("max_attempts = 100", "max_attempts = 1")
    });
    assert!(
        out.files.iter().all(|f| f.edited),
        "{:?}",
        out.files.iter().map(|f| &f.written).collect::<Vec<_>>()
    );
    let note = out
        .notes
        .iter()
        .find(|n| n.starts_with("emoji-svc: its policy is the ServiceProfile"))
        .unwrap_or_else(|| panic!("{:#?}", out.notes));
    assert!(note.contains("set isRetryable: false"), "{note}");
    assert!(note.contains("emoji-profile.yaml"), "{note}");
}

/// A Service written back with no retry loses its gRPC conditions with its limit: kept alone,
/// Linkerd would read them with a limit of 1, and its GRPCRoutes would still retry (a second
/// review).
#[test]
fn linkerd_a_service_cut_to_one_attempt_keeps_no_grpc_conditions() {
    let out = round_trip_at(data("linkerd-grpc-service"), Target::Linkerd, |toml| {
        toml.replace("max_attempts = 3", "max_attempts = 1")
    });
    let file = out.files.iter().find(|f| f.edited).unwrap();
    assert!(!file.text.contains("retry.linkerd.io/"), "{}", file.text);
}

/// A Service name in two namespaces is imported as two services, `api-shop` and `api-other`,
/// and each is found again in its own namespace: sent back unchanged, nothing is written (a
/// new HTTPRoute `api-shop` in the default namespace, for a Service of that name that does
/// not exist, was), and a change lands on its own Service only.
#[test]
fn linkerd_a_service_name_in_two_namespaces_is_each_its_own() {
    let out = round_trip_at(data("linkerd-two-namespaces"), Target::Linkerd, |toml| toml);
    for file in &out.files {
        assert!(file.edited, "new: {:?}\n{}", file.written, file.text);
        assert_eq!(file.text, std::fs::read_to_string(&file.path).unwrap());
    }
    assert!(
        !out.notes.iter().any(|n| n.contains("port 80 written")),
        "{:#?}",
        out.notes
    );
    let out = round_trip_at(data("linkerd-two-namespaces"), Target::Linkerd, |toml| {
        toml.replace("request_timeout = \"3s\"", "request_timeout = \"2s\"")
    });
    let [file] = out.files.as_slice() else {
        panic!("{:#?}", out.files);
    };
    assert!(file.edited, "{:?}", file.written);
    let before = std::fs::read_to_string(&file.path).unwrap();
    assert_eq!(
        file.text,
        before.replacen(
            "timeout.linkerd.io/request: 3s",
            "timeout.linkerd.io/request: 2s",
            1
        ),
        "the shop namespace's Service only"
    );
    // The summary names it, told from the other namespace's, and not the one unchanged.
    assert_eq!(file.written, ["Service api (in shop)"]);
}

/// A `policy.linkerd.io` route whose rules give different request timeouts (20s and 10s, or
/// 10s and none) is imported as an endpoint per rule, and sent back unchanged is left as it
/// is: one annotation, which Linkerd would apply to every rule, was added with the first
/// rule's value (a third review). A value none of its rules has is written, and the note says
/// it applies to every rule.
#[test]
fn linkerd_a_route_whose_rules_differ_in_timeouts_is_left_alone_unchanged() {
    for case in [
        "linkerd-spec-timeouts-differ",
        "linkerd-spec-timeouts-partial",
    ] {
        let out = round_trip_at(data(case), Target::Linkerd, |toml| toml);
        for file in &out.files {
            assert!(file.edited, "{case}: new {:?}", file.written);
            assert_eq!(
                file.text,
                std::fs::read_to_string(&file.path).unwrap(),
                "{case}"
            );
        }
        assert!(
            !out.notes.iter().any(|n| n.contains("timeouts.request")),
            "{case}: {:#?}",
            out.notes
        );
    }
    // A change of one rule's, or of both, or the two swapped: one annotation would give every
    // rule one value, so none is written, and the note says what to set in the rules (the
    // change was dropped and the file called unchanged: a fourth review).
    let edits: [(&str, &str); 3] = [
        ("request_timeout = \"10s\"", "request_timeout = \"5s\""),
        ("request_timeout = \"20s\"", "request_timeout = \"10s\""),
        ("request_timeout = \"20s\"", "request_timeout = \"x\""),
    ];
    for (i, (from, to)) in edits.into_iter().enumerate() {
        let out = round_trip_at(
            data("linkerd-spec-timeouts-differ"),
            Target::Linkerd,
            |toml| {
                let toml = toml.replace(from, to);
                // The third: the two swapped.
                if i == 2 {
                    toml.replace("request_timeout = \"10s\"", "request_timeout = \"20s\"")
                        .replace("request_timeout = \"x\"", "request_timeout = \"10s\"")
                } else {
                    toml
                }
            },
        );
        assert!(out.files.is_empty(), "{i}: {:#?}", out.files);
        let note = note(&out, "HTTPRoute split in ");
        assert!(
            note.contains(
                "its rules give their own timeouts.request (20s, 10s), which one \
                 timeout.linkerd.io/request would override for every rule: the graph's (rule-0 "
            ) && note.ends_with("are not written; set them in the rules"),
            "{i}: {note}"
        );
    }
}

/// A new resource for a service the import named apart (`api-shop`, of `api` in `shop` beside
/// an `api` in `other`) names the Service as Kubernetes does: `api`, in `shop` (it was
/// `api-shop`, a Service that does not exist: a third review).
#[test]
fn a_new_resource_names_a_service_of_two_namespaces_as_kubernetes_does() {
    let out = round_trip_at(data("linkerd-two-namespaces"), Target::GatewayApi, |toml| {
        toml.replace("request_timeout = \"3s\"", "request_timeout = \"2s\"")
    });
    let new: Vec<&export::OutFile> = out.files.iter().filter(|f| !f.edited).collect();
    let [file] = new.as_slice() else {
        panic!("{:#?}", out.files);
    };
    let shop = file
        .text
        .split("---")
        .find(|doc| doc.contains("request: 2s"))
        .unwrap_or_else(|| panic!("{}", file.text));
    assert!(shop.contains("  name: api\n  namespace: shop\n"), "{shop}");
    assert!(!file.text.contains("api-shop"), "{}", file.text);
    assert!(!file.text.contains("api-other"), "{}", file.text);
}

/// A graph that names a Service by a name two namespaces use (`api`, written before an import)
/// does not say which it calls: nothing is written for it, and a note says how to name it (the
/// first found was edited, and the other namespace's values erased: a third review).
#[test]
fn a_name_two_namespaces_use_is_not_written_and_is_said_to_be_ambiguous() {
    let graph = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\nto = \"api\"\n\
         request_timeout = \"2s\"\nmax_attempts = 1\n[services.api]\n",
    )
    .unwrap();
    let manifests = vec![data("linkerd-two-namespaces").join("services.yaml")];
    let existing = Existing::read(&manifests).unwrap();
    for target in [Target::Linkerd, Target::Istio, Target::GatewayApi] {
        let out = export::export(&graph, target, &existing);
        assert!(out.files.is_empty(), "{target}: {:#?}", out.files);
        let note = note(&out, "api: not written: ");
        assert!(
            note.contains("a Service api in namespaces other, shop")
                && note.contains("(api-other, api-shop)"),
            "{note}"
        );
        // Not written, so nothing of it is listed as what the target cannot express.
        assert!(
            out.unexpressed.iter().all(|u| u.to != "api"),
            "{target}: {:#?}",
            out.unexpressed
        );
    }
}

/// A route in one namespace attached to a Service in another (`parentRefs: {name: api,
/// namespace: other}`) takes that Service's annotations: sent back unchanged it is left so
/// (they were looked for in the route's own namespace, and copied onto it: a third review).
#[test]
fn linkerd_a_route_attached_across_namespaces_inherits_its_parents_annotations() {
    let out = round_trip_at(data("linkerd-cross-namespace"), Target::Linkerd, |toml| {
        toml
    });
    for file in &out.files {
        assert!(file.edited, "new: {:?}\n{}", file.written, file.text);
        assert_eq!(file.text, std::fs::read_to_string(&file.path).unwrap());
    }
}

/// An Istio `retries` stanza with no `retryOn` retries Istio's own conditions, as the import
/// reads it: sent back unchanged it stays without one (they were spelled out: a third review),
/// and another set of conditions is written.
#[test]
fn istio_retries_without_retry_on_stay_so() {
    let out = round_trip_at(
        data("istio-retries-without-retry-on"),
        Target::Istio,
        |toml| toml,
    );
    assert!(out.files.is_empty(), "{:#?}", out.files);
    assert_eq!(out.unchanged.len(), 1, "{out:#?}");
    let out = round_trip_at(
        data("istio-retries-without-retry-on"),
        Target::Istio,
        |toml| {
            toml.replace(
            "retry_on = [\"connect-failure\", \"refused-stream\", \"unavailable\", \"cancelled\"]",
            "retry_on = [\"connect-failure\", \"reset\"]",
        )
        },
    );
    let text = &out.files[0].text;
    assert!(text.contains("retryOn: connect-failure,reset"), "{text}");
}

/// A graph imported from two namespaces' files, exported with only one of them read again
/// (`--from shop.yaml`), finds `api-shop` there: the names are made from the files read again,
/// where `api` is in one namespace only, and `api-shop` is what the import calls `api` of
/// `shop` beside another (it matched nothing, and new routes were written: a third review).
#[test]
fn a_service_named_apart_is_found_when_only_its_files_are_read_again() {
    let dir = data("linkerd-two-files");
    let both = vec![dir.join("other.yaml"), dir.join("shop.yaml")];
    let documents = stormguard_mesh::read_paths(&both).unwrap();
    let inventory = stormguard_mesh::inventory(&documents).unwrap();
    let imported = stormguard_mesh::assemble(
        &inventory,
        &stormguard_mesh::Options {
            base: None,
            inputs: vec![dir.display().to_string()],
        },
    )
    .unwrap();
    assert!(
        imported.toml.contains("to = \"api-shop\""),
        "{}",
        imported.toml
    );
    let toml = imported
        .toml
        .replace("request_timeout = \"3s\"", "request_timeout = \"2s\"");
    let graph = stormguard_graph::parse("imported.toml", &toml).unwrap();
    let shop = vec![dir.join("shop.yaml")];
    let out = export::export(&graph, Target::Linkerd, &Existing::read(&shop).unwrap());
    let file = out
        .files
        .iter()
        .find(|f| f.edited)
        .unwrap_or_else(|| panic!("{:#?}", out.files));
    assert!(
        file.text.contains("timeout.linkerd.io/request: 2s"),
        "{}",
        file.text
    );
    // api-other, whose files were not read again, is the only new one.
    let new: Vec<&String> = out
        .files
        .iter()
        .filter(|f| !f.edited)
        .flat_map(|f| &f.written)
        .collect();
    assert_eq!(new, ["HTTPRoute api-other"], "{:#?}", out.files);
}

/// An Istio route with a timeout and `retries` without `perTryTimeout` bounds each attempt by
/// the route's timeout, as the import reads it: sent back unchanged it stays without one (it
/// gained `perTryTimeout` equal to the timeout: a fourth review); a per-try timeout of its own
/// is written.
#[test]
fn istio_retries_without_a_per_try_timeout_stay_so() {
    let dir = data("istio-retries-without-per-try-timeout");
    let out = round_trip_at(dir.clone(), Target::Istio, |toml| toml);
    assert!(out.files.is_empty(), "{:#?}", out.files);
    let out = round_trip_at(dir, Target::Istio, |toml| {
        toml.replacen("\ntimeout = \"5s\"", "\ntimeout = \"2s\"", 1)
            .replacen("connect_timeout = \"5s\"", "connect_timeout = \"2s\"", 1)
    });
    let text = &out.files[0].text;
    assert!(text.contains("perTryTimeout: 2s"), "{text}");
}

/// A DestinationRule's connect timeout longer than a route's per-try timeout is read as the
/// per-try timeout (the attempt ends first); sent back unchanged, the file keeps its own (it
/// was shortened, for every route and port of the destination: a fourth review), and a
/// shorter one the graph asks is written.
#[test]
fn istio_a_connect_timeout_the_import_clamped_is_kept() {
    let dir = data("istio-clamped-connect-timeout");
    let out = round_trip_at(dir.clone(), Target::Istio, |toml| toml);
    assert!(out.files.is_empty(), "{:#?}", out.files);
    let out = round_trip_at(dir, Target::Istio, |toml| {
        toml.replacen("connect_timeout = \"1s\"", "connect_timeout = \"100ms\"", 1)
    });
    let text = &out.files[0].text;
    assert!(text.contains("connectTimeout: 100ms"), "{text}");
}

/// A route timeout cut below a per-try timeout the file does not have changes the route
/// timeout alone: Istio without `perTryTimeout` ends each attempt at the route timeout, which
/// is what the graph's longer per-try timeout comes to (a review: the export added
/// `retries: {attempts: 2, perTryTimeout: 5s}`, Istio's default attempts spelt out and a per-try
/// timeout longer than the route's).
#[test]
fn istio_a_route_timeout_cut_below_the_per_try_one_is_all_that_changes() {
    let out = round_trip_edited("istio", Target::Istio, |toml| {
        assert_eq!(
            toml.matches("\nrequest_timeout = \"5s\"").count(),
            1,
            "{toml}"
        );
        toml.replacen(
            "\nrequest_timeout = \"5s\"",
            "\nrequest_timeout = \"4s\"",
            1,
        )
    });
    assert_eq!(out.files.len(), 1, "{:#?}", out.files);
    let file = &out.files[0];
    let before = std::fs::read_to_string(&file.path).unwrap();
    assert_eq!(
        file.text,
        before.replacen("    timeout: 5s\n", "    timeout: 4s\n", 1),
        "{}",
        file.text
    );
}
