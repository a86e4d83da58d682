//! The import's glue on an import made by hand (a graph, its source map, findings and what was
//! not read), so that it is tested apart from the readers and the assembler.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use stormguard_graph::Severity;
use stormguard_mesh::assemble::SourceMap;
use stormguard_mesh::inventory::{Host, ImportFinding, Unread};
use stormguard_mesh::source::Origin;
use stormguard_mesh::Imported;

use super::report::Located;
use super::*;

/// An imported graph as the assembler writes one: a placeholder caller, one call with values
/// from a VirtualService and a default, and a Deployment's replicas.
pub(crate) const GRAPH: &str = r#"[entry]
service = "mesh-callers"
timeout = "2s"

[services.mesh-callers]

[[services.mesh-callers.calls]]
to = "reviews"
timeout = "1s" # k8s/reviews.yaml:12
max_attempts = 4 # k8s/reviews.yaml:14
retry_budget = "none" # Istio default

[services.reviews]
instances = 1 # k8s/deploy.yaml:6
"#;

fn at(file: &str, line: u32, what: &str) -> Origin {
    Origin::File {
        file: Arc::from(file),
        line,
        column: 3,
        what: what.to_string(),
    }
}

/// [`GRAPH`] with its source map, an import finding at a manifest line and one at a default,
/// and `unread` things not read.
pub(crate) fn loaded(unread: usize) -> Loaded {
    let sources = SourceMap {
        lines: [
            (
                9,
                at(
                    "k8s/reviews.yaml",
                    12,
                    "VirtualService reviews http[0].timeout",
                ),
            ),
            (
                10,
                at(
                    "k8s/reviews.yaml",
                    14,
                    "VirtualService reviews http[0].retries.attempts",
                ),
            ),
            (11, Origin::Default("Istio default")),
            (
                14,
                at("k8s/deploy.yaml", 6, "Deployment reviews spec.replicas"),
            ),
        ]
        .into_iter()
        .collect(),
    };
    let findings = vec![
        ImportFinding {
            rule: "grpc-max-attempts-capped",
            severity: Severity::Warning,
            host: Some(Host::new("reviews.prod.svc.cluster.local", None)),
            message: "maxAttempts 6 is capped at 5 by gRPC.".to_string(),
            fix: "maxAttempts: 5".to_string(),
            origin: at("grpc/service-config.json", 7, "methodConfig[0].retryPolicy"),
            remedy: None,
        },
        ImportFinding {
            rule: "istio-unbounded-retries",
            severity: Severity::Error,
            host: Some(Host::new("reviews", Some("prod"))),
            message: "Istio retries with no budget.".to_string(),
            fix: "retryBudget".to_string(),
            origin: Origin::Default("Istio default"),
            remedy: None,
        },
    ];
    let unread = (0..unread)
        .map(|i| Unread {
            origin: at("k8s/other.yaml", i as u32 + 1, ""),
            what: format!("ConfigMap{i}"),
            why: "a kind stormguard does not read".to_string(),
        })
        .collect();
    Loaded {
        paths: vec![PathBuf::from("k8s"), PathBuf::from("grpc")],
        documents: 9,
        files: 3,
        kinds: [
            ("Deployment".to_string(), 1),
            ("VirtualService".to_string(), 1),
        ]
        .into_iter()
        .collect(),
        imported: Imported {
            toml: GRAPH.to_string(),
            json: Value::Null,
            sources,
            findings,
            unread,
        },
    }
}

fn located() -> (Graph, Located) {
    let loaded = loaded(0);
    let graph = loaded.graph().unwrap();
    let report = stormguard_graph::check::check(&graph);
    let located = Located::new(&loaded, &graph, report);
    (graph, located)
}

/// Each SARIF result's rule id, file and line.
fn sarif_places(sarif: &str) -> Vec<(String, String, u64)> {
    let v: Value = serde_json::from_str(sarif).unwrap();
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

fn place_of<'a>(places: &'a [(String, String, u64)], rule: &str) -> (&'a str, u64) {
    let (_, file, line) = places
        .iter()
        .find(|(r, ..)| r == rule)
        .unwrap_or_else(|| panic!("no {rule} in {places:?}"));
    (file, *line)
}

#[test]
fn only_directories_yaml_json_or_a_base_are_imported_and_a_graph_among_them_is_refused() {
    let dir = std::env::temp_dir();
    let none = Calls::default();
    let paths = |p: &[&str]| p.iter().map(PathBuf::from).collect::<Vec<_>>();
    assert!(!wants_import(&paths(&["g.toml"]), &none).unwrap());
    assert!(!wants_import(&paths(&["graph"]), &none).unwrap());
    assert!(wants_import(std::slice::from_ref(&dir), &none).unwrap());
    assert!(wants_import(&paths(&["vs.yaml", "d.YML", "dump.Json"]), &none).unwrap());
    let base = Calls {
        base: Some(PathBuf::from("g.toml")),
        ..Calls::default()
    };
    assert!(wants_import(std::slice::from_ref(&dir), &base).unwrap());
    let error = wants_import(&paths(&["vs.yaml", "g.toml"]), &none).unwrap_err();
    assert!(error.0.contains("give it as --base g.toml"), "{error}");
    // --base makes the paths manifests: a graph among them is one given in the wrong place.
    assert!(wants_import(&paths(&["g.toml"]), &base).is_err());
}

#[test]
fn a_graph_finding_lands_on_the_manifest_line_of_the_key_its_fix_edits() {
    let (_, located) = located();
    let places = sarif_places(&located.sarif());
    // entry-budget is on the service, its fix on the call's timeout: the VirtualService's.
    assert_eq!(place_of(&places, "entry-budget"), ("k8s/reviews.yaml", 12));
    assert_eq!(
        place_of(&places, "too-many-attempts"),
        ("k8s/reviews.yaml", 14)
    );
    // Its fix's key (connect_timeout) is not in the table: the call's first value from a file.
    assert_eq!(
        place_of(&places, "missing-connect-timeout"),
        ("k8s/reviews.yaml", 12)
    );
    // Its fix's key (retry_budget) is a default: the retries it would bound are the place
    // (it was the call's first value from a file, its timeout).
    assert_eq!(
        place_of(&places, "retry-without-budget"),
        ("k8s/reviews.yaml", 14)
    );
}

#[test]
fn the_imports_findings_join_the_report_at_their_lines_or_the_generated_graph() {
    let (_, located) = located();
    let sarif = located.sarif();
    let places = sarif_places(&sarif);
    assert_eq!(
        place_of(&places, "grpc-max-attempts-capped"),
        ("grpc/service-config.json", 7)
    );
    // A default has no line: its service's workload has one.
    assert_eq!(
        place_of(&places, "istio-unbounded-retries"),
        ("k8s/deploy.yaml", 6)
    );
    let v: Value = serde_json::from_str(&sarif).unwrap();
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    for result in v["runs"][0]["results"].as_array().unwrap() {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
    }
    let report = &located.report;
    let capped = report
        .findings
        .iter()
        .find(|f| f.rule == "grpc-max-attempts-capped")
        .unwrap();
    assert_eq!(capped.service.as_deref(), Some("reviews"));
    assert_eq!(report.summary.errors, 2, "entry-budget and Istio's");
    assert_eq!(
        report.summary.errors + report.summary.warnings + report.summary.infos,
        report.findings.len()
    );
}

#[test]
fn a_call_of_defaults_only_is_placed_at_its_callees_workload() {
    let mut loaded = loaded(0);
    loaded.imported.sources.lines.remove(&9);
    loaded.imported.sources.lines.remove(&10);
    let graph = loaded.graph().unwrap();
    let located = Located::new(&loaded, &graph, stormguard_graph::check::check(&graph));
    let places = sarif_places(&located.sarif());
    assert_eq!(
        place_of(&places, "too-many-attempts"),
        ("k8s/deploy.yaml", 6)
    );
    // The entry's own finding has no callee: it stays at the entry's table.
    assert_eq!(place_of(&places, "entry-budget"), (IMPORTED_GRAPH, 5));
}

#[test]
fn a_finding_no_manifest_explains_stays_at_the_generated_graphs_line() {
    let mut loaded = loaded(0);
    loaded.imported.sources = SourceMap::default();
    let graph = loaded.graph().unwrap();
    let report = stormguard_graph::check::check(&graph);
    let spans: Vec<usize> = report
        .findings
        .iter()
        .map(|f| f.span.unwrap().line)
        .collect();
    let located = Located::new(&loaded, &graph, report);
    let places = sarif_places(&located.sarif());
    for (place, line) in places.iter().zip(spans) {
        assert_eq!((place.1.as_str(), place.2), (IMPORTED_GRAPH, line as u64));
    }
}

#[test]
fn json_gives_each_finding_its_source_and_text_says_where() {
    let (graph, located) = located();
    let v: Value = serde_json::from_str(&located.json()).unwrap();
    let findings = v["findings"].as_array().unwrap();
    let budget = findings
        .iter()
        .find(|f| f["rule"] == "entry-budget")
        .unwrap();
    assert_eq!(budget["source"]["file"], "k8s/reviews.yaml");
    assert_eq!(budget["source"]["line"], 12);
    assert_eq!(budget["service"], "mesh-callers");
    assert!(findings
        .iter()
        .all(|f| f["source"]["line"].as_u64() >= Some(1)));
    assert_eq!(v["imported"]["documents"], 9);
    assert_eq!(v["summary"]["errors"], 2);
    assert_eq!(v["services"]["reviews"]["amplification"], 4.0);
    let text = located.text(&graph, false);
    assert!(
        text.contains(
            "makes up to 4 attempts: when a retry fails too, reviews is most likely down or \
             overloaded, and each further attempt adds load exactly then (from \
             VirtualService reviews http[0].retries.attempts)\n    --> k8s/reviews.yaml:14:"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "Istio retries with no budget. (from Deployment reviews spec.replicas)\n    --> \
             k8s/deploy.yaml:6:"
        ),
        "{text}"
    );
}

#[test]
fn the_summary_counts_what_was_read_and_lists_the_first_things_not_read() {
    let loaded = loaded(7);
    let brief = loaded.summary(Detail {
        verbose: false,
        findings: false,
    });
    assert!(
        brief.starts_with("imported 9 documents from 3 files: Deployment 1, VirtualService 1\n"),
        "{brief}"
    );
    assert!(brief.contains("not read (7):\n"), "{brief}");
    assert!(
        brief.contains("  k8s/other.yaml:5: ConfigMap4: a kind"),
        "{brief}"
    );
    assert!(!brief.contains("ConfigMap5"), "{brief}");
    assert!(
        brief.contains("  and 2 more: `stormguard import k8s grpc --verbose` lists them all"),
        "{brief}"
    );
    assert!(!brief.contains("grpc-max-attempts-capped"), "{brief}");
    let full = loaded.summary(Detail {
        verbose: true,
        findings: true,
    });
    assert!(
        full.contains("  k8s/other.yaml:7: ConfigMap6: a kind"),
        "{full}"
    );
    assert!(!full.contains("more:"), "{full}");
    assert!(
        full.contains(
            "  warning[grpc-max-attempts-capped] grpc/service-config.json:7: maxAttempts 6 is \
             capped at 5 by gRPC."
        ),
        "{full}"
    );
}

#[test]
fn a_value_the_graph_refuses_is_reported_at_the_manifest_line_it_came_from() {
    let mut loaded = loaded(0);
    loaded.imported.toml = GRAPH.replace("timeout = \"1s\"", "timeout = \"fast\"");
    let error = loaded.graph().unwrap_err();
    assert!(
        error.0.starts_with(
            "k8s/reviews.yaml:12:3: the value imported from here is refused by the graph: \
             stormguard-imported.toml:9:"
        ),
        "{error}"
    );
    // A line no manifest set: the generated graph's, and how to write it.
    loaded.imported.toml = GRAPH.replace("timeout = \"2s\"", "timeout = \"fast\"");
    let error = loaded.graph().unwrap_err();
    assert!(
        error.0.starts_with("stormguard-imported.toml:3:"),
        "{error}"
    );
    assert!(
        error
            .0
            .contains("`stormguard import k8s grpc --out stormguard-imported.toml` writes it"),
        "{error}"
    );
    loaded.imported.toml = String::new();
    let error = loaded.graph().unwrap_err();
    assert!(
        error
            .0
            .starts_with("k8s grpc: no route, workload or service"),
        "{error}"
    );
}

#[test]
fn import_writes_the_graph_to_stdout_and_refuses_a_graph_or_its_own_input_as_out() {
    let dir = std::env::temp_dir().join(format!("stormguard-import-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("a.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    )
    .unwrap();
    let run = |argv: &[&str]| {
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            args: Args,
        }
        let mut full = vec!["import"];
        full.extend_from_slice(argv);
        let args = <Cmd as clap::Parser>::try_parse_from(full).unwrap().args;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = run_with(args, &mut out, &mut err);
        (
            result,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    };
    let path = manifest.to_str().unwrap();
    let (result, _, err) = run(&[path, "--verbose"]);
    assert_eq!(result.unwrap(), ExitCode::SUCCESS);
    assert!(err.starts_with("imported 1 document from 1 file"), "{err}");
    assert!(err.contains(":1: ConfigMap: a kind"), "{err}");
    let (result, out, _) = run(&[path, "--out", path]);
    let error = result.unwrap_err();
    assert!(
        error
            .downcast_ref::<InputError>()
            .unwrap()
            .0
            .contains("is one of the manifests"),
        "{error}"
    );
    assert!(out.is_empty());
    let (result, ..) = run(&[path, "g.toml"]);
    let error = result.unwrap_err();
    assert!(error.to_string().contains("--base g.toml"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
