//! `stormguard sim` as a user runs it: the built binary.

#[path = "support/bounded.rs"]
mod bounded;

use std::process::Command;
use std::time::Duration;

use bounded::within as stormguard_within;

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

/// Today's settings: three attempts at db, no budget, db slowed from 3s to 6s.
const TODAY: &str = r#"
[entry]
service = "api"
rate = 100
timeout = "1s"
[services.api]
instances = 2
latency = { p50 = "2ms", p99 = "10ms" }
[[services.api.calls]]
to = "db"
timeout = "50ms"
max_attempts = 3
[services.db]
instances = 2
concurrency = 4
latency = { p50 = "5ms", p99 = "20ms" }
[scenarios.db-slow]
duration = "15s"
[[scenarios.db-slow.faults]]
service = "db"
from = "3s"
to = "6s"
slowdown = 10.0
"#;

/// A graph file written once per test under the test target's temp dir.
fn graph(name: &str, toml: &str) -> String {
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sim-cli-{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

fn keys(value: &serde_json::Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

fn sorted(mut names: Vec<&str>) -> Vec<&str> {
    names.sort_unstable();
    names
}

#[test]
fn a_graph_s_json_has_exactly_the_issue_s_keys_and_the_same_bytes_every_run() {
    let file = graph("json", TODAY);
    let argv = [
        "sim",
        &file,
        "--scenario",
        "db-slow",
        "--seed",
        "5",
        "--format",
        "json",
    ];
    let (code, out, err) = stormguard(&argv);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "no progress bar off a terminal: {err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        sorted(keys(&json)),
        sorted(vec![
            "file",
            "scenario",
            "seed",
            "duration_s",
            "user",
            "services",
            "calls",
            "timeline",
            "recovered_at_s"
        ])
    );
    assert_eq!(
        (json["file"].as_str(), json["scenario"].as_str()),
        (Some(file.as_str()), Some("db-slow"))
    );
    assert_eq!(
        (json["seed"].as_u64(), json["duration_s"].as_f64()),
        (Some(5), Some(15.0))
    );
    assert_eq!(
        sorted(keys(&json["user"])),
        ["goodput", "latency_ms", "requests", "succeeded"]
    );
    assert_eq!(
        sorted(keys(&json["user"]["latency_ms"])),
        ["max", "p50", "p90", "p99", "p999"]
    );
    assert_eq!(keys(&json["services"]), ["api", "db"]);
    for service in json["services"].as_object().unwrap().values() {
        // Counts shown only where there are any (deadline drops here, under the slowdown).
        let optional = ["dropped", "unreachable", "queue_dropped", "endpoints"];
        let mut present = sorted(keys(service));
        present.retain(|k| !optional.contains(k));
        assert_eq!(
            present,
            [
                "amplification",
                "attempts",
                "max_queue",
                "rejected",
                "succeeded",
                "timed_out",
                "utilization",
                "wasted_work_s"
            ]
        );
    }
    assert_eq!(keys(&json["calls"]), ["api->db"]);
    assert_eq!(
        sorted(keys(&json["calls"]["api->db"])),
        [
            "attempts",
            "hedges",
            "retries",
            "retries_denied",
            "timeouts"
        ]
    );
    let requests = json["user"]["requests"].as_u64().unwrap();
    assert!(
        (1300..1700).contains(&requests),
        "100/s for 15s: {requests}"
    );
    let retries = json["calls"]["api->db"]["retries"].as_u64().unwrap();
    assert!(
        retries > 0,
        "db ten times slower than its caller's timeout: {out}"
    );
    let timeline = json["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 15, "one point per second");
    for (t, point) in timeline.iter().enumerate() {
        assert_eq!(
            sorted(keys(point)),
            ["attempt_rate", "goodput_rate", "t", "user_rate"]
        );
        assert_eq!(point["t"], t);
    }
    let at_db = |t: usize| timeline[t]["attempt_rate"]["db"].as_u64().unwrap();
    let users = |t: usize| timeline[t]["user_rate"].as_u64().unwrap();
    assert!(
        at_db(4) > users(4) && at_db(1) <= users(1) + 5,
        "retries while db is slow: {out}"
    );
    let recovered = json["recovered_at_s"]
        .as_f64()
        .expect("recovers once db is fast again");
    assert!((6.0..10.0).contains(&recovered), "{recovered}");
    assert_eq!(
        stormguard(&argv).1,
        out,
        "same files, scenario and seed, same bytes"
    );
}

#[test]
fn two_files_run_side_by_side_on_the_same_arrivals() {
    let today = graph("today", TODAY);
    let fixed = graph(
        "fixed",
        &TODAY.replace(
            "max_attempts = 3",
            "max_attempts = 2\nretry_budget = { ratio = 0.1, min_per_sec = 5 }",
        ),
    );
    let (code, out, err) = stormguard(&["sim", &today, &fixed, "--scenario", "db-slow"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "sim A = {today} against B = {fixed}: scenario db-slow"
        )),
        "{out}"
    );
    assert!(out.contains("\nverdict:\n  goodput "), "{out}");
    let (code, out, err) = stormguard(&[
        "sim",
        &today,
        &fixed,
        "--scenario",
        "db-slow",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(keys(&json), ["runs"]);
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[0]["user"]["requests"], runs[1]["user"]["requests"],
        "same arrivals"
    );
    assert_eq!(runs[1]["file"].as_str(), Some(fixed.as_str()));
    let retries = |i: usize| runs[i]["calls"]["api->db"]["retries"].as_u64().unwrap();
    assert!(
        retries(1) < retries(0),
        "one retry under a budget against two: {out}"
    );
}

#[test]
fn out_writes_the_summary_the_timeline_and_the_report() {
    let file = graph("out", TODAY);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sim-cli-out/nested");
    let _ = std::fs::remove_dir_all(&dir);
    let dir_text = dir.display().to_string();
    let (code, out, err) = stormguard(&[
        "sim",
        &file,
        "--scenario",
        "db-slow",
        "--out",
        &dir_text,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let summary = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    assert_eq!(summary, out, "summary.json is --format json");
    let csv = std::fs::read_to_string(dir.join("timeline.csv")).unwrap();
    assert!(csv.starts_with("t,user_rate,goodput_rate,goodput_share,p50_ms,p99_ms,attempts:api,attempts:db,max_queue:api,max_queue:db\n"), "{csv}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 4);
}

#[test]
fn bad_input_exits_2_and_says_where() {
    let bad = graph(
        "bad",
        &TODAY.replace("timeout = \"1s\"", "timeout = \"1 s\""),
    );
    let (code, _, err) = stormguard(&["sim", &bad]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with(&format!("stormguard: {bad}:5:")), "{err}");
    let file = graph("unknown-scenario", TODAY);
    let (code, _, err) = stormguard(&["sim", &file, "--scenario", "db-down"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{file}: no scenario named \"db-down\"; the file defines: db-slow"
        )),
        "{err}"
    );
    let (code, _, err) = stormguard(&["sim", &file, "--clients", "10"]);
    assert_eq!(code, 2, "{err}");
    // A run that ends before its scenario's first fault would report the fault and "never
    // recovered" from it, though nothing happened.
    let (code, _, err) = stormguard(&["sim", &file, "--scenario", "db-slow", "--duration", "1s"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--duration 1s: ends before scenario db-slow of ")
            && err.contains("give a longer --duration"),
        "{err}"
    );
    let (code, _, err) = stormguard(&["sim", "no-such-graph.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no-such-graph.toml: cannot read"), "{err}");
}

#[test]
fn sim_runs_the_example_settings_file() {
    let (code, out, err) = stormguard(&[
        "sim",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/proxy/stormguard.toml"
        ),
        "--duration",
        "5s",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let requests = summary["user"]["requests"].as_u64().unwrap();
    assert!(requests > 300, "{out}");
    assert_eq!(summary["services"]["app"]["endpoints"]["api"], requests);
    assert!(summary["services"]["api"]["attempts"].as_u64().unwrap() >= requests);
}

#[test]
fn a_graph_with_endpoints_is_checked_and_simulated_per_endpoint() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/graphs/gateway-endpoints.toml"
    );
    let (code, out, _) = stormguard(&["check", file]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error[entry-budget] gateway/checkout:"),
        "{out}"
    );
    assert!(out.contains("\ngateway/browse "), "{out}");
    let (code, out, err) = stormguard(&[
        "sim",
        file,
        "--duration",
        "20s",
        "--seed",
        "7",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let count = |service: &str| summary["services"][service]["attempts"].as_f64().unwrap();
    let share = count("catalog") / (count("catalog") + count("orders"));
    assert!((share - 0.9).abs() <= 0.02, "catalog took {share}");
    // Each request to the gateway took one endpoint; browse's retried some of theirs.
    let endpoints = &summary["services"]["gateway"]["endpoints"];
    let endpoint = |name: &str| endpoints[name].as_f64().unwrap();
    assert_eq!(endpoint("browse") + endpoint("checkout"), count("gateway"));
    assert!(endpoint("browse") <= count("catalog"));
}

/// A graph whose calls form a cycle, with workers enough to keep a request circling: `sim` once
/// ran it until it was killed (and grew by megabytes a second); it is refused at once, exit 2,
/// at the call that closes the cycle, in check's words.
#[test]
fn a_call_cycle_is_refused_with_exit_2_not_run_forever() {
    let file = graph(
        "cycle",
        "[entry]\nservice = \"a\"\n[services.a]\ninstances = 1000\nconcurrency = 1000\n\
         [[services.a.calls]]\nto = \"a\"\ncount = 3\nparallel = true\ntimeout = \"1h\"\n\
         propagate_deadline = false\n",
    );
    let (code, out, err) =
        stormguard_within(&["sim", &file, "--duration", "2s"], Duration::from_secs(60));
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!(
            "{file}:6:1: call a -> a: the calls a -> a form a cycle"
        )),
        "{err}"
    );
    assert!(err.contains("error[call-cycle]"), "{err}");
}

/// Rates and durations that once made `sim` grow to gigabytes with no output: out of the
/// file's range (refused at its line, as `check` refuses it), or in range but over what one run
/// may do (refused before the first event).
#[test]
fn unbounded_runs_are_refused_with_exit_2_and_what_to_lower() {
    let limit = Duration::from_secs(60);
    let absurd = graph(
        "rate-1e300",
        "[entry]\nservice = \"a\"\nrate = 1e300\n[services.a]\n",
    );
    let (code, _, err) = stormguard_within(&["sim", &absurd], limit);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{absurd}:3:8: `entry.rate`: 1e300 is out of range"
        )) && err.contains("a rate is 0 to 1000000"),
        "{err}"
    );
    let fast = graph(
        "rate-1e6",
        "[entry]\nservice = \"a\"\nrate = 1e6\n[services.a]\n",
    );
    let (code, _, err) = stormguard_within(&["sim", &fast], limit);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "60,000,000 user requests over 1m (1000000 a second) are more than the \
             10,000,000 one run may bring"
        ),
        "{err}"
    );
    let small = graph("small", "[entry]\nservice = \"a\"\n[services.a]\n");
    let (code, _, err) = stormguard_within(&["sim", &small, "--duration", "1000000h"], limit);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("1000000h is out of range") && err.contains("a simulated run is 1s to 24h"),
        "{err}"
    );
}
