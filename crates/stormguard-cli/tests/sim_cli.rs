//! `stormguard sim` as a user runs it: the built binary.

use std::process::Command;

fn stormguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn brooker_jitter_json_has_the_documented_shape() {
    let argv = [
        "sim",
        "--experiment",
        "brooker-jitter",
        "--clients",
        "20",
        "--runs",
        "5",
        "--format",
        "json",
    ];
    let (code, out, err) = stormguard(&argv);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["clients"], 20);
    assert_eq!(json["runs"], 5);
    let strategies = json["strategies"].as_object().unwrap();
    let names: Vec<&str> = strategies.keys().map(String::as_str).collect();
    let mut expected = vec![
        "none",
        "exponential",
        "equal-jitter",
        "full-jitter",
        "decorrelated-jitter",
    ];
    expected.sort_unstable();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
    for (name, outcome) in strategies {
        let calls = outcome["calls"].as_f64().unwrap();
        let time_ms = outcome["time_ms"].as_f64().unwrap();
        assert!(calls >= 20.0, "{name}: {outcome}");
        assert!(time_ms > 0.0, "{name}: {outcome}");
        assert_eq!(outcome.as_object().unwrap().len(), 2, "{name}: {outcome}");
    }
    assert_eq!(stormguard(&argv).1, out, "same arguments, same bytes");
}

#[test]
fn a_graph_file_exits_2_and_says_what_is_available() {
    let (code, out, err) = stormguard(&["sim", "somefile.toml"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains(
            "sim somefile.toml: the graph simulator is not built yet; \
             available: --experiment brooker-jitter"
        ),
        "{err}"
    );
}
