//! `stormguard import`, and `check` and `sim` on manifests, as a user runs them: the built binary
//! on the manifests of `tests/data/import/` (Bookinfo's reviews service with an Istio
//! VirtualService, a gRPC service config, a base graph of who calls whom).

use std::path::Path;

const DATA: &str = "crates/stormguard-cli/tests/data/import";

#[path = "support/run.rs"]
mod run;
use run::stormguard;

fn data(path: &str) -> String {
    format!("{DATA}/{path}")
}

/// The 1-based line of `file` (under the data folder) that contains `text`.
fn line_of(file: &str, text: &str) -> u64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(data(file));
    let contents = std::fs::read_to_string(path).unwrap();
    contents
        .lines()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("{text:?} is not in {file}")) as u64
        + 1
}

/// Each SARIF result: rule id, file, line.
fn sarif_results(sarif: &str) -> Vec<(String, String, u64)> {
    let v: serde_json::Value = serde_json::from_str(sarif).unwrap();
    assert_eq!(v["version"], "2.1.0");
    v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let l = &r["locations"][0]["physicalLocation"];
            (
                r["ruleId"].as_str().unwrap().to_string(),
                l["artifactLocation"]["uri"].as_str().unwrap().to_string(),
                l["region"]["startLine"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_manifest_that_is_not_yaml_exits_2_at_its_line_for_every_command() {
    let bad = data("bad");
    for command in ["import", "check", "sim"] {
        let (code, out, err) = stormguard(&[command, &bad]);
        assert_eq!(code, 2, "{command}: {out}{err}");
        assert!(
            err.starts_with(&format!("stormguard: {bad}/syntax.yaml:7:")),
            "{command}: {err}"
        );
        assert!(out.is_empty(), "{command}: {out}");
    }
}

#[test]
fn a_path_that_does_not_exist_exits_2_naming_it() {
    let (code, _, err) = stormguard(&["import", "no/such/dir"]);
    assert_eq!(code, 2);
    assert!(err.contains("no/such/dir"), "{err}");
    let (code, _, err) = stormguard(&["check", "no/such/manifest.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("no/such/manifest.yaml"), "{err}");
}

#[test]
fn base_and_prometheus_exclude_each_other_and_a_graph_among_manifests_belongs_in_base() {
    let mesh = data("mesh");
    let base = data("base.toml");
    let (code, _, err) = stormguard(&[
        "import",
        &mesh,
        "--base",
        &base,
        "--prometheus",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    for command in ["import", "check", "sim"] {
        let (code, _, err) = stormguard(&[command, &mesh, &base]);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(err.contains(&format!("give it as --base {base}")), "{err}");
    }
    let (code, _, err) = stormguard(&["import", &mesh, "--window", "1h"]);
    assert_eq!(code, 2, "--window needs --prometheus: {err}");
}

/// `check` and `sim` on graph files print what they always have: the renderers' output on the
/// graph, nothing about an import.
#[test]
fn graph_files_are_checked_as_before_byte_for_byte() {
    for name in ["healthy", "brooker-five-layers", "cockcroft-edge"] {
        let file = format!("examples/graphs/{name}.toml");
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(&file),
        )
        .unwrap();
        let graph = stormguard_graph::parse(&file, &text).unwrap();
        let report = stormguard_graph::check::check(&graph);
        let expected = [
            (
                "text",
                stormguard_graph::render::text_in(&graph, &report, &file, false),
            ),
            ("json", stormguard_graph::render::json_in(&report, &file)),
            ("sarif", stormguard_graph::render::sarif(&report, &file)),
            (
                "mermaid",
                stormguard_graph::render::mermaid(&graph, &report),
            ),
        ];
        for (format, expected) in expected {
            let (_, out, err) = stormguard(&["check", &file, "--format", format]);
            assert_eq!(out, expected, "{file} --format {format}");
            assert!(err.is_empty(), "{file}: {err}");
        }
    }
    let (code, out, err) = stormguard(&[
        "sim",
        "examples/graphs/healthy.toml",
        "--duration",
        "2s",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["file"], "examples/graphs/healthy.toml");
}

#[test]
fn import_writes_a_graph_that_parses_with_a_source_per_value() {
    let mesh = data("mesh");
    let (code, toml, err) = stormguard(&["import", &mesh]);
    assert_eq!(code, 0, "{err}");
    let graph = stormguard_graph::parse("imported.toml", &toml).unwrap();
    assert!(graph.services.contains_key("reviews"), "{toml}");
    assert_eq!(graph.services["reviews"].instances, 2, "{toml}");
    let attempts = line_of("mesh/reviews.yaml", "attempts: 3");
    assert!(
        toml.contains(&format!("{mesh}/reviews.yaml:{attempts}")),
        "the attempts' source: {toml}"
    );
    assert!(err.starts_with("imported 3 documents from 1 file"), "{err}");
    let (code, json, _) = stormguard(&["import", &mesh, "--format", "json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(json.to_string().contains("\"source\""), "{json}");
}

#[test]
fn import_out_writes_the_file_and_says_so() {
    let dir = std::env::temp_dir().join(format!("stormguard-import-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("imported.toml");
    let (code, out, err) =
        stormguard(&["import", &data("mesh"), "--out", target.to_str().unwrap()]);
    let written = std::fs::read_to_string(&target);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("wrote {}", target.display())),
        "{err}"
    );
    stormguard_graph::parse("imported.toml", &written.unwrap()).unwrap();
}

#[test]
fn check_on_a_directory_reports_at_the_yaml_and_json_lines() {
    let (code, sarif, err) = stormguard(&[
        "check",
        &data("mesh"),
        &data("grpc"),
        "--format",
        "sarif",
        "--fail-on",
        "warning",
    ]);
    assert_eq!(code, 1, "{err}");
    let results = sarif_results(&sarif);
    let yaml = data("mesh/reviews.yaml");
    let json = data("grpc/service-config.json");
    // gRPC clamps maxAttempts at 5: the import's own finding, at the line of maxAttempts.
    assert!(
        results.contains(&(
            "grpc-max-attempts-capped".to_string(),
            json,
            line_of("grpc/service-config.json", "maxAttempts")
        )),
        "{results:?}"
    );
    // 1s per try, 4 tries, in a 2s route timeout: at one of the route's lines.
    let route =
        line_of("mesh/reviews.yaml", "timeout: 2s")..=line_of("mesh/reviews.yaml", "retryOn");
    let (_, file, line) = results
        .iter()
        .find(|(rule, ..)| rule == "attempts-cannot-fit")
        .unwrap_or_else(|| panic!("{results:?}"));
    assert_eq!(file, &yaml);
    assert!(route.contains(line), "{line} in {route:?}");
    // Every result is in a manifest or in the generated graph's file.
    for (rule, file, _) in &results {
        assert!(
            file.starts_with(DATA) || file == "stormguard-imported.toml",
            "{rule}: {file}"
        );
    }
    let (code, text, _) = stormguard(&["check", &data("mesh"), "--fail-on", "never"]);
    assert_eq!(code, 0);
    assert!(text.contains(&format!("\n    --> {yaml}:")), "{text}");
    let (_, json, _) = stormguard(&["check", &data("mesh"), "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        json["findings"][0]["source"]["line"].as_u64().is_some(),
        "{json}"
    );
}

#[test]
fn the_applications_retries_stack_on_the_sidecars_through_base() {
    let (_, json, err) = stormguard(&[
        "check",
        &data("mesh"),
        "--base",
        &data("base.toml"),
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|_| panic!("{err}"));
    // productpage tries 3 times, its sidecar 4 times each: 12 attempts at reviews.
    let amplification = json["services"]["reviews"]["amplification"]
        .as_f64()
        .unwrap();
    assert!(amplification >= 12.0, "{json}");
}

#[test]
fn sim_runs_the_imported_graph() {
    let (code, out, err) =
        stormguard(&["sim", &data("mesh"), "--duration", "2s", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["file"], "stormguard-imported.toml");
    assert!(err.starts_with("imported "), "{err}");
}

/// The scenarios of a `--base` graph go with it into the imported graph: `sim` runs the only
/// one when none is named, and a name it does not define is refused with the ones it does.
#[test]
fn sim_on_manifests_runs_the_base_graphs_scenario() {
    let dir =
        std::env::temp_dir().join(format!("stormguard-import-scenario-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut base = std::fs::read_to_string(root.join(data("base.toml"))).unwrap();
    base.push_str(
        "\n[scenarios.reviews-slow]\nduration = \"3s\"\n\n[[scenarios.reviews-slow.faults]]\n\
         service = \"reviews\"\nfrom = \"1s\"\nto = \"2s\"\nslowdown = 5\n",
    );
    let path = dir.join("base.toml");
    std::fs::write(&path, base).unwrap();
    let path = path.to_str().unwrap().to_string();
    let (code, out, err) = stormguard(&["sim", &data("mesh"), "--base", &path, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["scenario"], "reviews-slow", "{out}");
    assert_eq!(summary["duration_s"], 3.0, "{out}");
    let (code, _, err) = stormguard(&["sim", &data("mesh"), "--base", &path, "--scenario", "nope"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no scenario named \"nope\""), "{err}");
    assert!(err.contains("reviews-slow"), "{err}");
    // It names the --base file the scenarios come from, not the file `import --out` writes.
    assert!(
        err.contains(&format!(
            "its --base graph's, and {path} defines: reviews-slow"
        )),
        "{err}"
    );
    assert!(!err.contains("stormguard-imported.toml"), "{err}");
}

/// A path with no manifest in it (an empty directory, a directory of other files, a YAML
/// file of `null`) once passed `check` with "no findings" and exit 0: a CI job pointed at the
/// wrong path must fail.
#[test]
fn a_path_without_a_manifest_exits_2() {
    let dir = std::env::temp_dir().join(format!("stormguard-import-empty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::create_dir_all(dir.join("other")).unwrap();
    std::fs::write(dir.join("other/notes.txt"), "not a manifest\n").unwrap();
    std::fs::write(dir.join("null.yaml"), "null\n").unwrap();
    // A directory named like a graph file is a directory (it was told to be given as --base).
    std::fs::create_dir_all(dir.join("dir.toml")).unwrap();
    for path in ["empty", "other", "null.yaml", "dir.toml"] {
        let path = dir.join(path).to_str().unwrap().to_string();
        for command in ["import", "check", "sim"] {
            let (code, out, err) = stormguard(&[command, &path]);
            assert_eq!(code, 2, "{command} {path}: {out}{err}");
            assert!(
                err.contains(&format!("{path}: no manifest to read")),
                "{command} {path}: {err}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_malformed_field_exits_2_at_file_line_column_and_field() {
    let dir = std::env::temp_dir().join(format!("stormguard-import-field-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vs.yaml");
    std::fs::write(
        &path,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\n\
         spec:\n  hosts: [reviews]\n  http:\n    - route:\n        - destination:\n            \
         host: reviews\n      timeout: fast\n",
    )
    .unwrap();
    let path = path.to_str().unwrap().to_string();
    let (code, _, err) = stormguard(&["import", &path]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{path}:11:")), "{err}");
    assert!(err.contains("timeout"), "{err}");
}

/// The README's audit, end to end on `examples/mesh/istio`: `check --fix` on the manifests
/// also fixes what only the import sees (the mesh replays a POST on `5xx`: `retry_on` is cut to
/// the conditions before the request is sent; through Istio even a 503 may follow an applied
/// POST), and `export` carries the fixed graph back into
/// the user's VirtualService, its comments kept. Before, the fixed graph still retried the POST
/// on 5xx (only the graph's own rules had edits) and `export` wrote it back as it was.
#[test]
fn the_audit_fixes_a_replayed_post_in_the_users_virtual_service() {
    let dir = std::env::temp_dir().join(format!("stormguard-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fixed = dir.join("fixed.toml");
    let (code, said, err) = stormguard(&[
        "check",
        "examples/mesh/istio",
        "--base",
        "examples/mesh/istio/calls.toml",
        "--fix",
        "--out",
        fixed.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        said.contains(
            "frontend-sidecar/checkout-place-order -> checkout: retry_on = [\"connect-failure\", \
             \"refused-stream\", \"reset-before-request\"] (mesh-retries-non-idempotent)"
        ),
        "{said}"
    );
    let out = dir.join("out");
    let (code, _, err) = stormguard(&[
        "export",
        fixed.to_str().unwrap(),
        "--to",
        "istio",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let written =
        std::fs::read_to_string(out.join("examples/mesh/istio/virtual-services.yaml")).unwrap();
    let original = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/mesh/istio/virtual-services.yaml"),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        written.contains("retryOn: connect-failure,refused-stream,reset-before-request\n"),
        "{written}"
    );
    assert!(!written.contains("retryOn: 5xx"), "{written}");
    let comments = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(comments(&written), comments(&original));
}

/// A service's queue keys are the application's, which no mesh resource holds: `import` keeps
/// them from the base as written, and `export` writes nothing of them (as of `queue` and
/// `concurrency`).
#[test]
fn a_services_queue_keys_pass_through_import_and_stay_out_of_export() {
    let dir = std::env::temp_dir().join(format!("stormguard-import-queue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base_text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(data("base.toml")),
    )
    .unwrap();
    let keys =
        "queue_discipline = \"codel\"\ncodel = { target = \"10ms\" }\nqueue_timeout = \"1s\"\n";
    let base = dir.join("base.toml");
    std::fs::write(
        &base,
        base_text.replace(
            "[services.reviews]\n",
            &format!("[services.reviews]\n{keys}"),
        ),
    )
    .unwrap();
    let (code, toml, err) =
        stormguard(&["import", &data("mesh"), "--base", base.to_str().unwrap()]);
    let graph_file = dir.join("imported.toml");
    std::fs::write(&graph_file, &toml).unwrap();
    let exported = dir.join("out");
    let (export_code, _, export_err) = stormguard(&[
        "export",
        graph_file.to_str().unwrap(),
        "--to",
        "istio",
        "--out",
        exported.to_str().unwrap(),
    ]);
    let written: Vec<String> = std::fs::read_dir(&exported)
        .map(|d| {
            d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(toml.contains(keys), "{toml}");
    let graph = stormguard_graph::parse("imported.toml", &toml).unwrap();
    assert_eq!(graph.services["reviews"].queue_discipline.name(), "codel");
    assert_eq!(export_code, 0, "{export_err}");
    // Written, or found holding the graph's policy already (an unchanged file is not written).
    assert!(
        !written.is_empty() || export_err.starts_with("unchanged "),
        "{export_err}"
    );
    for text in written {
        assert!(!text.contains("codel") && !text.contains("queue"), "{text}");
    }
}
