//! `stormguard check` as a user runs it: the built binary on the example graphs.

#[path = "support/run.rs"]
mod run;
use run::stormguard;

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
    assert_eq!(json["summary"]["errors"], 9);
    assert_eq!(json["services"]["db"]["amplification"], 243.0);
    assert_eq!(json["findings"][0]["rule"], "retries-over-capacity");
    assert_eq!(json["findings"][1]["rule"], "retry-amplification");

    let (_, sarif, _) = stormguard(&["check", file, "--format", "sarif"]);
    let sarif: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 23);
    let location = &results[2]["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], file);
    assert!(location["region"]["startLine"].as_u64().unwrap() > 1);
    // JSON places each finding where SARIF does (only SARIF had a line).
    for (finding, result) in json["findings"].as_array().unwrap().iter().zip(results) {
        let region = &result["locations"][0]["physicalLocation"]["region"];
        assert_eq!(finding["source"]["file"], file);
        assert_eq!(finding["source"]["line"], region["startLine"], "{finding}");
        assert_eq!(
            finding["source"]["column"], region["startColumn"],
            "{finding}"
        );
    }

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

fn committed(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../examples/graphs/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn fix_prints_the_fixed_graph_and_says_what_changed_on_stderr() {
    let (code, out, err) =
        stormguard(&["check", "--fix", "examples/graphs/storefront-as-found.toml"]);
    assert_eq!(code, 0, "{err}");
    // The committed "with stormguard" file is exactly what --fix makes of "as found".
    assert_eq!(out, committed("storefront-with-stormguard.toml"));
    assert!(
        err.starts_with("check --fix: 17 settings changed in "),
        "{err}"
    );
    assert!(
        err.contains("  web -> api: max_attempts = 2, was 3 (retry-amplification)\n"),
        "{err}"
    );
    assert!(
        err.ends_with("the fixed graph: 0 errors, 0 warnings, 0 infos\n"),
        "{err}"
    );
    // The connect timeouts it wrote rest on the default round trip, which the file never
    // gives: said, with the calls.
    assert!(
        err.contains(
            "these changes rest on defaults no file gave, taken as measured: a round trip (rtt) \
             of 1ms on "
        ),
        "{err}"
    );
}

#[test]
fn fix_out_writes_the_file_and_the_summary_to_stdout() {
    let dir = std::env::temp_dir().join(format!("stormguard-check-fix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fixed.toml");
    let path_arg = path.to_str().unwrap();
    let file = "examples/graphs/storefront-with-stormguard.toml";
    let (code, out, err) = stormguard(&["check", "--fix", file, "--out", path_arg]);
    assert_eq!(code, 0, "{err}");
    // A fixed file is its own fix: nothing changes, and it still has no finding.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        committed("storefront-with-stormguard.toml")
    );
    assert_eq!(
        out,
        format!("check --fix: 0 settings changed in 0 rounds\nthe fixed graph: 0 errors, 0 warnings, 0 infos\nwrote {path_arg}\n")
    );
    assert!(err.is_empty(), "{err}");
    let (code, _, _) = stormguard(&["check", file]);
    assert_eq!(code, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fix_says_what_it_could_not_fix_and_fails_on_what_is_left() {
    // deep-slowdown with 5 x 16 queries under 1 s: they cannot all fit above db's latency, so
    // the fixes for api and svc take turns.
    let text = std::fs::read_to_string(format!(
        "{}/../../examples/graphs/deep-slowdown.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace("count = 8", "count = 16");
    let path = std::env::temp_dir().join(format!(
        "stormguard-check-cli-{}-undo.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    let file = path.to_str().unwrap();
    let (code, _, err) = stormguard(&["check", "--fix", file]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not fixed, since their fixes undo each other: choose between them by hand:\n  error[timeout-inversion] "),
        "{err}"
    );
    let (code, _, _) = stormguard(&["check", "--fix", file, "--fail-on", "never"]);
    assert_eq!(code, 0);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn out_needs_fix_and_fix_takes_no_format() {
    let file = "examples/graphs/healthy.toml";
    assert_eq!(stormguard(&["check", file, "--out", "x.toml"]).0, 2);
    assert_eq!(
        stormguard(&["check", file, "--fix", "--format", "json"]).0,
        2
    );
}

#[test]
fn explain_says_what_a_rule_computes_and_check_rules_lists_them_as_explain_does() {
    let (code, list, _) = stormguard(&["explain"]);
    assert_eq!(code, 0);
    assert!(list.contains("\ncall-cycle  "), "{list}");
    let (code, rules, _) = stormguard(&["check", "--rules"]);
    assert_eq!(code, 0);
    assert_eq!(rules, list);
    // As copied from a finding of the report.
    let (code, one, _) = stormguard(&["explain", "error[retry-amplification]"]);
    assert_eq!(code, 0);
    assert!(one.starts_with("retry-amplification (error): "), "{one}");
    assert!(
        one.contains("max_amplification = 10 (the default)"),
        "{one}"
    );
    // --rules checks no file, and takes none.
    let file = "examples/graphs/healthy.toml";
    assert_eq!(stormguard(&["check", "--rules", file]).0, 2);
}

#[test]
fn explain_of_an_unknown_rule_exits_2_listing_the_rules() {
    let (code, out, err) = stormguard(&["explain", "retry-storm"]);
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("no rule `retry-storm`"), "{err}");
    assert!(err.contains("timeout-inversion"), "{err}");
}

/// A settings or graph file written once per test under the test target's temp dir.
fn written(name: &str, toml: &str) -> String {
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("check-cli-{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

#[test]
fn check_reads_the_example_settings_file_as_its_routes() {
    let (code, out, err) = stormguard(&["check", "examples/proxy/stormguard.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("app/api -> api"), "{out}");
    assert!(out.contains("\napp (entry) "), "{out}");
    let (code, json, _) = stormguard(&[
        "check",
        "examples/proxy/stormguard.toml",
        "--format",
        "sarif",
    ]);
    assert_eq!(code, 0);
    let sarif: serde_json::Value = serde_json::from_str(&json).unwrap();
    let region = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"];
    // The route's `[[routes]]` line in the settings file.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/proxy/stormguard.toml"
    ))
    .unwrap();
    let line = text.lines().position(|l| l == "[[routes]]").unwrap() + 1;
    assert_eq!(region["startLine"], line, "{json}");
}

#[test]
fn a_route_whose_retries_multiply_gets_its_findings() {
    let settings = written(
        "storm",
        r#"[upstreams.orders]
instances = ["127.0.0.1:9001", "127.0.0.1:9002"]

[[routes]]
name = "orders"
upstream = "orders"
timeout = "1s"
request_timeout = "15s"
connect_timeout = "3ms"
max_attempts = 12
"#,
    );
    let (code, out, err) = stormguard(&["check", &settings, "--format", "json"]);
    assert_eq!(code, 1, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let of = |rule: &str| {
        findings
            .iter()
            .find(|f| f["rule"] == rule)
            .unwrap_or_else(|| panic!("no {rule} in {out}"))
    };
    let amplification = of("retry-amplification");
    assert_eq!(amplification["service"], "orders");
    assert_eq!(amplification["value"], 12.0);
    let attempts = of("too-many-attempts");
    assert_eq!(
        (&attempts["from"], &attempts["to"]),
        (&"app/orders".into(), &"orders".into())
    );
    assert_eq!(report["services"]["orders"]["amplification"], 12.0);
}

#[test]
fn an_invalid_settings_file_is_refused_at_its_place_and_fix_is_refused() {
    let settings = written(
        "invalid",
        "[upstreams.api]\ninstances = [\"127.0.0.1:9001\"]\n\n[[routes]]\nname = \"api\"\nupstream = \"api\"\n",
    );
    let (code, _, err) = stormguard(&["check", &settings]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{}:4:1: `routes[0].timeout`: missing", &settings)),
        "{err}"
    );
    let (code, _, err) = stormguard(&["sim", &settings]);
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = stormguard(&["check", "--fix", "examples/proxy/stormguard.toml"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("is a proxy settings file: --fix writes graph files only"),
        "{err}"
    );
}
