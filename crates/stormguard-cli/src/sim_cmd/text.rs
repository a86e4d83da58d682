//! The text a person reads after `stormguard sim`: what the users saw first, then where the load
//! went, then the calls that made it; with two files, the two runs side by side and a verdict
//! per key figure, so "did the fix help?" is answered in one glance.

use std::fmt::Write as _;

use super::summary::{CallSummary, ServiceSummary};
use super::Run;

/// `12.3ms`, `1.94s`, `-` when there is no figure.
pub(crate) fn ms(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v >= 1000.0 => format!("{:.2}s", v / 1000.0),
        Some(v) if v >= 100.0 => format!("{v:.0}ms"),
        Some(v) => format!("{v:.1}ms"),
    }
}

/// `61.2%`, `-` when there is no figure.
pub(crate) fn percent(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

/// A count as an integer, anything else to two decimals, `-` when there is no figure.
fn number(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// `at 52s`, or `never`.
fn recovery(value: Option<f64>) -> String {
    value.map_or("never".to_string(), |s| format!("at {s}s"))
}

fn scenario_line(run: &Run) -> String {
    match (&run.summary.scenario, run.known_scenarios.is_empty()) {
        (Some(name), _) => format!("scenario {name}"),
        (None, true) => "no scenario".to_string(),
        (None, false) => format!(
            "no scenario (the file defines {}; pick one with --scenario)",
            run.known_scenarios.join(", ")
        ),
    }
}

/// What the recovery figure means for this run, in words.
fn recovery_words(run: &Run) -> String {
    let last_end = run.outcome.triggers.iter().map(|t| t.to).max();
    match (last_end, run.summary.recovered_at_s) {
        (None, _) => "nothing to recover from: no fault or load step".to_string(),
        (Some(end), Some(at)) => format!(
            "at {at}s, {}s after the last fault or load step ended",
            at - end.as_secs_f64()
        ),
        (Some(_), None) => {
            "never: goodput did not return to 95% of its level before the faults".to_string()
        }
    }
}

/// One run, as a summary and two tables.
pub(crate) fn single(run: &Run) -> String {
    let s = &run.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sim {}: {}, seed {}, {}s of user arrivals",
        s.file,
        scenario_line(run),
        s.seed,
        s.duration_s
    );
    let l = &s.user.latency_ms;
    let _ = writeln!(
        out,
        "users     {} requests, {} answered in time (goodput)\n\
         latency   p50 {}, p99 {}, p99.9 {} (of the answered ones)\n\
         recovery  {}\n",
        s.user.requests,
        percent(s.user.goodput),
        ms(l.p50),
        ms(l.p99),
        ms(l.p999),
        recovery_words(run)
    );
    let width = s.services.keys().map(String::len).max().unwrap_or(0).max(7);
    let _ = writeln!(
        out,
        "{:<width$}  {:>9}  {:>8}  {:>8}  {:>9}  {:>8}  {:>9}  {:>5}",
        "service", "attempts", "per user", "rejected", "timed out", "wasted s", "max queue", "util"
    );
    for (name, v) in &s.services {
        let _ = writeln!(
            out,
            "{name:<width$}  {:>9}  {:>8}  {:>8}  {:>9}  {:>8.2}  {:>9}  {:>5}",
            v.attempts,
            v.amplification
                .map_or("-".to_string(), |a| format!("{a:.2}")),
            v.rejected,
            v.timed_out,
            v.wasted_work_s,
            v.max_queue,
            format!("{:.0}%", v.utilization * 100.0)
        );
    }
    if !s.calls.is_empty() {
        let width = s.calls.keys().map(String::len).max().unwrap_or(0).max(4);
        let _ = writeln!(
            out,
            "\n{:<width$}  {:>9}  {:>8}  {:>7}  {:>7}  {:>8}",
            "call", "attempts", "retries", "denied", "hedges", "timeouts"
        );
        for (edge, c) in &s.calls {
            let _ = writeln!(
                out,
                "{edge:<width$}  {:>9}  {:>8}  {:>7}  {:>7}  {:>8}",
                c.attempts, c.retries, c.retries_denied, c.hedges, c.timeouts
            );
        }
    }
    out
}

/// Which way a figure should move for the change to be an improvement.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
    Neither,
}

/// The change from `a` to `b` in words: `-35% better`, `+12.0 pts worse`, `same`.
fn change(a: Option<f64>, b: Option<f64>, better: Better, points: bool) -> String {
    let (Some(a), Some(b)) = (a, b) else {
        return String::new();
    };
    if a == b {
        // Equal figures need no word: the eye skips the blank and lands on what changed.
        return String::new();
    }
    let (text, negligible) = if points {
        let d = (b - a) * 100.0;
        (format!("{d:+.1} pts"), d.abs() < 0.1)
    } else if a == 0.0 {
        (
            if b == 0.0 {
                String::new()
            } else {
                "from 0".to_string()
            },
            b == 0.0,
        )
    } else {
        let r = (b - a) / a * 100.0;
        (format!("{r:+.0}%"), r.abs() < 1.0)
    };
    if negligible {
        return "same".to_string();
    }
    let word = match (better, b > a) {
        (Better::Neither, _) => "",
        (Better::Higher, true) | (Better::Lower, false) => " better",
        _ => " worse",
    };
    format!("{text}{word}")
}

struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    fn row(&mut self, label: &str, a: String, b: String, change: String) {
        self.rows.push([label.to_string(), a, b, change]);
    }

    fn figure(&mut self, label: &str, a: Option<f64>, b: Option<f64>, better: Better) {
        self.row(label, number(a), number(b), change(a, b, better, false));
    }

    fn render(&self, out: &mut String) {
        let width = |i: usize| self.rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
        let (w0, w1, w2) = (width(0), width(1).max(6), width(2).max(6));
        for r in &self.rows {
            let line = format!("{:<w0$}  {:>w1$}  {:>w2$}  {}", r[0], r[1], r[2], r[3]);
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

/// The verdict on one key figure: which run does better, with both values.
fn verdict(
    out: &mut String,
    figure: &str,
    (a, b): (Option<f64>, Option<f64>),
    better: Better,
    show: fn(Option<f64>) -> String,
    unit: &str,
) {
    let word = match (a, b, better) {
        (Some(a), Some(b), _) if (b - a).abs() <= a.abs() * 0.01 => "about the same",
        (Some(a), Some(b), Better::Higher) if b > a => "better with B",
        (Some(a), Some(b), Better::Lower) if b < a => "better with B",
        (Some(_), Some(_), _) => "better with A",
        _ => "not comparable",
    };
    let _ = writeln!(
        out,
        "  {figure:<14} {word}: B {}, A {}{unit}",
        show(b),
        show(a)
    );
}

/// Two runs of the same arrivals and faults, side by side: A is FILE, B is FILE2.
pub(crate) fn side_by_side(a: &Run, b: &Run) -> String {
    let (sa, sb) = (&a.summary, &b.summary);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sim A = {} against B = {}: {} of A, seed {}, {}s of user arrivals, the same for both",
        sa.file,
        sb.file,
        scenario_line(a),
        sa.seed,
        sa.duration_s
    );
    let mut t = Table { rows: Vec::new() };
    t.row("", "A".to_string(), "B".to_string(), "change".to_string());
    let count = |v: u64| Some(v as f64);
    t.figure(
        "user requests",
        count(sa.user.requests),
        count(sb.user.requests),
        Better::Neither,
    );
    t.row(
        "goodput",
        percent(sa.user.goodput),
        percent(sb.user.goodput),
        change(sa.user.goodput, sb.user.goodput, Better::Higher, true),
    );
    let (la, lb) = (&sa.user.latency_ms, &sb.user.latency_ms);
    for (label, x, y) in [
        ("latency p50", la.p50, lb.p50),
        ("latency p99", la.p99, lb.p99),
        ("latency p99.9", la.p999, lb.p999),
    ] {
        t.row(label, ms(x), ms(y), change(x, y, Better::Lower, false));
    }
    t.row(
        "recovered",
        recovery(sa.recovered_at_s),
        recovery(sb.recovered_at_s),
        String::new(),
    );
    let names: std::collections::BTreeSet<&String> =
        sa.services.keys().chain(sb.services.keys()).collect();
    for name in names {
        let (x, y) = (sa.services.get(name), sb.services.get(name));
        t.row(
            &format!("service {name}"),
            String::new(),
            String::new(),
            String::new(),
        );
        let u = |f: fn(&ServiceSummary) -> u64, s: Option<&ServiceSummary>| s.map(|s| f(s) as f64);
        t.figure(
            "  attempts",
            u(|s| s.attempts, x),
            u(|s| s.attempts, y),
            Better::Lower,
        );
        t.figure(
            "  per user",
            x.and_then(|s| s.amplification),
            y.and_then(|s| s.amplification),
            Better::Lower,
        );
        t.figure(
            "  rejected",
            u(|s| s.rejected, x),
            u(|s| s.rejected, y),
            Better::Lower,
        );
        t.figure(
            "  timed out",
            u(|s| s.timed_out, x),
            u(|s| s.timed_out, y),
            Better::Lower,
        );
        t.figure(
            "  wasted work s",
            x.map(|s| s.wasted_work_s),
            y.map(|s| s.wasted_work_s),
            Better::Lower,
        );
        t.figure(
            "  max queue",
            u(|s| s.max_queue, x),
            u(|s| s.max_queue, y),
            Better::Lower,
        );
        let (ux, uy) = (x.map(|s| s.utilization), y.map(|s| s.utilization));
        t.row(
            "  utilization",
            percent(ux),
            percent(uy),
            change(ux, uy, Better::Neither, true),
        );
    }
    let edges: std::collections::BTreeSet<&String> =
        sa.calls.keys().chain(sb.calls.keys()).collect();
    for edge in edges {
        let (x, y) = (sa.calls.get(edge), sb.calls.get(edge));
        t.row(
            &format!("call {edge}"),
            String::new(),
            String::new(),
            String::new(),
        );
        let c = |f: fn(&CallSummary) -> u64, s: Option<&CallSummary>| s.map(|s| f(s) as f64);
        t.figure(
            "  attempts",
            c(|s| s.attempts, x),
            c(|s| s.attempts, y),
            Better::Lower,
        );
        t.figure(
            "  retries",
            c(|s| s.retries, x),
            c(|s| s.retries, y),
            Better::Neither,
        );
        t.figure(
            "  denied",
            c(|s| s.retries_denied, x),
            c(|s| s.retries_denied, y),
            Better::Neither,
        );
        t.figure(
            "  hedges",
            c(|s| s.hedges, x),
            c(|s| s.hedges, y),
            Better::Neither,
        );
        t.figure(
            "  timeouts",
            c(|s| s.timeouts, x),
            c(|s| s.timeouts, y),
            Better::Lower,
        );
    }
    out.push('\n');
    t.render(&mut out);
    out.push_str("\nverdict:\n");
    verdict(
        &mut out,
        "goodput",
        (sa.user.goodput, sb.user.goodput),
        Better::Higher,
        percent,
        "",
    );
    verdict(
        &mut out,
        "latency p99",
        (la.p99, lb.p99),
        Better::Lower,
        ms,
        "",
    );
    verdict(
        &mut out,
        "latency p99.9",
        (la.p999, lb.p999),
        Better::Lower,
        ms,
        "",
    );
    let recovered = match (sa.recovered_at_s, sb.recovered_at_s) {
        (_, _) if a.outcome.triggers.is_empty() => "nothing to recover from".to_string(),
        (None, None) => "neither recovered within the run".to_string(),
        (None, Some(at)) => format!("better with B: B recovered at {at}s, A never did"),
        (Some(at), None) => format!("better with A: A recovered at {at}s, B never did"),
        (Some(x), Some(y)) if x == y => format!("the same: both at {x}s"),
        (Some(x), Some(y)) => format!(
            "better with {}: B at {y}s, A at {x}s",
            if y < x { "B" } else { "A" }
        ),
    };
    let _ = writeln!(out, "  {:<14} {recovered}", "recovery");
    // The bottom of a storm is where A's load per user request is highest: name it.
    if let Some((name, x)) = sa.services.iter().max_by(|p, q| {
        p.1.amplification
            .partial_cmp(&q.1.amplification)
            .unwrap_or(std::cmp::Ordering::Equal)
    }) {
        let y = sb.services.get(name).and_then(|s| s.amplification);
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let figure = format!("load on {name}");
        let unit = " attempts per user request";
        verdict(
            &mut out,
            &figure,
            (x.amplification, y),
            Better::Lower,
            show,
            unit,
        );
    }
    let seconds = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}s"));
    verdict(
        &mut out,
        "wasted work",
        (Some(sa.wasted_work_s()), Some(sb.wasted_work_s())),
        Better::Lower,
        seconds,
        "",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::summary::tests::outcome;
    use super::super::summary::Summary;
    use super::*;

    fn run(file: &str, outcome: stormguard_sim::engine::Outcome) -> Run {
        Run {
            summary: Summary::new(file, Some("db-slow"), &outcome),
            outcome,
            known_scenarios: vec!["db-slow".to_string()],
        }
    }

    #[test]
    fn one_run_reads_users_first_then_services_and_calls() {
        let text = single(&run("today.toml", outcome()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "sim today.toml: scenario db-slow, seed 7, 12s of user arrivals"
        );
        assert!(lines[1].starts_with("users     1212 requests, "), "{text}");
        assert!(lines[2].starts_with("latency   p50 "), "{text}");
        assert!(
            text.contains("recovery  at 8s, 2s after the last fault or load step ended"),
            "{text}"
        );
        let db = lines.iter().find(|l| l.starts_with("db ")).unwrap();
        assert!(db.contains(" 0.33 ") && db.ends_with("12%"), "{db}");
        assert!(text.contains("api->db"), "{text}");
    }

    #[test]
    fn two_runs_show_the_change_and_a_verdict_per_key_figure() {
        let today = outcome();
        let mut fixed = outcome();
        fixed.users.succeeded = fixed.users.requests;
        fixed.services.get_mut("db").unwrap().attempts = today.users.requests;
        fixed.services.get_mut("db").unwrap().wasted_work_s = 0.0;
        fixed.recovered_at = Some(std::time::Duration::from_secs(6));
        let text = side_by_side(&run("today.toml", today), &run("fixed.toml", fixed));
        assert!(
            text.starts_with("sim A = today.toml against B = fixed.toml: scenario db-slow"),
            "{text}"
        );
        let goodput = text.lines().find(|l| l.starts_with("goodput ")).unwrap();
        assert!(goodput.ends_with("pts better"), "{goodput}");
        assert!(
            text.contains("  goodput        better with B: B 100.0%, A "),
            "{text}"
        );
        assert!(
            text.contains("  recovery       better with B: B at 6s, A at 8s"),
            "{text}"
        );
        assert!(
            text.contains(
                "  load on db     better with B: B 1.00, A 1.50 attempts per user request\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  wasted work    better with B: B 0.50s, A 0.83s"),
            "{text}"
        );
        assert!(text.contains("  latency p99    about the same"), "{text}");
    }

    #[test]
    fn changes_say_which_way_is_better() {
        assert_eq!(
            change(Some(100.0), Some(65.0), Better::Lower, false),
            "-35% better"
        );
        assert_eq!(
            change(Some(0.5), Some(0.62), Better::Higher, true),
            "+12.0 pts better"
        );
        assert_eq!(
            change(Some(10.0), Some(10.05), Better::Lower, false),
            "same"
        );
        assert_eq!(change(Some(10.0), Some(10.0), Better::Lower, false), "");
        assert_eq!(
            change(Some(0.0), Some(3.0), Better::Lower, false),
            "from 0 worse"
        );
        assert_eq!(change(None, Some(3.0), Better::Lower, false), "");
        assert_eq!(ms(Some(1940.0)), "1.94s");
        assert_eq!(ms(Some(12.34)), "12.3ms");
    }
}
