//! `stormguard check` as a user runs it: the built binary on the example graphs.

use std::process::Command;

fn stormguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_healthy_graph_exits_0_and_a_broken_one_1() {
    let (code, out, _) = stormguard(&["check", "examples/graphs/healthy.toml"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = stormguard(&["check", "examples/graphs/brooker-five-layers.toml"]);
    assert_eq!(code, 1);
    assert!(out.contains("retry-amplification"), "{out}");
    assert!(out.contains("243"), "{out}");
}

#[test]
fn fail_on_sets_the_threshold() {
    let file = "examples/graphs/cockcroft-edge.toml";
    assert_eq!(stormguard(&["check", file, "--fail-on", "never"]).0, 0);
    assert_eq!(stormguard(&["check", file, "--fail-on", "error"]).0, 1);
    let healthy = "examples/graphs/healthy.toml";
    assert_eq!(stormguard(&["check", healthy, "--fail-on", "warning"]).0, 0);
}

#[test]
fn json_sarif_and_mermaid_are_what_their_readers_expect() {
    let file = "examples/graphs/brooker-five-layers.toml";
    let (_, json, _) = stormguard(&["check", file, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["summary"]["errors"], 7);
    assert_eq!(json["services"]["db"]["amplification"], 243.0);
    assert_eq!(json["findings"][0]["rule"], "retry-amplification");

    let (_, sarif, _) = stormguard(&["check", file, "--format", "sarif"]);
    let sarif: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 21);
    let location = &results[1]["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], file);
    assert!(location["region"]["startLine"].as_u64().unwrap() > 1);

    let (_, mermaid, _) = stormguard(&["check", file, "--format", "mermaid"]);
    assert!(mermaid.starts_with("flowchart"), "{mermaid}");
    assert!(mermaid.contains("stroke:red"), "{mermaid}");
}

#[test]
fn bad_input_exits_2_with_file_line_column_and_key() {
    let dir = std::env::temp_dir().join(format!("stormguard-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[entry]\nservice = \"web\"\n\n[services.web]\n\n[[services.web.calls]]\nto = \"db\"\ntimeout = \"fast\"\n\n[services.db]\n",
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let (code, out, err) = stormguard(&["check", path]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&format!("{path}:8:")), "{err}");
    assert!(err.contains("services.web.calls[0].timeout"), "{err}");
    let (code, _, err) = stormguard(&["check", "no/such/file.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("no/such/file.toml"), "{err}");
}
