//! `stormguard export` as a user runs it: new resources, edits of the files a graph was imported
//! from, what the target cannot express on stderr, and exit 2 with file:line on bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn stormguard(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("export-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const GRAPH: &str = r#"[entry]
service = "web"
[services.web]
[[services.web.calls]]
to = "reviews"
timeout = "500ms"
request_timeout = "2s"
max_attempts = 3
retry_on = ["connect-failure", "503"]
token_bucket = { capacity = 500, retry_cost = 5, timeout_cost = 10 }
[services.reviews]
"#;

#[test]
fn new_resources_and_what_the_target_cannot_express() {
    let dir = scratch("new");
    std::fs::write(dir.join("g.toml"), GRAPH).unwrap();
    let (code, out, err) = stormguard(
        &dir,
        &["export", "g.toml", "--to", "istio", "--out", "mesh"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("wrote mesh/stormguard-istio.yaml (new): VirtualService reviews"),
        "{err}"
    );
    let written = std::fs::read_to_string(dir.join("mesh/stormguard-istio.yaml")).unwrap();
    assert!(written.contains("perTryTimeout: 500ms"), "{written}");
    assert!(err.contains("istio cannot express"), "{err}");
    assert!(
        err.contains("web -> reviews: `token_bucket`: Istio has no token bucket"),
        "{err}"
    );
    let (code, _, err) = stormguard(&dir, &["export", "g.toml", "--to", "grpc", "--out", "mesh"]);
    assert_eq!(code, 0, "{err}");
    let json = std::fs::read_to_string(dir.join("mesh/stormguard-grpc.json")).unwrap();
    assert!(json.contains("\"retryThrottling\""), "{json}");
    assert!(err.contains("gRPC has no per-attempt timeout"), "{err}");
}

#[test]
fn bad_input_exits_2_at_its_line() {
    let dir = scratch("bad");
    std::fs::write(
        dir.join("g.toml"),
        "[entry]\nservice = \"web\"\n[services.web]\nrate = 1\n",
    )
    .unwrap();
    let (code, _, err) = stormguard(&dir, &["export", "g.toml", "--to", "envoy"]);
    assert_eq!(code, 2);
    assert!(err.contains("g.toml:4:1"), "{err}");
    std::fs::write(dir.join("g.toml"), GRAPH).unwrap();
    std::fs::write(dir.join("vs.yaml"), "spec:\n  http: [1, 2\n").unwrap();
    let (code, _, err) = stormguard(
        &dir,
        &["export", "g.toml", "--to", "istio", "--from", "vs.yaml"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("vs.yaml:"), "{err}");
    let (code, _, err) = stormguard(&dir, &["export", "g.toml", "--to", "consul"]);
    assert_eq!(code, 2, "clap's own exit code for a bad value");
    assert!(err.contains("unknown target"), "{err}");
}

/// A Gateway API route the team keeps, with comments: `--in-place` edits it where it is.
const ROUTE: &str = "\
# checkout's route, reviewed by the payments team
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: checkout
  namespace: shop
spec:
  parentRefs:
  - group: \"\"
    kind: Service
    name: checkout   # GAMMA: the mesh route of the Service
  rules:
  - backendRefs:
    - name: checkout
      port: 8080
    timeouts:
      request: 10s   # agreed in the 2024 review
    retry:
      attempts: 4
      codes: [503]
";

#[test]
fn the_files_named_in_the_graphs_header_are_edited_in_place() {
    let dir = scratch("in-place");
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    std::fs::write(dir.join("k8s/checkout.yaml"), ROUTE).unwrap();
    let graph = "# Imported by `stormguard import` from k8s\n[entry]\nservice = \"web\"\n\
                 [services.web]\n[[services.web.calls]]\nto = \"checkout\"\ntimeout = \"800ms\"\n\
                 request_timeout = \"2s\"\nmax_attempts = 2\n\
                 retry_on = [\"connect-failure\", \"reset\", \"timeout\", \"503\", \"504\"]\n\
                 backoff = \"none\"\nretry_budget = \"none\"\nidempotent = true\n[services.checkout]\n";
    std::fs::write(dir.join("g.toml"), graph).unwrap();
    let (code, out, err) = stormguard(
        &dir,
        &["export", "g.toml", "--to", "gateway-api", "--in-place"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("(edited k8s/checkout.yaml): HTTPRoute checkout spec.rules[0]"),
        "{err}"
    );
    let edited = std::fs::read_to_string(dir.join("k8s/checkout.yaml")).unwrap();
    let expected = ROUTE
        .replace("request: 10s   # agreed", "request: 2s   # agreed")
        .replace(
            "      attempts: 4\n      codes: [503]\n",
            "      attempts: 1\n      codes: [503, 504]\n      backoff: 0s\n",
        )
        .replace(
            "      request: 2s   # agreed in the 2024 review\n",
            "      request: 2s   # agreed in the 2024 review\n      backendRequest: 800ms\n",
        );
    assert_eq!(edited, expected);
    // Nothing new: the one destination had its route.
    assert!(
        out.is_empty() && !dir.join("stormguard-export").exists(),
        "{out}{err}"
    );
}

/// A proxy settings file lists its upstreams' instances: the Envoy bootstrap's cluster holds
/// them (STATIC for addresses, STRICT_DNS for a discovery name), where it named the upstream
/// at a guessed port 80 and said to check it.
#[test]
fn a_proxy_settings_file_s_instances_are_the_envoy_cluster_s_endpoints() {
    let dir = scratch("proxy-instances");
    std::fs::write(
        dir.join("p.toml"),
        "[upstreams.api]\ninstances = [\"10.0.0.1:9001\", \"[::1]:9002\"]\n\
         [upstreams.users]\ndiscovery = { dns = \"users.svc.local:8080\" }\n\
         [[routes]]\nname = \"api\"\nupstream = \"api\"\ntimeout = \"1s\"\n\
         [[routes]]\nname = \"users\"\nupstream = \"users\"\ntimeout = \"1s\"\n",
    )
    .unwrap();
    let (code, _, err) = stormguard(&dir, &["export", "p.toml", "--to", "envoy", "--out", "o"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("port 80 written"), "{err}");
    let written = std::fs::read_to_string(dir.join("o/stormguard-envoy-app.yaml")).unwrap();
    let written = &written[written.find("clusters:").unwrap()..];
    let api = &written[written.find("- name: api").unwrap()..];
    let api = &api[..api.find("- name: users").unwrap_or(api.len())];
    assert!(api.contains("type: STATIC"), "{api}");
    for (address, port) in [("10.0.0.1", 9001), ("::1", 9002)] {
        assert!(
            api.contains(&format!("address: {address}\n"))
                || api.contains(&format!("address: \"{address}\"\n"))
                || api.contains(&format!("address: '{address}'\n")),
            "{api}"
        );
        assert!(api.contains(&format!("port_value: {port}")), "{api}");
    }
    let users = &written[written.find("- name: users").unwrap()..];
    assert!(users.contains("type: STRICT_DNS"), "{users}");
    assert!(users.contains("address: users.svc.local"), "{users}");
    assert!(users.contains("port_value: 8080"), "{users}");
    // Read back, the static cluster's endpoints are api's instances; the DNS name says nothing
    // of how many users has.
    let (code, _, err) = stormguard(&dir, &["import", "o", "--out", "back.toml"]);
    assert_eq!(code, 0, "{err}");
    let back = std::fs::read_to_string(dir.join("back.toml")).unwrap();
    let api = &back[back.find("[services.api]").unwrap()..];
    let api = &api[..api[1..].find("\n[").map_or(api.len(), |i| i + 1)];
    assert!(
        api.contains("instances = 2 # o/stormguard-envoy-app.yaml:"),
        "{back}"
    );
    assert!(api.contains("load_assignment.endpoints"), "{api}");
    let users = &back[back.find("[services.users]").unwrap()..];
    let users = &users[..users[1..].find("\n[").map_or(users.len(), |i| i + 1)];
    assert!(!users.contains("instances ="), "{users}");
}

/// Imported without `--base` and exported as it is, each example's named routes are edited in
/// place (their matches kept), and the placeholder caller of the import (`mesh-callers`, which
/// stands for every client) is in no output: it was written as a `sourceLabels` match, an
/// Envoy bootstrap's node, and new resources without the routes' matches beside the user's.
#[test]
fn an_example_imported_without_a_base_is_exported_into_its_own_resources() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh");
    for (system, edited_only) in [
        ("istio", true),
        ("envoy", true),
        ("gateway-api", true),
        ("grpc", true),
    ] {
        let dir = scratch(&format!("no-base-{system}"));
        let manifests = examples.join(system);
        let manifests = manifests.to_str().unwrap();
        let (code, _, err) = stormguard(&dir, &["import", manifests, "--out", "g.toml"]);
        assert_eq!(code, 0, "{system}: {err}");
        let (code, _, err) = stormguard(&dir, &["export", "g.toml", "--to", system, "--out", "o"]);
        assert_eq!(code, 0, "{system}: {err}");
        // Each file with a destination's resource is edited in place, or said to need no
        // change; none is new.
        let wrote: Vec<&str> = err.lines().filter(|l| l.starts_with("wrote ")).collect();
        assert!(
            wrote.iter().any(|l| l.contains("(edited "))
                || err.lines().any(|l| l.starts_with("unchanged ")),
            "{system}: {err}"
        );
        if edited_only {
            assert!(
                wrote.iter().all(|l| l.contains("(edited ")),
                "{system}: {err}"
            );
        }
        // Istio: the named routes of checkout are edited, not written anew; frontend and
        // inventory, which no file routes, get no VirtualService that would only say Istio's
        // defaults.
        assert!(!err.contains("(new): VirtualService checkout"), "{err}");
        if system == "istio" {
            assert!(!dir.join("o/stormguard-istio.yaml").exists(), "{err}");
            // With a change, frontend's is new, in its Service's namespace (a short host names
            // the Service of the resource's own).
            let graph = std::fs::read_to_string(dir.join("g.toml")).unwrap();
            let at = graph.find("to = \"frontend\"").unwrap();
            let changed = format!(
                "{}{}",
                &graph[..at],
                graph[at..].replacen("max_attempts = 3", "max_attempts = 2", 1)
            );
            std::fs::write(dir.join("g2.toml"), changed).unwrap();
            let (code, _, err) =
                stormguard(&dir, &["export", "g2.toml", "--to", system, "--out", "o2"]);
            assert_eq!(code, 0, "{err}");
            let new = std::fs::read_to_string(dir.join("o2/stormguard-istio.yaml")).unwrap();
            assert!(new.contains("name: frontend\n  namespace: shop\n"), "{new}");
            assert!(!new.contains("name: inventory"), "{new}");
        }
        // Nothing changed in between: the gRPC, Gateway API and Istio files come back byte for
        // byte (gRPC's backoffMultiplier 1.5 was written as 2, its maxAttempts 6 as 5 and its
        // status lists reordered and reflowed; Gateway API gained `timeouts: request: 0s`; Istio's
        // `retryOn: 5xx` was spelled out and defaults were added).
        // Since an unchanged file is said so and not written, none of the user's is in the
        // output, and each is named unchanged.
        if matches!(system, "grpc" | "gateway-api" | "istio") {
            let written: Vec<PathBuf> = walk_if_any(&dir.join("o"))
                .into_iter()
                .filter(|f| {
                    !f.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("stormguard-")
                })
                .collect();
            assert!(written.is_empty(), "{system}: {written:?}\n{err}");
            assert!(wrote.is_empty(), "{system}: {err}");
            assert!(err.contains("unchanged "), "{system}: {err}");
        }
        for file in walk_if_any(&dir.join("o")) {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(!text.contains("mesh-callers"), "{}: {text}", file.display());
        }
    }
}

/// [`walk`], of nothing when `dir` was not made (an export that wrote no file).
fn walk_if_any(dir: &Path) -> Vec<PathBuf> {
    if dir.exists() {
        walk(dir)
    } else {
        Vec::new()
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A new HTTPRoute for a Service that has a ServiceProfile changes nothing while the profile
/// exists (Linkerd's HTTPRoute reference): the export says so, where it wrote the route as if it
/// took effect. (Written only for a policy the graph changed, here a timeout as `check --fix`
/// adds one: the profile's own, unchanged, gets no route.)
#[test]
fn a_linkerd_route_beside_a_service_profile_is_said_to_be_inert() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mesh/linkerd");
    let dir = scratch("linkerd-profile");
    let (code, _, err) = stormguard(
        &dir,
        &["import", examples.to_str().unwrap(), "--out", "g.toml"],
    );
    assert_eq!(code, 0, "{err}");
    let graph = std::fs::read_to_string(dir.join("g.toml")).unwrap();
    assert!(graph.contains("\nmax_attempts = 100 #"), "{graph}");
    let graph = graph.replace(
        "\nmax_attempts = 100 #",
        "\ntimeout = \"300ms\"\nmax_attempts = 100 #",
    );
    std::fs::write(dir.join("g.toml"), graph).unwrap();
    let (code, _, err) = stormguard(&dir, &["export", "g.toml", "--to", "linkerd", "--out", "o"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "note: HTTPRoute emoji-svc: Linkerd's proxies use emoji-svc's ServiceProfile, not \
             this HTTPRoute, as long as the profile exists"
        ),
        "{err}"
    );
    // The profile's retries, read as 100 attempts, are bounded by its budget alone: the route
    // says 99 retries, and the note says what deleting the profile would let loose.
    assert!(
        err.contains(
            "its retry.linkerd.io/limit \"99\" is the profile's retries, which only the \
             profile's retryBudget bounds and no annotation can"
        ),
        "{err}"
    );
}

/// What `check --fix` derived from defaults no file gave (no manifest says a round trip or a
/// latency) is not exported but listed, with the default it came from, and the manifest keeps
/// what it had; `--write-assumed` writes it: a 3 ms connect timeout in a DestinationRule would
/// read as measured.
#[test]
fn values_fixed_from_defaults_are_left_out_unless_asked_for() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/mesh")
        .canonicalize()
        .unwrap();
    let dir = scratch("from-defaults");
    let manifests = examples.join("istio");
    let manifests = manifests.to_str().unwrap();
    let (code, _, err) = stormguard(&dir, &["check", manifests, "--fix", "--out", "f.toml"]);
    assert_eq!(code, 0, "{err}");
    let rules = |out: &str| {
        let edited = dir.join(out).join(
            Path::new(manifests)
                .join("destination-rules.yaml")
                .strip_prefix("/")
                .unwrap(),
        );
        std::fs::read_to_string(&edited).unwrap_or_else(|e| panic!("{}: {e}", edited.display()))
    };
    let (code, _, err) = stormguard(&dir, &["export", "f.toml", "--to", "istio", "--out", "o"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "not written, as each rests on a default no file gave (the files keep what they had)"
        ),
        "{err}"
    );
    let line = "connect_timeout = \"3ms\" (was \"500ms\"; check --fix: connect-timeout-too-long), by a connect rule that took the default round trip (rtt) of 1ms";
    assert!(err.contains(line), "{err}");
    assert!(!err.contains("written from defaults"), "{err}");
    assert!(
        rules("o").contains("connectTimeout: 500ms"),
        "{}",
        rules("o")
    );
    let (code, _, err) = stormguard(
        &dir,
        &[
            "export",
            "f.toml",
            "--to",
            "istio",
            "--out",
            "w",
            "--write-assumed",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("written from defaults no file gave, as if measured (--write-assumed)"),
        "{err}"
    );
    assert!(err.contains(line), "{err}");
    assert!(rules("w").contains("connectTimeout: 3ms"), "{}", rules("w"));
}

/// A change made by a rule that stands on the graph's own figures is written, whatever the
/// graph left to defaults: a timeout cut to fit the entry's 2 s budget on a call to a service
/// with the default latency (a review's find: it was undone, as if fitted to that latency).
#[test]
fn a_fix_from_the_graph_s_own_figures_is_written_beside_defaults() {
    let dir = scratch("own-figures");
    std::fs::write(
        dir.join("g.toml"),
        "[entry]\nservice = \"a\"\ntimeout = \"2s\"\n[services.a]\n\
         latency = { p50 = \"5ms\", p99 = \"40ms\" }\ninstances = 3\n[[services.a.calls]]\n\
         to = \"b\"\ntimeout = \"20s\"\nrtt = \"2ms\"\nconnect_timeout = \"10ms\"\n\
         [services.b]\ninstances = 3\n",
    )
    .unwrap();
    let (code, _, err) = stormguard(&dir, &["check", "g.toml", "--fix", "--out", "f.toml"]);
    assert_eq!(code, 0, "{err}");
    let fixed = std::fs::read_to_string(dir.join("f.toml")).unwrap();
    assert!(fixed.contains("check --fix: entry-budget"), "{fixed}");
    let (code, _, err) = stormguard(&dir, &["export", "f.toml", "--to", "istio", "--out", "o"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("not written, as each rests on a default"),
        "{err}"
    );
    let written = std::fs::read_to_string(dir.join("o/stormguard-istio.yaml")).unwrap();
    assert!(written.contains("timeout: 1920ms"), "{written}");
}

/// Calls written inline carry no `check --fix` notes (a comment cannot sit in an inline
/// table): export cannot tell what the fix derived there from defaults, and says so rather than
/// write it unremarked (a review's find).
#[test]
fn inline_calls_are_said_to_be_unchecked() {
    let dir = scratch("inline");
    std::fs::write(
        dir.join("g.toml"),
        "[entry]\nservice = \"a\"\ntimeout = \"2s\"\n[services.a]\ninstances = 3\n\
         calls = [{ to = \"b\", max_attempts = 3 }]\n[services.b]\n",
    )
    .unwrap();
    let (code, _, err) = stormguard(&dir, &["check", "g.toml", "--fix", "--out", "f.toml"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = stormguard(&dir, &["export", "f.toml", "--to", "istio", "--out", "o"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("1 call(s) written inline (calls = [{ ... }]) carry no check --fix notes"),
        "{err}"
    );
}
