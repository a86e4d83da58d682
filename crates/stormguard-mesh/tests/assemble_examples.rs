//! The whole import on the examples each reader's helper wrote (`examples/mesh/<system>/`):
//! files read, inventory, assembled graph, which must parse and be checked, since that is the
//! contract with `check` and `sim`.

use std::path::PathBuf;

use stormguard_mesh::{assemble, inventory, read_paths, Imported, Options};

fn example(system: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/mesh")
        .join(system)
}

fn import(system: &str, base: Option<&str>) -> (Imported, stormguard_graph::Graph) {
    let documents = read_paths(&[example(system)]).unwrap();
    let inv = inventory(&documents).unwrap();
    let options = Options {
        base: base.map(|text| ("base.toml".to_string(), text.to_string())),
        inputs: vec![format!("examples/mesh/{system}/")],
    };
    let imported = assemble(&inv, &options).unwrap();
    let graph = stormguard_graph::parse("imported.toml", &imported.toml)
        .unwrap_or_else(|e| panic!("{e}\n{}", imported.toml));
    (imported, graph)
}

#[test]
fn every_example_imports_into_a_graph_that_parses_with_a_source_per_value() {
    for system in ["istio", "envoy", "gateway-api", "linkerd", "grpc"] {
        let (imported, graph) = import(system, None);
        assert_eq!(graph.entry.service, "mesh-callers", "{system}");
        assert!(
            !imported.sources.lines.is_empty(),
            "{system}:\n{}",
            imported.toml
        );
        // Every line the source map names holds a value or a call's header.
        for line in imported.sources.lines.keys() {
            let text = imported.toml.lines().nth(line - 1).unwrap();
            assert!(
                text.contains(" = ") || text.starts_with("[["),
                "{system}: {line}: {text}"
            );
        }
        stormguard_graph::check::check(&graph);
    }
}

#[test]
fn the_istio_shop_shows_its_readmes_findings() {
    let (imported, graph) = import("istio", None);
    let report = stormguard_graph::check::check(&graph);
    let cannot_fit: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.rule == "attempts-cannot-fit")
        .map(|f| f.to.clone().unwrap_or_default())
        .collect();
    assert!(
        cannot_fit.contains(&"checkout".to_string()),
        "{cannot_fit:?}\n{}",
        imported.toml
    );
    assert!(
        cannot_fit.contains(&"payments".to_string()),
        "{cannot_fit:?}"
    );
    let non_idempotent: Vec<&str> = imported
        .findings
        .iter()
        .filter(|f| f.rule == "mesh-retries-non-idempotent")
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(non_idempotent.len(), 1, "{non_idempotent:#?}");
    assert!(non_idempotent[0].contains("POST"), "{}", non_idempotent[0]);
    // inventory and frontend have no VirtualService: Istio's defaults, three attempts.
    let callers = &graph.services["mesh-callers"];
    for service in ["inventory", "frontend"] {
        let endpoint = callers
            .endpoints
            .iter()
            .find(|e| e.calls[0].to == service)
            .unwrap_or_else(|| panic!("{service}:\n{}", imported.toml));
        assert_eq!(endpoint.calls[0].max_attempts, 3, "{service}");
    }
}

#[test]
fn the_istio_shop_on_a_base_graph_stacks_the_hops() {
    let base = r#"[entry]
service = "frontend"

[[services.frontend.calls]]
to = "checkout"
endpoint = "browse"

[[services.checkout.endpoints.browse.calls]]
to = "inventory"

[[services.checkout.endpoints.place-order.calls]]
to = "inventory"

[services.inventory]
"#;
    let (imported, graph) = import("istio", Some(base));
    let report = stormguard_graph::check::check(&graph);
    let amplification = report
        .findings
        .iter()
        .find(|f| f.rule == "layered-retries")
        .unwrap_or_else(|| panic!("{:#?}\n{}", report.findings, imported.toml));
    assert_eq!(amplification.to.as_deref(), Some("inventory"));
}
