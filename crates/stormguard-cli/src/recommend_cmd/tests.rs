//! The command on pages and graphs written to temporary files: the table, the JSON, the graph
//! rewritten and `check` catching a suggestion that breaks telescoping.

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    args: Args,
}

/// A file of the test's, removed when the test ends.
struct Temp(String);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl std::ops::Deref for Temp {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Temp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn temp(name: &str, text: &str) -> Temp {
    let path = std::env::temp_dir().join(format!(
        "stormguard-recommend-{}-{name}",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    Temp(path.display().to_string())
}

/// Runs the command: exit code, standard output, standard error, or the error.
fn run_args(argv: &[&str]) -> anyhow::Result<(ExitCode, String, String)> {
    let mut full = vec!["recommend"];
    full.extend_from_slice(argv);
    let args = Cmd::try_parse_from(full)?.args;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(args, &mut out, &mut err)?;
    Ok((
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    ))
}

/// db answers in 1.75 s at its p99.9 (rank 9,990 of 10,000 halfway through (1, 2.5] s holding
/// 20); api's p99.9 is its 250 ms bound (rank 9,990 is exactly the count there).
const PAGE: &str = r#"# TYPE rpc_seconds histogram
rpc_seconds_bucket{upstream="db",le="0.1"} 9000
rpc_seconds_bucket{upstream="db",le="1"} 9980
rpc_seconds_bucket{upstream="db",le="2.5"} 10000
rpc_seconds_bucket{upstream="db",le="+Inf"} 10000
rpc_seconds_bucket{upstream="api",le="0.1"} 9000
rpc_seconds_bucket{upstream="api",le="0.25"} 9990
rpc_seconds_bucket{upstream="api",le="0.3"} 10000
rpc_seconds_bucket{upstream="api",le="+Inf"} 10000
# TYPE size_bytes histogram
size_bytes_bucket{le="1024"} 3
size_bytes_bucket{le="+Inf"} 3
"#;

/// web gives api 1 s, api gives db 500 ms: telescoping holds until db's 1.8 s p99.9 is set.
const GRAPH: &str = r#"# The storefront, as found.
[entry]
service = "web"
timeout = "3s"

[[services.web.calls]]
to = "api"
timeout = "1s"        # agreed with the api team
connect_timeout = "100ms"
propagate_deadline = false

[[services.api.calls]]
to = "db"
timeout = "500ms"
connect_timeout = "100ms"
propagate_deadline = false

[services.db]
latency = { p50 = "20ms", p99 = "900ms" }
"#;

#[test]
fn the_table_has_each_series_its_warnings_and_the_skipped() {
    let page = temp("table.prom", PAGE);
    let (code, out, _) = run_args(&["--metrics", &page]).unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
    // api: p99 is rank 9,900 in (100, 250] ms holding 990: 100 + 150 * 900/990 = 236 ms.
    // db: p99 is rank 9,900 in (0.1, 1] s holding 980: 0.1 + 0.9 * 900/980 = 927 ms.
    let expected = format!(
        "stormguard recommend: 2 latency histograms from {page}; timeouts at the p99.9 (a \
         false-timeout rate of 0.1%)\n\n\
         SERIES                       REQUESTS  P50     P99    P99.9  TIMEOUT\n\
         rpc_seconds{{upstream=\"api\"}}  10000     55.6ms  236ms  250ms  250ms\n\
         rpc_seconds{{upstream=\"db\"}}   10000     55.6ms  927ms  1.75s  2s\n\
         \x20 ! p99.9 (1.75s) lies in a bucket from 1s to 2.5s, 2.5x apart, on a straight \
         line between them: a guess; add a bucket at 2s\n\
         \nskipped:\n\
         \x20 size_bytes: no unit: its name ends in neither _seconds nor _milliseconds and no \
         unit is stated (pass --unit if it is a latency)\n"
    );
    assert_eq!(out, expected);
}

#[test]
fn json_keys_are_stable() {
    let page = temp("json.prom", PAGE);
    let (_, out, _) = run_args(&["--metrics", &page, "--format", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["false_timeout_rate"], 0.001);
    assert_eq!(v["calls"], serde_json::Value::Null);
    let db = &v["series"][1];
    assert_eq!(db["series"], "rpc_seconds{upstream=\"db\"}");
    assert_eq!(db["labels"]["upstream"], "db");
    assert_eq!(db["unit"], "seconds");
    assert_eq!(db["p999_ms"], 1750.0);
    assert_eq!(db["suggested_timeout"], "2s");
    assert_eq!(db["suggested_timeout_ms"], 2000.0);
    assert_eq!(db["bucket"]["lower_ms"], 1000.0);
    assert_eq!(db["bucket"]["upper_ms"], 2500.0);
    assert_eq!(db["warnings"].as_array().unwrap().len(), 1);
    assert_eq!(v["series"][0]["warnings"], serde_json::json!([]));
    assert_eq!(v["skipped"][0]["series"], "size_bytes");
}

#[test]
fn check_catches_a_suggestion_that_breaks_telescoping() {
    let page = temp("graph.prom", PAGE);
    let graph = temp("graph.toml", GRAPH);
    let (code, out, err) =
        run_args(&["--metrics", &page, "--graph", &graph, "--format", "toml"]).unwrap();
    assert_eq!(code, ExitCode::from(1), "{err}");
    // Only the two timeouts change; the comments stay, the old one's included.
    let expected = GRAPH
        .replace(
            "timeout = \"1s\"        # agreed with the api team",
            "timeout = \"250ms\"        # agreed with the api team",
        )
        .replace(
            "timeout = \"500ms\"\n",
            "timeout = \"2s\" # stormguard recommend: p99.9 1.75s (was 500ms)\n",
        );
    assert_eq!(out, expected);
    assert!(
        err.starts_with(&format!("check on {graph} with the suggested timeouts: ")),
        "{err}"
    );
    // db's 2 s under api makes api's worst case longer than web's new 250 ms for it.
    assert!(
        err.contains("error timeout-inversion web -> api: "),
        "{err}"
    );
}

#[test]
fn the_calls_table_says_the_share_within_the_current_timeout() {
    let page = temp("calls.prom", PAGE);
    let graph = temp("calls.toml", GRAPH);
    let (_, out, _) = run_args(&["--metrics", &page, "--graph", &graph]).unwrap();
    let calls = out.split_once(&format!("calls of {graph}:\n")).unwrap().1;
    // api -> db at 500 ms: 9,000 + 980 * 400/900 of 10,000 = 94.356%, interpolated.
    // web -> api at 1 s: above every finite bound of api's series, with none of its requests
    // past the highest: all of them, exactly (">=100%" was printed).
    assert!(
        calls.starts_with(
            "CALL        SERIES                       NOW    WITHIN NOW  SUGGESTED\n\
         api -> db   rpc_seconds{upstream=\"db\"}   500ms  ~94.356%    2s\n\
         \x20 ! p99.9 (1.75s) lies in a bucket from 1s to 2.5s, 2.5x apart, on a straight line \
         between them: a guess; add a bucket at 2s\n\
         web -> api  rpc_seconds{upstream=\"api\"}  1s     100%        250ms\n"
        ),
        "{calls}"
    );
    assert!(calls.contains("(--format toml writes the graph with these timeouts)"));
}

#[test]
fn the_graph_sets_the_false_timeout_rate_unless_the_flag_does() {
    let page = temp("rate.prom", PAGE);
    let graph = temp(
        "rate.toml",
        &GRAPH.replace("[entry]", "[check]\nfalse_timeout_rate = 0.01\n\n[entry]"),
    );
    let (_, out, _) =
        run_args(&["--metrics", &page, "--graph", &graph, "--format", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["false_timeout_rate"], 0.01);
    let (_, out, _) = run_args(&[
        "--metrics",
        &page,
        "--graph",
        &graph,
        "--format",
        "json",
        "--false-timeout-rate",
        "0.001",
    ])
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["false_timeout_rate"], 0.001);
    assert_eq!(v["calls"][0]["from"], "api");
    assert_eq!(v["calls"][0]["matched_by"], "label:upstream");
    assert_eq!(v["calls"][0]["share_within_current_kind"], "interpolated");
    assert_eq!(v["calls"][0]["suggestion"]["suggested_timeout"], "2s");
    // The shorter timeout also makes db's full FIFO queue outlast it (queue-outlives-caller).
    let rules: Vec<&str> = (v["check"]["new_findings"].as_array().unwrap().iter())
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"timeout-inversion"), "{rules:?}");
}

#[test]
fn a_stated_unit_takes_in_unitless_histograms() {
    let page = temp(
        "unit.prom",
        "db_latency_bucket{le=\"40\"} 10000\ndb_latency_bucket{le=\"+Inf\"} 10000\n",
    );
    let (_, out, _) = run_args(&[
        "--metrics",
        &page,
        "--unit",
        "milliseconds",
        "--format",
        "json",
    ])
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["series"][0]["unit"], "milliseconds");
    assert_eq!(v["series"][0]["p999_ms"], 39.96);
}

fn input_error(argv: &[&str]) -> String {
    let error = run_args(argv).expect_err("an error");
    assert!(error.downcast_ref::<InputError>().is_some(), "{error:#}");
    error.to_string()
}

#[test]
fn bad_input_is_an_input_error_that_says_the_fix() {
    let page = temp("bad.prom", "a_bucket{le=\"x\"} 1\n");
    assert_eq!(
        input_error(&["--metrics", &page]),
        format!("{page}:1:13: le=\"x\" is not a bound: use a number such as \"0.25\", or \"+Inf\"")
    );
    let good = temp("good.prom", PAGE);
    assert!(input_error(&["--metrics", &good, "--format", "toml"]).contains("--graph FILE"));
    assert!(
        input_error(&["--metrics", &good, "--false-timeout-rate", "1"])
            .contains("strictly between 0 and 1")
    );
    assert!(input_error(&["--metrics", "/nonexistent/m.prom"]).contains("cannot read"));
    assert!(
        input_error(&["--metrics", "https://example.invalid/metrics"])
            .contains("only http:// is fetched")
    );
    assert!(
        input_error(&["--prometheus", "http://127.0.0.1:1", "--window", "1 hour"])
            .contains("--window 1 hour")
    );
    assert!(run_args(&[]).is_err(), "a source is required");
}

/// A histogram whose tail is past an hour (a bucket at 100,000 s) once ended the command with
/// exit 3 and no table: the graph with the suggestion did not read back. The suggestion is
/// shown, marked, and left out of the graph.
#[test]
fn a_suggestion_past_the_longest_timeout_is_said_and_not_written() {
    let page = temp(
        "long.prom",
        "x_seconds_bucket{upstream=\"db\",le=\"0.1\"} 10\n\
         x_seconds_bucket{upstream=\"db\",le=\"100000\"} 20\n\
         x_seconds_bucket{upstream=\"db\",le=\"+Inf\"} 20\n",
    );
    let graph = temp(
        "long.toml",
        "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\nto = \"db\"\n\
         timeout = \"300ms\"\nconnect_timeout = \"5ms\"\n[services.db]\n",
    );
    let (_, out, _) = run_args(&["--metrics", &page, "--graph", &graph]).unwrap();
    assert!(
        out.contains(
            "  ! not written: above 1h, the longest timeout a graph may hold; a tail this long \
             is a job's, not a request's"
        ),
        "{out}"
    );
    let (_, toml, _) =
        run_args(&["--metrics", &page, "--graph", &graph, "--format", "toml"]).unwrap();
    assert!(toml.contains("timeout = \"300ms\""), "{toml}");
    // JSON says it of the call (its reason was null, as if it were written), and the table of
    // series without a graph says it too (a 27-hour TIMEOUT stood there unremarked).
    let (_, json, _) =
        run_args(&["--metrics", &page, "--graph", &graph, "--format", "json"]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        json["calls"][0]["not_written"]
            .as_str()
            .is_some_and(|why| why.starts_with("above 1h")),
        "{json}"
    );
    let (_, out, _) = run_args(&["--metrics", &page]).unwrap();
    assert!(
        out.contains("  ! above 1h, the longest timeout a graph may hold"),
        "{out}"
    );
}

/// A quantile past the highest bucket is only a floor: written over a longer timeout it would
/// cut more healthy requests than the false-timeout rate (a 1s timeout became the 100ms floor
/// with 1% of requests above it). It is not written; JSON says so; a call without a timeout,
/// or with a shorter one, still gets the floor, which is closer than what it has.
#[test]
fn a_floor_is_not_written_over_a_longer_timeout() {
    let page = temp(
        "floor.prom",
        "x_seconds_bucket{upstream=\"db\",le=\"0.05\"} 980000\n\
         x_seconds_bucket{upstream=\"db\",le=\"0.1\"} 990000\n\
         x_seconds_bucket{upstream=\"db\",le=\"+Inf\"} 1000000\n",
    );
    let graph = |timeout: &str| {
        temp(
            &format!("floor-{timeout}.toml"),
            &format!(
                "[entry]\nservice = \"web\"\n[services.web]\n[[services.web.calls]]\nto = \"db\"\n\
                 timeout = \"{timeout}\"\nconnect_timeout = \"5ms\"\n[services.db]\n"
            ),
        )
    };
    let longer = graph("1s");
    let (_, toml, _) =
        run_args(&["--metrics", &page, "--graph", &longer, "--format", "toml"]).unwrap();
    assert!(toml.contains("timeout = \"1s\""), "{toml}");
    let (_, out, _) = run_args(&["--metrics", &page, "--graph", &longer]).unwrap();
    assert!(out.contains("  ! not written: only a floor"), "{out}");
    let shorter = graph("20ms");
    let (_, toml, _) =
        run_args(&["--metrics", &page, "--graph", &shorter, "--format", "toml"]).unwrap();
    assert!(toml.contains("timeout = \"100ms\""), "{toml}");
    let (_, json, _) = run_args(&["--metrics", &page, "--format", "json"]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["series"][0]["only_a_floor"], true, "{json}");
    let (_, json, _) =
        run_args(&["--metrics", &page, "--graph", &longer, "--format", "json"]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        json["calls"][0]["not_written"]
            .as_str()
            .is_some_and(|why| why.starts_with("only a floor")),
        "{json}"
    );
    let (_, json, _) =
        run_args(&["--metrics", &page, "--graph", &shorter, "--format", "json"]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(json["calls"][0]["not_written"].is_null(), "{json}");
}

/// A count past 10^15 is shown in scientific notation, where it printed 31 digits of float
/// noise for 1e30; counts of a rate over a window stay whole numbers.
#[test]
fn huge_counts_are_shown_in_scientific_notation() {
    assert_eq!(render::count_text(1e30), "1e30");
    assert_eq!(render::count_text(1.5e16), "1.5e16");
    assert_eq!(render::count_text(10_000.0), "10000");
    assert_eq!(render::count_text(1234.6), "1235");
}

/// A device or pipe given to `--metrics` is told of `--metrics -`, which reads standard
/// input, where it was told to save the text to a file first.
#[cfg(unix)]
#[test]
fn a_device_given_as_a_page_is_told_of_standard_input() {
    let error = input_error(&["--metrics", "/dev/null"]);
    assert!(
        error.contains("pass `--metrics -` to read standard input"),
        "{error}"
    );
    assert!(!error.contains("save the text"), "{error}");
}

/// Nothing to suggest a timeout from is exit 2, with what was found said: a script read exit 0
/// and no timeout as success, and a page of summaries said only "no latency histogram with
/// requests found".
#[test]
fn no_timeout_to_suggest_is_exit_2_and_says_why() {
    let summary = temp(
        "summary.prom",
        "# TYPE rpc_seconds summary\nrpc_seconds{quantile=\"0.99\"} 0.2\nrpc_seconds_count 10\n",
    );
    let (code, out, _) = run_args(&["--metrics", &summary]).unwrap();
    assert_eq!(code, ExitCode::from(2), "{out}");
    assert!(
        out.contains("no histogram found: no `_bucket` samples"),
        "{out}"
    );
    let idle = temp(
        "idle.prom",
        "rpc_seconds_bucket{le=\"0.1\"} 0\nrpc_seconds_bucket{le=\"+Inf\"} 0\n",
    );
    let (code, out, _) = run_args(&["--metrics", &idle]).unwrap();
    assert_eq!(code, ExitCode::from(2), "{out}");
    assert!(
        out.contains("no latency histogram with requests found"),
        "{out}"
    );
    assert!(out.contains("rpc_seconds: no requests counted"), "{out}");
}

/// Besides the findings a suggestion brings, the check says those it resolves and those still
/// there whose figures it moved: "no new findings (28 as before)" hid three resolved and one
/// timeout-inversion made worse.
#[test]
fn the_check_says_what_the_suggestions_resolve_and_change() {
    let page = temp("moved.prom", PAGE);
    // api gives db 150 ms, under its p99 of 300 ms: the 2 s suggested for it resolves that.
    let graph = temp(
        "moved.toml",
        &GRAPH
            .replace("timeout = \"500ms\"", "timeout = \"150ms\"")
            .replace("p99 = \"900ms\"", "p99 = \"300ms\""),
    );
    let (_, _, err) =
        run_args(&["--metrics", &page, "--graph", &graph, "--format", "toml"]).unwrap();
    assert!(err.contains(" resolved)"), "{err}");
    assert!(
        err.contains("  resolved timeout-below-latency api -> db\n"),
        "{err}"
    );
    let (_, json, _) =
        run_args(&["--metrics", &page, "--graph", &graph, "--format", "json"]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["check"]["resolved_findings"][1]["rule"], "timeout-below-latency",
        "{json}"
    );
    // In the graph as found, db's 2 s moves the figures of findings that stay.
    let graph = temp("moved-as-found.toml", GRAPH);
    let (_, _, err) =
        run_args(&["--metrics", &page, "--graph", &graph, "--format", "toml"]).unwrap();
    assert!(err.contains("2 as before, 2 of them changed"), "{err}");
    assert!(
        err.contains("  changed error timeout-inversion api -> db: db may keep working "),
        "{err}"
    );
    let (_, json, _) =
        run_args(&["--metrics", &page, "--graph", &graph, "--format", "json"]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["check"]["changed_findings"][0]["rule"], "timeout-inversion",
        "{json}"
    );
}
