//! `sim`'s arguments and the runs they start, through the parsed command line.

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    args: Args,
}

fn run_args(argv: &[&str]) -> anyhow::Result<String> {
    let mut full = vec!["sim"];
    full.extend_from_slice(argv);
    let cmd = Cmd::try_parse_from(full)?;
    let mut out = Vec::new();
    run(cmd.args, &mut out)?;
    Ok(String::from_utf8(out)?)
}

/// A graph file under the system's temp dir, named after the test so tests run in parallel.
fn graph_file(test: &str, toml: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "stormguard-sim-cmd-{}-{test}.toml",
        std::process::id()
    ));
    std::fs::write(&path, toml).unwrap();
    path
}

const GRAPH: &str = r#"
[entry]
service = "api"
rate = 50
timeout = "1s"
[services.api]
latency = { p50 = "5ms", p99 = "20ms" }
[[services.api.calls]]
to = "db"
timeout = "100ms"
max_attempts = 3
[services.db]
latency = { p50 = "2ms", p99 = "10ms" }
[scenarios.db-errors]
duration = "5s"
[[scenarios.db-errors.faults]]
service = "db"
from = "1s"
to = "3s"
error_rate = 0.5
"#;

#[test]
fn text_compares_with_the_published_figures_where_they_exist() {
    let args = ["--experiment", "brooker-jitter", "--runs", "2", "--clients"];
    let text = run_args(&[&args[..], &["50"]].concat()).unwrap();
    assert!(text.contains("pub calls"), "{text}");
    let full = text.lines().find(|l| l.starts_with("full-jitter")).unwrap();
    assert!(full.contains(" 333 "), "{text}");
    let text = run_args(&[&args[..], &["20"]].concat()).unwrap();
    assert!(!text.contains("pub calls"), "{text}");
    assert!(text.contains("exist for 50, 100 and 190"), "{text}");
    assert_eq!(text.lines().count(), 8, "{text}");
}

#[test]
fn the_same_arguments_give_the_same_bytes() {
    let argv = [
        "--experiment",
        "brooker-jitter",
        "--clients",
        "15",
        "--runs",
        "3",
        "--seed",
        "4",
        "--format",
        "json",
    ];
    assert_eq!(run_args(&argv).unwrap(), run_args(&argv).unwrap());
}

#[test]
fn a_file_or_an_experiment_is_needed_and_experiment_flags_need_the_experiment() {
    let parses = |argv: &[&str]| {
        let mut full = vec!["sim"];
        full.extend_from_slice(argv);
        Cmd::try_parse_from(full).is_ok()
    };
    assert!(!parses(&["graph.toml", "--experiment", "brooker-jitter"]));
    assert!(!parses(&[]));
    assert!(!parses(&["--experiment", "brooker-jitter", "--runs", "0"]));
    assert!(!parses(&["graph.toml", "--clients", "10"]));
    assert!(!parses(&["graph.toml", "--runs", "10"]));
    assert!(!parses(&["--experiment", "brooker-jitter", "--out", "dir"]));
    assert!(
        !parses(&["graph.toml", "--duration", "10"]),
        "a duration has a unit"
    );
    assert!(parses(&["graph.toml", "--duration", "10s", "--seed", "3"]));
    for unbounded in ["1000000h", "25h", "0s", "999ms"] {
        assert!(
            !parses(&["graph.toml", "--duration", unbounded]),
            "a run is 1s to 24h: {unbounded}"
        );
    }
    assert!(parses(&["graph.toml", "--duration", "24h"]));
    assert!(parses(&[
        "a.toml",
        "b.toml",
        "--scenario",
        "x",
        "--format",
        "json"
    ]));
    assert!(parses(&[
        "--experiment",
        "brooker-jitter",
        "--clients",
        "10"
    ]));
}

#[test]
fn a_graph_runs_its_scenario_and_prints_the_tables() {
    let file = graph_file("tables", GRAPH);
    let path = file.display().to_string();
    let text = run_args(&[&path, "--scenario", "db-errors", "--seed", "3"]).unwrap();
    assert!(
        text.starts_with(&format!("sim {path}: scenario db-errors, seed 3, 5s")),
        "{text}"
    );
    assert!(text.contains("\napi->db "), "{text}");
    let json = run_args(&[&path, "--scenario", "db-errors", "--format", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["scenario"], "db-errors");
    let retries = v["calls"]["api->db"]["retries"].as_u64().unwrap();
    assert!(retries > 10, "half of db's attempts fail for 2s: {json}");
    let plain = run_args(&[&path, "--duration", "2s"]).unwrap();
    assert!(
        plain.starts_with(&format!("sim {path}: scenario db-errors, seed 0, 2s")),
        "the only scenario runs by default: {plain}"
    );
    let two = graph_file(
        "tables-two",
        &format!("{GRAPH}\n[scenarios.calm]\nduration = \"2s\"\n"),
    );
    let two_path = two.display().to_string();
    let plain = run_args(&[&two_path, "--duration", "2s"]).unwrap();
    assert!(
        plain.contains("no scenario (the file defines calm, db-errors; pick one with --scenario)"),
        "{plain}"
    );
    std::fs::remove_file(file).unwrap();
    std::fs::remove_file(two).unwrap();
}

#[test]
fn two_files_run_the_only_scenario_of_the_first_by_default() {
    let a = graph_file("only-a", GRAPH);
    let b = graph_file("only-b", &GRAPH[..GRAPH.find("[scenarios").unwrap()]);
    let (pa, pb) = (a.display().to_string(), b.display().to_string());
    let text = run_args(&[&pa, &pb, "--duration", "2s"]).unwrap();
    std::fs::remove_file(a).unwrap();
    std::fs::remove_file(b).unwrap();
    assert!(
        text.starts_with(&format!(
            "sim A = {pa} against B = {pb}: scenario db-errors of A"
        )),
        "{text}"
    );
}

#[test]
fn the_choice_of_scenario_is_said_on_stderr() {
    let graph = |toml: &str| {
        let (graph, _) = crate::graph_file::parse("g.toml", toml).unwrap();
        ("g.toml".to_string(), graph)
    };
    let one = graph(GRAPH);
    assert_eq!(
        chosen_scenario(&one, None, None),
        (
            Some("db-errors"),
            Some("sim: g.toml: no --scenario given; running its only scenario, db-errors".into())
        )
    );
    assert_eq!(chosen_scenario(&one, Some("x"), None), (Some("x"), None));
    // A --duration that ends before the only scenario starts: run without it, and say so.
    let short = Some(std::time::Duration::from_secs(1));
    assert_eq!(
        chosen_scenario(&one, None, short),
        (
            None,
            Some(
                "sim: g.toml: no --scenario given, and its only scenario, db-errors, starts at \
                 1s, after --duration 1s: running without it"
                    .into()
            )
        )
    );
    let long = Some(std::time::Duration::from_secs(2));
    assert_eq!(chosen_scenario(&one, None, long).0, Some("db-errors"));
    let two = graph(&format!("{GRAPH}\n[scenarios.calm]\nduration = \"2s\"\n"));
    let (name, note) = chosen_scenario(&two, None, None);
    assert_eq!(name, None);
    assert_eq!(
        note.unwrap(),
        "sim: g.toml defines the scenarios calm, db-errors; none ran (no faults, no load \
         steps): pick one with --scenario"
    );
    let none = graph(&GRAPH[..GRAPH.find("[scenarios").unwrap()]);
    assert_eq!(chosen_scenario(&none, None, None), (None, None));
}

#[test]
fn an_unknown_scenario_on_a_file_without_any_says_there_are_none() {
    let file = graph_file("unknown-none", &GRAPH[..GRAPH.find("[scenarios").unwrap()]);
    let path = file.display().to_string();
    let err = run_args(&[&path, "--scenario", "nope"]).unwrap_err();
    std::fs::remove_file(file).unwrap();
    let input = err.downcast_ref::<InputError>().expect("exit 2");
    assert!(
        input.0.ends_with(
            "the file defines no scenarios; add a [scenarios.NAME] table or run without --scenario"
        ),
        "{input}"
    );
}

#[test]
fn an_unknown_scenario_names_the_file_and_the_known_ones() {
    let file = graph_file("unknown", GRAPH);
    let path = file.display().to_string();
    let err = run_args(&[&path, "--scenario", "nope"]).unwrap_err();
    std::fs::remove_file(file).unwrap();
    let input = err.downcast_ref::<InputError>().expect("exit 2");
    assert!(input.0.starts_with(&format!("{path}: ")), "{input}");
    assert!(
        input.0.contains("\"nope\"") && input.0.contains("db-errors"),
        "{input}"
    );
}

#[test]
fn a_fault_on_a_service_the_second_file_lacks_is_refused() {
    let first = graph_file("lacks-a", GRAPH);
    let alone = GRAPH
        .replace(
            "[[services.api.calls]]\nto = \"db\"",
            "[[services.api.calls]]\nto = \"cache\"",
        )
        .replace("[services.db]", "[services.cache]");
    let second = graph_file("lacks-b", &alone[..alone.find("[scenarios").unwrap()]);
    let (a, b) = (first.display().to_string(), second.display().to_string());
    let err = run_args(&[&a, &b, "--scenario", "db-errors"]).unwrap_err();
    std::fs::remove_file(first).unwrap();
    std::fs::remove_file(second).unwrap();
    let input = err.downcast_ref::<InputError>().expect("exit 2");
    assert!(
        input.0.starts_with(&format!("{b}: has no service \"db\"")),
        "{input}"
    );
}

#[test]
fn a_file_that_does_not_parse_is_an_input_error_at_its_place() {
    let file = graph_file("bad", "[entry\nservice = \"web\"\n");
    let path = file.display().to_string();
    let err = run_args(&[&path]).unwrap_err();
    std::fs::remove_file(file).unwrap();
    let input = err.downcast_ref::<InputError>().expect("exit 2");
    assert!(input.0.starts_with(&format!("{path}:1:")), "{input}");
}

#[test]
fn seeds_are_one_to_a_thousand_and_must_not_run_past_the_last_seed() {
    let parse_error = |n: &str| match Cmd::try_parse_from(["sim", "g.toml", "--seeds", n]) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    for bad in ["0", "1001", "many"] {
        let error = parse_error(bad);
        assert!(error.contains("--seeds <N>"), "{bad}: {error}");
    }
    assert!(
        parse_error("0").contains("0 is not in 1..=1000"),
        "{}",
        parse_error("0")
    );
    assert_eq!(parse_error("1000"), "");
    assert!(
        Cmd::try_parse_from(["sim", "--experiment", "brooker-jitter", "--seeds", "2"]).is_err()
    );
    let file = graph_file("seed-overflow", GRAPH);
    let path = file.display().to_string();
    let last = u64::MAX.to_string();
    let err = run_args(&[&path, "--seed", &last, "--seeds", "2"]).unwrap_err();
    let input = err.downcast_ref::<InputError>().expect("exit 2");
    assert!(
        input
            .0
            .starts_with(&format!("--seed {last} with --seeds 2: ")),
        "{input}"
    );
    // One seed at the very end is fine.
    run_args(&[&path, "--seed", &last, "--duration", "1s"]).unwrap();
    std::fs::remove_file(file).unwrap();
}

#[test]
fn one_seed_prints_what_no_seeds_flag_prints() {
    let a = graph_file("one-seed-a", GRAPH);
    let b = graph_file(
        "one-seed-b",
        &GRAPH.replace("max_attempts = 3", "max_attempts = 2"),
    );
    let (pa, pb) = (a.display().to_string(), b.display().to_string());
    for files in [vec![pa.as_str()], vec![pa.as_str(), pb.as_str()]] {
        for format in ["text", "json"] {
            let argv = [&files[..], &["--seed", "5", "--format", format]].concat();
            let with = [&argv[..], &["--seeds", "1"]].concat();
            assert_eq!(run_args(&argv).unwrap(), run_args(&with).unwrap());
        }
    }
    std::fs::remove_file(a).unwrap();
    std::fs::remove_file(b).unwrap();
}

/// `sim A B --seeds 4` through [`simulate_seeds`] in a pool of `threads`, as JSON.
fn seeds_json(threads: usize) -> String {
    let graph = |name: &str, toml: &str| {
        let (graph, _) = crate::graph_file::parse(name, toml).unwrap();
        (name.to_string(), graph)
    };
    let a = graph("a.toml", GRAPH);
    let b = graph(
        "b.toml",
        &GRAPH.replace("max_attempts = 3", "max_attempts = 2"),
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let seeds = Seeds { first: 3, count: 4 };
    let runs = pool
        .install(|| simulate_seeds(&a, Some(&b), Some("db-errors"), seeds, None))
        .unwrap();
    json(&runs).unwrap()
}

#[test]
fn several_seeds_give_the_same_figures_on_one_thread_or_two() {
    let one = seeds_json(1);
    assert_eq!(one, seeds_json(2));
    let v: serde_json::Value = serde_json::from_str(&one).unwrap();
    let a = &v["runs"][0];
    assert_eq!(a["seed"], 3);
    assert_eq!(
        a["seeds"],
        serde_json::json!({"first": 3, "last": 6, "count": 4})
    );
    let goodput = &a["intervals"]["user.goodput"];
    let (mean, lower, upper) = (
        goodput["mean"].as_f64().unwrap(),
        goodput["lower"].as_f64().unwrap(),
        goodput["upper"].as_f64().unwrap(),
    );
    assert!(
        lower < mean && mean < upper && upper - lower < 0.2,
        "{goodput}"
    );
    assert_eq!(goodput["seeds"], 4);
    let retries = &a["intervals"]["calls.api->db.retries"];
    assert!(retries["mean"].as_f64().unwrap() > 10.0, "{retries}");
    // The seeds differ: four identical runs would have no spread.
    assert!(
        a["intervals"]["user.requests"]["upper"] != a["intervals"]["user.requests"]["lower"],
        "{}",
        a["intervals"]["user.requests"]
    );
}

#[test]
fn with_several_seeds_the_timeline_and_charts_are_the_first_seed_s_and_say_so() {
    let file = graph_file("seeds-out", GRAPH);
    let path = file.display().to_string();
    let dir = std::env::temp_dir().join(format!(
        "stormguard-sim-cmd-{}-seeds-out",
        std::process::id()
    ));
    let (one, several) = (dir.join("one"), dir.join("several"));
    let argv = [path.as_str(), "--seed", "2", "--out"];
    run_args(&[&argv[..], &[one.to_str().unwrap()]].concat()).unwrap();
    let text =
        run_args(&[&argv[..], &[several.to_str().unwrap(), "--seeds", "3"]].concat()).unwrap();
    assert!(
        text.ends_with("(timeline.csv and the charts: seed 2, the first of the 3 seeds)\n"),
        "{text}"
    );
    let read = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(read(&one, "timeline.csv"), read(&several, "timeline.csv"));
    let page = read(&several, "report.html");
    assert!(page.contains("; seeds 2 to 4</title>"), "{page}");
    assert!(
        page.contains("3 seeds (--seed 2 and the 2 after it)"),
        "{page}"
    );
    assert!(page.contains("% ±"), "the tables give intervals");
    assert!(!read(&one, "report.html").contains(" ±"));
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_file(file).unwrap();
}

/// A run whose recovery cannot be told (a fault from its first second, or too few seconds after
/// the last one for goodput to hold five) says "not measured" and why, where it said "never",
/// as if the system had stayed down; a comparison shows `-` for it.
#[test]
fn a_recovery_that_cannot_be_measured_is_not_called_never() {
    // GRAPH's fault ends at 3 s of a 5 s run: two seconds after it.
    let short = graph_file("recovery-short", GRAPH);
    let path = short.display().to_string();
    let text = run_args(&[&path]).unwrap();
    assert!(
        text.contains(
            "recovery  not measured: the run ends less than 5s after the last fault or load \
             step, too soon to see goodput hold"
        ),
        "{text}"
    );
    let text = run_args(&[&path, &path]).unwrap();
    let row = text.lines().find(|l| l.starts_with("recovered")).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["recovered", "-", "-"]
    );
    assert!(
        text.contains("recovery       not measured: the run ends less than 5s"),
        "{text}"
    );
    // With several seeds too, where a figure no seed had said "never".
    let text = run_args(&[&path, &path, "--seeds", "2"]).unwrap();
    let row = text.lines().find(|l| l.starts_with("recovered")).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["recovered", "-", "-"]
    );
    // A fault from the first second: no level before it.
    let from_start = graph_file(
        "recovery-from-start",
        &GRAPH
            .replace("from = \"1s\"", "from = \"0s\"")
            .replace("duration = \"5s\"", "duration = \"20s\""),
    );
    let text = run_args(&[&from_start.display().to_string()]).unwrap();
    assert!(
        text.contains(
            "recovery  not measured: no whole second with user arrivals comes before the first fault"
        ),
        "{text}"
    );
    std::fs::remove_file(short).unwrap();
    std::fs::remove_file(from_start).unwrap();
}

/// Faults only on a service no request reaches disturb nothing: no recovery is reported from
/// them, where the run said "recovery at 20s, 0s after the last fault".
#[test]
fn faults_on_a_service_no_request_reaches_have_nothing_to_recover_from() {
    let file = graph_file(
        "recovery-unreached",
        "[entry]\nservice = \"web\"\ntimeout = \"1s\"\nrate = 20\n[services.web]\n\
         [services.reports]\n[scenarios.s]\nduration = \"30s\"\n[[scenarios.s.faults]]\n\
         service = \"reports\"\nfrom = \"10s\"\nto = \"20s\"\ndown = true\n",
    );
    let text = run_args(&[&file.display().to_string()]).unwrap();
    assert!(
        text.contains(
            "recovery  nothing to recover from: no request reached reports, which the faults hit"
        ),
        "{text}"
    );
    std::fs::remove_file(file).unwrap();
}

/// `--no-scenario` runs a file that defines one scenario as it is, where the only scenario ran
/// by default and nothing could run the graph without it; with --scenario it is refused.
#[test]
fn no_scenario_runs_the_graph_as_it_is() {
    let file = graph_file("no-scenario", GRAPH);
    let path = file.display().to_string();
    let text = run_args(&[&path, "--no-scenario", "--format", "json"]).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(summary["scenario"], serde_json::Value::Null, "{text}");
    let text = run_args(&[&path, "--format", "json"]).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(summary["scenario"], "db-errors", "{text}");
    assert!(run_args(&[&path, "--no-scenario", "--scenario", "db-errors"]).is_err());
    std::fs::remove_file(file).unwrap();
}
