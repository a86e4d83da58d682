//! Export into the files a team keeps (issue 13, item 4: "in the files the user gave where they
//! exist, comments kept"): the import's own example manifests, read by the readers, get a new
//! policy for every route they hold; the edited files keep every comment and every line that
//! holds no written value, byte for byte, and importing them again gives the new policy.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stormguard_mesh::export::{self, Existing, Target};
use stormguard_mesh::inventory::Route;
use stormguard_mesh::names;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

/// The policy every call gets.
const POLICY: &str = "timeout = \"300ms\"\nrequest_timeout = \"1500ms\"\nconnect_timeout = \"100ms\"\n\
                      max_attempts = 3\nretry_on = [\"connect-failure\", \"refused-stream\", \"reset\", \"timeout\", \"503\", \"unavailable\"]\n\
                      backoff = \"full-jitter(base=40ms, cap=400ms)\"\nidempotent = true\n";

fn service(route: &Route) -> String {
    names::graph_name(&names::service_of(&route.host).0)
}

/// The routes `target` writes into: of its kinds, and for every caller (or, for Envoy, one).
fn routes_of(existing: &Existing, target: Target) -> Vec<Route> {
    let kinds: &[&str] = match target {
        Target::Istio => &["VirtualService"],
        Target::GatewayApi | Target::Linkerd => &["HTTPRoute"],
        Target::Envoy => &["bootstrap", "config_dump"],
        Target::Grpc => &["ServiceConfig"],
    };
    existing
        .inventory
        .routes
        .iter()
        .filter(|r| kinds.contains(&r.resource.kind.as_str()))
        .filter(|r| (target == Target::Envoy) == r.caller.is_some())
        .filter(|r| {
            target != Target::Linkerd || r.system == stormguard_mesh::inventory::System::Linkerd
        })
        .cloned()
        .collect()
}

/// A graph in which the routes' callers call their destinations (their endpoints) with
/// [`POLICY`].
fn graph(routes: &[Route]) -> String {
    let mut callers: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut callees: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for route in routes {
        let caller = names::graph_name(route.caller.as_deref().unwrap_or("web"));
        let to = service(route);
        let mut call = format!("to = \"{to}\"\n");
        if let Some(ep) = &route.name {
            call.push_str(&format!("endpoint = {ep:?}\n"));
            callees.entry(to.clone()).or_default().insert(ep.clone());
        } else {
            callees.entry(to.clone()).or_default();
        }
        if !callers.get(&caller).is_some_and(|c| c.contains(&call)) {
            callers.entry(caller).or_default().push(call);
        }
    }
    let entry = callers.keys().next().cloned().unwrap_or_default();
    let mut text = format!("[entry]\nservice = \"{entry}\"\n");
    for (caller, calls) in &callers {
        text.push_str(&format!("[services.{caller}]\n"));
        for call in calls {
            text.push_str(&format!("[[services.{caller}.calls]]\n{call}{POLICY}"));
        }
    }
    for (callee, endpoints) in &callees {
        if callers.contains_key(callee) {
            continue;
        }
        text.push_str(&format!("[services.{callee}]\n"));
        for ep in endpoints {
            text.push_str(&format!("[services.{callee}.endpoints.{ep:?}]\n"));
        }
    }
    text
}

/// Whether `lines` holds `subsequence` in order.
fn in_order<'a>(mut lines: impl Iterator<Item = &'a str>, subsequence: &[&str]) -> bool {
    subsequence.iter().all(|want| lines.any(|l| l == *want))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("export-edit-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn duration_of(route: &Route, key: &str) -> Option<Duration> {
    let setting = route.policy.get(key)?;
    stormguard::duration::parse(setting.value.trim_matches('"')).ok()
}

fn edit_and_reimport(target: Target, files: &[&str]) {
    let paths: Vec<PathBuf> = files.iter().map(|f| Path::new(DATA).join(f)).collect();
    let existing = Existing::read(&paths).unwrap();
    let routes = routes_of(&existing, target);
    assert!(!routes.is_empty(), "{target}: no routes in {files:?}");
    let text = graph(&routes);
    let graph = stormguard_graph::parse("g.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let out = export::export(&graph, target, &existing);
    // The only notes: a file's own overrides of a written value (an Envoy retry header, an
    // Istio subset's trafficPolicy).
    assert!(
        out.notes
            .iter()
            .all(|n| n.contains("overrides") || n.contains("replaces")),
        "{target}: {:#?}",
        out.notes
    );
    if target == Target::Istio {
        assert!(
            out.notes.iter().any(|n| n.contains("subset v2")),
            "{:#?}",
            out.notes
        );
    }
    let edited: Vec<_> = out.files.iter().filter(|f| f.edited).collect();
    assert!(
        !edited.is_empty(),
        "{target}: nothing edited: {:#?}",
        out.files
    );
    let dir = scratch(&files[0].replace(['/', '.'], "-"));
    for file in &edited {
        let original = std::fs::read_to_string(&file.path).unwrap();
        // Every comment and every line that holds no written value is still there, in order.
        let comments: Vec<&str> = original.lines().filter(|l| l.contains('#')).collect();
        assert!(
            in_order(file.text.lines(), &comments),
            "{target}: a comment moved or went in {}:\n{}",
            file.path.display(),
            file.text
        );
        let kept = original
            .lines()
            .filter(|l| file.text.lines().any(|m| m == *l))
            .count();
        let changed = original.lines().count() - kept;
        assert!(
            changed <= 8 * routes.len(),
            "{target}: {changed} lines of {} changed:\n{}",
            file.path.display(),
            file.text
        );
        std::fs::write(dir.join(file.path.file_name().unwrap()), &file.text).unwrap();
    }
    // Imported again, every route written has the graph's policy.
    let again = Existing::read(std::slice::from_ref(&dir)).unwrap();
    let edited_files: BTreeSet<String> = edited
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    let mut checked = 0;
    for route in routes_of(&again, target) {
        let file = Path::new(&*route.resource.file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let overridden = out
            .notes
            .iter()
            .any(|n| n.contains(&format!("{} in", route.resource.path)));
        if !edited_files.contains(&file) || overridden {
            continue;
        }
        let what = format!("{target} {} {:?} in {file}", service(&route), route.name);
        assert_eq!(
            route.policy.get("max_attempts").map(|s| s.value.as_str()),
            Some("3"),
            "{what}: {:#?}",
            route.policy
        );
        assert_eq!(
            duration_of(&route, "request_timeout"),
            Some(Duration::from_millis(1500)),
            "{what}"
        );
        checked += 1;
    }
    assert!(checked > 0, "{target}: no route read back");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn istio_virtual_services_and_destination_rules() {
    edit_and_reimport(
        Target::Istio,
        &[
            "istio/virtual-services.yaml",
            "istio/destination-rules.yaml",
        ],
    );
}

#[test]
fn gateway_api_routes() {
    edit_and_reimport(Target::GatewayApi, &["gateway-api/gamma-reviews.yaml"]);
}

#[test]
fn linkerd_annotated_routes() {
    edit_and_reimport(Target::Linkerd, &["linkerd/emojivoto-annotations.yaml"]);
}

#[test]
fn envoy_bootstrap_yaml_and_json() {
    edit_and_reimport(Target::Envoy, &["envoy/front-proxy.yaml"]);
    edit_and_reimport(Target::Envoy, &["envoy/front-proxy.json"]);
}

#[test]
fn envoy_config_dump() {
    edit_and_reimport(Target::Envoy, &["envoy/productpage-config-dump.json"]);
}

#[test]
fn grpc_service_config() {
    edit_and_reimport(Target::Grpc, &["grpc/shop-service-config.json"]);
}
