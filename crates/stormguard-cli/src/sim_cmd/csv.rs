//! `timeline.csv`: the run second by second, for a spreadsheet or a plotting script of the
//! reader's own, with the figures the report's charts draw.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::summary::{percentile_ms, step_goodput};
use super::Run;

/// A field as CSV wants it: quoted when it holds a comma, a quote or a line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn optional(value: Option<f64>) -> String {
    value.map_or(String::new(), |v| v.to_string())
}

/// One row per second of each run; with two runs a leading `run` column (`A` or `B`) and the
/// union of their services, a service a run lacks left empty.
pub(crate) fn timeline(runs: &[&Run]) -> String {
    let services: BTreeSet<&String> = runs
        .iter()
        .flat_map(|r| r.outcome.services.keys())
        .collect();
    let two = runs.len() > 1;
    let mut header: Vec<String> = Vec::new();
    if two {
        header.push("run".to_string());
    }
    header.extend(
        [
            "t",
            "user_rate",
            "goodput_rate",
            "goodput_share",
            "p50_ms",
            "p99_ms",
        ]
        .map(str::to_string),
    );
    header.extend(services.iter().map(|s| field(&format!("attempts:{s}"))));
    header.extend(services.iter().map(|s| field(&format!("max_queue:{s}"))));
    let mut out = header.join(",");
    out.push('\n');
    for (i, run) in runs.iter().enumerate() {
        for step in &run.outcome.timeline {
            let mut row: Vec<String> = Vec::new();
            if two {
                row.push(["A", "B"][i.min(1)].to_string());
            }
            row.push(step.at_s.to_string());
            row.push(step.users.to_string());
            row.push(step.succeeded.to_string());
            row.push(optional(step_goodput(step)));
            row.push(optional(percentile_ms(&step.latency_ns, 0.5)));
            row.push(optional(percentile_ms(&step.latency_ns, 0.99)));
            let has = |name: &str| run.outcome.services.contains_key(name);
            for map in [&step.attempts, &step.max_queue] {
                for s in &services {
                    row.push(if has(s) {
                        map.get(*s).copied().unwrap_or(0).to_string()
                    } else {
                        String::new()
                    });
                }
            }
            let _ = writeln!(out, "{}", row.join(","));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::summary::tests::{outcome, run};
    use super::*;

    #[test]
    fn one_row_per_second_with_the_charted_figures() {
        let csv = timeline(&[&run("g.toml", outcome())]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "t,user_rate,goodput_rate,goodput_share,p50_ms,p99_ms,\
             attempts:api,attempts:db,max_queue:api,max_queue:db"
        );
        assert_eq!(lines.len(), 13);
        assert_eq!(lines[5], "4,101,40,0.39604,214,224,101,303,12,30");
    }

    #[test]
    fn two_runs_are_told_apart_and_a_missing_service_is_empty() {
        let mut other = outcome();
        other.services.remove("db");
        for step in &mut other.timeline {
            step.attempts.remove("db");
        }
        let csv = timeline(&[&run("g.toml", outcome()), &run("g.toml", other)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("run,t,"), "{csv}");
        assert_eq!(lines.len(), 25);
        assert!(lines[1].starts_with("A,0,"), "{csv}");
        assert!(lines[13].starts_with("B,0,"), "{csv}");
        assert!(lines[13].ends_with(",100,,1,"), "{}", lines[13]);
    }

    #[test]
    fn odd_service_names_are_quoted() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("db"), "db");
    }
}
