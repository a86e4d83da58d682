//! `stormguard demo` as a newcomer runs it: the built binary, into a directory of its own.

#[path = "support/bounded.rs"]
mod bounded;

use std::path::PathBuf;
use std::time::Duration;

use bounded::within as stormguard;

/// A directory under the system's temp dir for one test, emptied first.
fn out_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stormguard-demo-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The A and B columns of the comparison's row that starts with `label`, under `after` (a
/// heading such as `service db`, or the start of the table).
fn row(text: &str, after: &str, label: &str) -> (f64, f64) {
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in\n{text}"));
    let line = text[start..]
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} after {after:?} in\n{text}"));
    let figures: Vec<f64> = line[label.len()..]
        .split_whitespace()
        .take(2)
        .map(|f| f.trim_end_matches('%').parse().unwrap())
        .collect();
    (figures[0], figures[1])
}

#[test]
fn the_demo_shows_as_found_stuck_after_the_fault_and_stormguard_recovering() {
    let dir = out_dir("offline");
    let dir_arg = dir.display().to_string();
    let (code, out, err) = stormguard(&["demo", "--out", &dir_arg], Duration::from_secs(120));
    assert_eq!(code, 0, "{out}{err}");
    for heading in [
        "== 1. stormguard check ",
        "== 2. stormguard check --fix: ",
        "== 3. stormguard sim: db slows down x10 from 15s to 20s",
    ] {
        assert!(out.contains(heading), "{heading:?} in\n{out}");
    }
    // What check finds in the graph as found, by the text renderer.
    assert!(
        out.contains("error[retry-amplification] db: db receives up to 54"),
        "{out}"
    );
    assert!(out.contains("the fixed graph: 0 errors"), "{out}");
    // Column A is as found, B with stormguard.
    let (load_a, load_b) = row(&out, "service db", "  per user");
    assert!(
        load_b < load_a,
        "db load per user request: A {load_a}, B {load_b}"
    );
    // The metastable failure and its cure: after the 5 s trigger, as found stays down while
    // with stormguard is back.
    let (after_a, after_b) = row(&out, "goodput", "  after 20s");
    assert!(
        after_a < 5.0 && after_b > 95.0,
        "goodput after the fault: A {after_a}, B {after_b}"
    );
    let (wasted_a, wasted_b) = row(&out, "service db", "  wasted work s");
    assert!(
        wasted_b < wasted_a,
        "wasted work: A {wasted_a}, B {wasted_b}"
    );
    assert!(
        out.contains("recovery        better with B: B recovered at 20s, A never did"),
        "{out}"
    );
    for figure in [
        "latency p99 ",
        "recovered ",
        "  wasted work s",
        "  during 15s-20s",
    ] {
        assert!(out.contains(figure), "{figure:?} in\n{out}");
    }
    assert!(
        out.contains("In short: db was slow for 5s (15s to 20s), then as fast as before."),
        "{out}"
    );
    for file in ["as-found.toml", "with-stormguard.toml", "report.html"] {
        let path = dir.join(file);
        assert!(path.exists(), "{}", path.display());
        assert!(
            out.contains(&path.display().to_string()),
            "{file} in\n{out}"
        );
    }
    let next =
        format!(" sim {dir_arg}/as-found.toml {dir_arg}/with-stormguard.toml --scenario db-slow");
    assert!(out.contains(&next), "{out}");
    // The graph the demo wrote is the committed one, fixed as `check --fix` fixes it.
    let committed = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/../../examples/graphs/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(read("as-found.toml"), committed("storefront-as-found.toml"));
    assert_eq!(
        read("with-stormguard.toml"),
        committed("storefront-with-stormguard.toml")
    );
    // Off a terminal, no progress bar.
    assert!(err.is_empty(), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_live_demo_reports_what_the_proxy_did_from_its_metrics() {
    let dir = out_dir("live");
    let dir_arg = dir.display().to_string();
    let argv = ["demo", "--out", &dir_arg, "--live", "--live-duration", "2s"];
    let (code, out, err) = stormguard(&argv, Duration::from_secs(120));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("== 4. stormguard proxy, live: "), "{out}");
    let rate = out
        .lines()
        .find_map(|l| l.strip_prefix("  success rate        "))
        .unwrap_or_else(|| panic!("no success rate in\n{out}"));
    let percent: f64 = rate.split('%').next().unwrap().parse().unwrap();
    // Three of four instances answer, and the proxy routes around the fourth.
    assert!(percent > 80.0, "{rate}");
    for figure in [
        "  attempts            ",
        "  retries             ",
        "  denied by budget    ",
        "  hedges              ",
        "  ejections          ",
    ] {
        assert!(out.contains(figure), "{figure:?} in\n{out}");
    }
    assert!(dir.join("live-proxy.toml").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn live_duration_needs_live() {
    let (code, _, err) = stormguard(&["demo", "--live-duration", "2s"], Duration::from_secs(30));
    assert_eq!(code, 2, "{err}");
}
