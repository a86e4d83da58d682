//! Two runs side by side, A = FILE and B = FILE2 on the same arrivals and faults: every figure
//! with its change, then a verdict per key figure, so "did the fix help?" is answered in one
//! glance.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use super::summary::{CallSummary, ServiceSummary};
use super::text::{ms, number, percent, recovery, scenario_line};
use super::Run;

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

    fn heading(&mut self, label: &str) {
        self.row(label, String::new(), String::new(), String::new());
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

/// A service's figures in the table, with the way each should move.
type ServiceRow = (&'static str, fn(&ServiceSummary) -> Option<f64>, Better);

const SERVICE_ROWS: [ServiceRow; 6] = [
    ("  attempts", |s| Some(s.attempts as f64), Better::Lower),
    ("  per user", |s| s.amplification, Better::Lower),
    ("  rejected", |s| Some(s.rejected as f64), Better::Lower),
    ("  timed out", |s| Some(s.timed_out as f64), Better::Lower),
    ("  wasted work s", |s| Some(s.wasted_work_s), Better::Lower),
    ("  max queue", |s| Some(s.max_queue as f64), Better::Lower),
];

/// A call's figures; retries, denials and hedges are means, not ends, so neither way is better.
type CallRow = (&'static str, fn(&CallSummary) -> f64, Better);

const CALL_ROWS: [CallRow; 5] = [
    ("  attempts", |c| c.attempts as f64, Better::Lower),
    ("  retries", |c| c.retries as f64, Better::Neither),
    ("  denied", |c| c.retries_denied as f64, Better::Neither),
    ("  hedges", |c| c.hedges as f64, Better::Neither),
    ("  timeouts", |c| c.timeouts as f64, Better::Lower),
];

/// When the scenario acted on the run: from the start of its first fault or load step to the end
/// of its last; `None` when it has none.
pub(crate) fn fault_window(run: &Run) -> Option<(Duration, Duration)> {
    let triggers = &run.outcome.triggers;
    let from = triggers.iter().map(|t| t.from).min()?;
    let to = triggers.iter().map(|t| t.to).max()?;
    Some((from, to))
}

/// Share of the user requests that arrived in `[from, to)` answered in time, from the 1 s
/// timeline (a second is counted in the window it starts in); `None` when none arrived then.
///
/// Goodput over the whole run dilutes a fault with the calm around it; over the fault, it says
/// what users saw while it lasted, and after it, whether the system came back or the storm
/// outlived its trigger.
pub(crate) fn goodput_between(run: &Run, from: Duration, to: Duration) -> Option<f64> {
    let (mut users, mut succeeded) = (0u64, 0u64);
    for step in &run.outcome.timeline {
        let at = Duration::from_secs(step.at_s);
        if at >= from && at < to {
            users += step.users;
            succeeded += step.succeeded;
        }
    }
    (users > 0).then(|| succeeded as f64 / users as f64)
}

/// Goodput during the fault window and after it (to the end of arrivals), for one run;
/// `None`s when the scenario has no fault or load step.
pub(crate) fn goodput_around_fault(run: &Run) -> (Option<f64>, Option<f64>) {
    match fault_window(run) {
        Some((from, to)) => (
            goodput_between(run, from, to),
            goodput_between(run, to, run.outcome.duration),
        ),
        None => (None, None),
    }
}

/// `15s-30s`.
fn window_text((from, to): (Duration, Duration)) -> String {
    format!("{}s-{}s", from.as_secs_f64(), to.as_secs_f64())
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
    let window = fault_window(a);
    let (during_a, after_a) = goodput_around_fault(a);
    let (during_b, after_b) = goodput_around_fault(b);
    if let Some((from, to)) = window {
        for (label, x, y) in [
            (
                format!("  during {}", window_text((from, to))),
                during_a,
                during_b,
            ),
            (format!("  after {}s", to.as_secs_f64()), after_a, after_b),
        ] {
            t.row(
                &label,
                percent(x),
                percent(y),
                change(x, y, Better::Higher, true),
            );
        }
    }
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
    let names: BTreeSet<&String> = sa.services.keys().chain(sb.services.keys()).collect();
    for name in names {
        let (x, y) = (sa.services.get(name), sb.services.get(name));
        t.heading(&format!("service {name}"));
        for (label, figure, better) in SERVICE_ROWS {
            t.figure(label, x.and_then(figure), y.and_then(figure), better);
        }
        // Only where a queue dropped stale work, so a comparison of plain queues is as before.
        let dropped = |s: Option<&ServiceSummary>| s.map(|s| s.queue_dropped as f64);
        if dropped(x).unwrap_or(0.0) + dropped(y).unwrap_or(0.0) > 0.0 {
            t.figure("  queue dropped", dropped(x), dropped(y), Better::Neither);
        }
        let (ux, uy) = (x.map(|s| s.utilization), y.map(|s| s.utilization));
        let shift = change(ux, uy, Better::Neither, true);
        t.row("  utilization", percent(ux), percent(uy), shift);
    }
    let edges: BTreeSet<&String> = sa.calls.keys().chain(sb.calls.keys()).collect();
    for edge in edges {
        let (x, y) = (sa.calls.get(edge), sb.calls.get(edge));
        t.heading(&format!("call {edge}"));
        for (label, figure, better) in CALL_ROWS {
            t.figure(label, x.map(figure), y.map(figure), better);
        }
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
    if window.is_some() {
        for (figure, pair) in [
            ("  in the fault", (during_a, during_b)),
            ("  after it", (after_a, after_b)),
        ] {
            verdict(&mut out, figure, pair, Better::Higher, percent, "");
        }
    }
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
    // The bottom of a storm is where the load per user request is highest in either run: name
    // it (a fix that adds load, such as hedging, must show where it lands too).
    let peak = |name: &String, a: Option<f64>| {
        let b = sb.services.get(name).and_then(|s| s.amplification);
        a.unwrap_or(0.0).max(b.unwrap_or(0.0))
    };
    if let Some((name, x)) = sa.services.iter().max_by(|p, q| {
        peak(p.0, p.1.amplification)
            .partial_cmp(&peak(q.0, q.1.amplification))
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
    use super::super::summary::tests::{outcome, run};
    use super::*;

    #[test]
    fn two_runs_show_the_change_and_a_verdict_per_key_figure() {
        let today = outcome();
        let mut fixed = outcome();
        fixed.users.succeeded = fixed.users.requests;
        for step in &mut fixed.timeline {
            step.succeeded = step.users;
        }
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
        assert!(!text.contains("queue dropped"), "{text}");
        // The fault is from 3 s to 6 s: 40 of about 100 users a second answered meanwhile,
        // against all of them with B; after it, 99 of about 100 in A.
        let during = text
            .lines()
            .find(|l| l.starts_with("  during 3s-6s "))
            .unwrap();
        assert!(during.ends_with("pts better"), "{during}");
        let after = text.lines().find(|l| l.starts_with("  after 6s ")).unwrap();
        assert!(after.contains(" 99.0% "), "{after}");
        assert!(
            text.contains("    in the fault better with B: B 100.0%, A 39.6%"),
            "{text}"
        );
    }

    #[test]
    fn goodput_is_counted_by_the_second_users_arrived_in() {
        let run = run("g.toml", outcome());
        assert_eq!(
            fault_window(&run),
            Some((Duration::from_secs(3), Duration::from_secs(6)))
        );
        let between =
            |from, to| goodput_between(&run, Duration::from_secs(from), Duration::from_secs(to));
        // Seconds 3, 4 and 5: 40 answered of 100, 101 and 102.
        assert_eq!(between(3, 6), Some(120.0 / 303.0));
        assert_eq!(between(20, 30), None);
        let (during, after) = goodput_around_fault(&run);
        assert_eq!(during, between(3, 6));
        assert_eq!(after, between(6, 12));
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

    #[test]
    fn queue_drops_are_a_row_only_where_a_queue_dropped() {
        let today = outcome();
        let mut codel = outcome();
        codel.services.get_mut("db").unwrap().queue_dropped = 40;
        let text = side_by_side(&run("today.toml", today), &run("codel.toml", codel));
        let row = text
            .lines()
            .find(|l| l.starts_with("  queue dropped"))
            .unwrap();
        assert!(row.contains(" 0 ") && row.contains(" 40 "), "{row}");
    }
}
