//! Two runs side by side, A = FILE and B = FILE2 on the same arrivals and faults: every figure
//! with its change, then a verdict per key figure, so "did the fix help?" is answered in one
//! glance.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use super::seeds::{Interval, Unit};
use super::summary::{CallSummary, ServiceSummary, Summary};
use super::text::{ms, no_recovery_figure, number, percent, recovery_cell, scenario_line};
use super::Run;

/// Which way a figure should move for the change to be an improvement.
#[derive(Clone, Copy)]
pub(crate) enum Better {
    Higher,
    Lower,
    Neither,
    /// Lower, but only above a level, A's and B's: a service's or call's attempts against the
    /// attempts its users bring when nothing fails (its normal load). What exceeds that level is
    /// amplification, retries and hedges; below it are requests that never got there because
    /// something above failed, which is no improvement. So the word goes by the excess: a fix
    /// that lets more requests through to a service is not worse for it.
    LowerAbove(f64, f64),
}

impl Better {
    /// How attempts read: [`Better::LowerAbove`] each run's normal load (`normal`, per user
    /// request) times `per` (the run's user requests for a count, 1 for a figure per user),
    /// where both are known; `Lower` otherwise.
    fn attempts(normal: (Option<f64>, Option<f64>), per: (f64, f64)) -> Better {
        match normal {
            (Some(a), Some(b)) => Better::LowerAbove(a * per.0, b * per.1),
            _ => Better::Lower,
        }
    }
}

/// What `x` exceeds `level` by; none within 1% of it, the noise of a run's last users (whose
/// requests the end of the run cuts short) and of rounding.
fn excess(x: f64, level: f64) -> f64 {
    if x > level * 1.01 {
        x - level
    } else {
        0.0
    }
}

/// Which run exceeds its level less: `Less` when B does.
fn by_excess(a: f64, b: f64, (level_a, level_b): (f64, f64)) -> std::cmp::Ordering {
    excess(b, level_b)
        .partial_cmp(&excess(a, level_a))
        .unwrap_or(std::cmp::Ordering::Equal)
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
        (Better::LowerAbove(x, y), _) => match by_excess(a, b, (x, y)) {
            std::cmp::Ordering::Less => " better",
            std::cmp::Ordering::Greater => " worse",
            std::cmp::Ordering::Equal => "",
        },
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

    fn render(&self, out: &mut String) {
        // In characters, as `format!` pads: a byte count put every row holding a "±" (the
        // intervals of --seeds) or a name with an accent out of line.
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(0), width(1).max(6), width(2).max(6));
        for r in &self.rows {
            let line = format!("{:<w0$}  {:>w1$}  {:>w2$}  {}", r[0], r[1], r[2], r[3]);
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

/// The word of a verdict with one seed: within 1% is about the same.
fn one_seed_word(a: Option<f64>, b: Option<f64>, better: Better) -> &'static str {
    match (a, b, better) {
        (Some(a), Some(b), _) if (b - a).abs() <= a.abs() * 0.01 => "about the same",
        (Some(a), Some(b), Better::LowerAbove(x, y)) => match by_excess(a, b, (x, y)) {
            std::cmp::Ordering::Less => "better with B",
            std::cmp::Ordering::Greater => "better with A",
            // Figures apart, each at its own normal load (a graph of fewer calls per request
            // has a lower one): "about the same" beside 21.29 and 39.86 read as an error.
            std::cmp::Ordering::Equal if excess(a, x) == 0.0 && excess(b, y) == 0.0 => {
                "neither above its normal load"
            }
            std::cmp::Ordering::Equal => "about the same",
        },
        (Some(a), Some(b), Better::Higher) if b > a => "better with B",
        (Some(a), Some(b), Better::Lower) if b < a => "better with B",
        (Some(_), Some(_), _) => "better with A",
        _ => "not comparable",
    }
}

/// The word of a verdict over several seeds: better or worse only when the two 95% intervals
/// do not overlap, since a difference inside them is one that another seed could make alone.
fn seeds_word(a: Option<&Interval>, b: Option<&Interval>, better: Better) -> &'static str {
    match (a, b) {
        (Some(a), Some(b)) if a.overlaps(b) => "about the same",
        (Some(a), Some(b)) => one_seed_word(Some(a.mean), Some(b.mean), better),
        _ => "not comparable",
    }
}

/// Which run does better on `key`: over one seed by the figures, over several by their
/// intervals.
fn word_of(
    (sa, sb): (&Summary, &Summary),
    key: &str,
    (a, b): (Option<f64>, Option<f64>),
    better: Better,
) -> &'static str {
    match sa.seeds {
        None => one_seed_word(a, b, better),
        Some(_) => seeds_word(sa.intervals.get(key), sb.intervals.get(key), better),
    }
}

/// The verdict on one key figure, `key` of [`figures`] (with a `suffix` after the values), its
/// name padded to `width`: which run does better, with both values (means ± half-widths with
/// several seeds).
fn verdict(
    out: &mut String,
    (figure, suffix, width): (&str, &str, usize),
    (sa, sb): (&Summary, &Summary),
    key: &str,
    (a, b): (Option<f64>, Option<f64>),
    better: Better,
    (show, unit): (fn(Option<f64>) -> String, Unit),
) {
    let word = word_of((sa, sb), key, (a, b), better);
    let _ = writeln!(
        out,
        "  {figure:<width$} {word}: B {}, A {}{suffix}",
        sb.cell(key, show(b), unit),
        sa.cell(key, show(a), unit)
    );
}

/// The change column of `key`: with several seeds, the change of the means, whose better or
/// worse becomes "about the same" where the intervals overlap.
fn change_of(
    (sa, sb): (&Summary, &Summary),
    key: &str,
    (a, b): (Option<f64>, Option<f64>),
    better: Better,
    points: bool,
) -> String {
    if sa.seeds.is_none() {
        return change(a, b, better, points);
    }
    let (Some(x), Some(y)) = (sa.intervals.get(key), sb.intervals.get(key)) else {
        return String::new();
    };
    let text = change(Some(x.mean), Some(y.mean), better, points);
    match text
        .strip_suffix(" better")
        .or_else(|| text.strip_suffix(" worse"))
    {
        Some(stem) if x.overlaps(y) => format!("{stem} about the same"),
        _ => text,
    }
}

/// A service's figures in the table: label, key in [`figures`], value, the way it should move,
/// and how its mean over seeds reads.
pub(crate) type ServiceRow = (
    &'static str,
    &'static str,
    fn(&ServiceSummary) -> Option<f64>,
    Better,
    Unit,
);

pub(crate) const SERVICE_ROWS: [ServiceRow; 6] = [
    (
        "  attempts",
        "attempts",
        |s| Some(s.attempts as f64),
        Better::Lower,
        Unit::Count,
    ),
    (
        "  per user",
        "amplification",
        |s| s.amplification,
        Better::Lower,
        Unit::Decimal,
    ),
    (
        "  rejected",
        "rejected",
        |s| Some(s.rejected as f64),
        Better::Lower,
        Unit::Count,
    ),
    (
        "  timed out",
        "timed_out",
        |s| Some(s.timed_out as f64),
        Better::Lower,
        Unit::Count,
    ),
    (
        "  wasted work s",
        "wasted_work_s",
        |s| Some(s.wasted_work_s),
        Better::Lower,
        Unit::Decimal,
    ),
    (
        "  max queue",
        "max_queue",
        |s| Some(s.max_queue as f64),
        Better::Lower,
        Unit::Count,
    ),
];

/// A call's figures; retries, denials and hedges are means, not ends, so neither way is better.
type CallRow = (&'static str, &'static str, fn(&CallSummary) -> f64, Better);

const CALL_ROWS: [CallRow; 5] = [
    (
        "  attempts",
        "attempts",
        |c| c.attempts as f64,
        Better::Lower,
    ),
    (
        "  retries",
        "retries",
        |c| c.retries as f64,
        Better::Neither,
    ),
    (
        "  denied",
        "retries_denied",
        |c| c.retries_denied as f64,
        Better::Neither,
    ),
    ("  hedges", "hedges", |c| c.hedges as f64, Better::Neither),
    (
        "  timeouts",
        "timeouts",
        |c| c.timeouts as f64,
        Better::Lower,
    ),
];

/// Every figure of a run that the comparison shows, by a stable name (`user.goodput`,
/// `services.db.attempts`, `calls.api->db.retries`): what `--seeds` reduces to intervals, and
/// the keys of `intervals` in the JSON. `None`: the run has no such figure (no user answered,
/// never recovered).
pub(crate) fn figures(run: &Run) -> BTreeMap<String, Option<f64>> {
    let s = &run.summary;
    let l = &s.user.latency_ms;
    let mut out = BTreeMap::new();
    let mut put = |key: String, value: Option<f64>| {
        out.insert(key, value);
    };
    put("user.requests".into(), Some(s.user.requests as f64));
    put("user.goodput".into(), s.user.goodput);
    if fault_window(run).is_some() {
        let (during, after) = goodput_around_fault(run);
        put("user.goodput_during_fault".into(), during);
        put("user.goodput_after_fault".into(), after);
    }
    for (name, value) in [
        ("p50", l.p50),
        ("p90", l.p90),
        ("p99", l.p99),
        ("p999", l.p999),
        ("max", l.max),
    ] {
        put(format!("user.latency_ms.{name}"), value);
    }
    put("recovered_at_s".into(), s.recovered_at_s);
    put("wasted_work_s".into(), Some(s.wasted_work_s()));
    for (name, service) in &s.services {
        for (_, key, figure, _, _) in SERVICE_ROWS {
            put(format!("services.{name}.{key}"), figure(service));
        }
        put(
            format!("services.{name}.utilization"),
            Some(service.utilization),
        );
        put(
            format!("services.{name}.queue_dropped"),
            Some(service.queue_dropped as f64),
        );
    }
    for (edge, call) in &s.calls {
        for (_, key, figure, _) in CALL_ROWS {
            put(format!("calls.{edge}.{key}"), Some(figure(call)));
        }
    }
    out
}

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

/// The windows the scenario acted in: its faults' and load steps', those that overlap or touch
/// merged, in time order. Goodput "during the fault" is over these, not over the span from the
/// first to the last: two 1 s faults at 5 s and 30 s read "during 5s-31s", 24 calm seconds in
/// it.
pub(crate) fn fault_windows(run: &Run) -> Vec<(Duration, Duration)> {
    let mut windows: Vec<(Duration, Duration)> = run
        .outcome
        .triggers
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    windows.sort();
    let mut merged: Vec<(Duration, Duration)> = Vec::with_capacity(windows.len());
    for (from, to) in windows {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
}

/// Goodput during the fault windows ([`fault_windows`]) and after the last (to the end of
/// arrivals), for one run; `None`s when the scenario has no fault or load step.
pub(crate) fn goodput_around_fault(run: &Run) -> (Option<f64>, Option<f64>) {
    let Some((_, end)) = fault_window(run) else {
        return (None, None);
    };
    let windows = fault_windows(run);
    let (mut users, mut succeeded) = (0u64, 0u64);
    for step in &run.outcome.timeline {
        let at = Duration::from_secs(step.at_s);
        if windows.iter().any(|&(from, to)| at >= from && at < to) {
            users += step.users;
            succeeded += step.succeeded;
        }
    }
    let during = (users > 0).then(|| succeeded as f64 / users as f64);
    (during, goodput_between(run, end, run.outcome.duration))
}

/// `15s-30s`; several windows joined, `5s-6s, 30s-31s` (past three, how many more).
fn windows_text(windows: &[(Duration, Duration)]) -> String {
    let mut parts: Vec<String> = windows
        .iter()
        .take(3)
        .map(|(from, to)| format!("{}s-{}s", from.as_secs_f64(), to.as_secs_f64()))
        .collect();
    if windows.len() > 3 {
        parts.push(format!("{} more", windows.len() - 3));
    }
    parts.join(", ")
}

/// Two runs of the same arrivals and faults, side by side: A is FILE, B is FILE2. With several
/// seeds, every figure is a mean ± its 95% half-width and the verdicts weigh the intervals.
pub(crate) fn side_by_side(a: &Run, b: &Run) -> String {
    let (sa, sb) = (&a.summary, &b.summary);
    let both = (sa, sb);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sim A = {} against B = {}: {} of A, {}, {}s of user arrivals, the same for both",
        sa.file,
        sb.file,
        scenario_line(a),
        sa.seed_words(),
        sa.duration_s
    );
    if let Some(note) = seeds_note(sa) {
        let _ = writeln!(out, "{note}");
    }
    let mut t = Table { rows: Vec::new() };
    t.row("", "A".to_string(), "B".to_string(), "change".to_string());
    // A figure of both runs: its key, the one-seed values, how it reads and which way is better.
    let figure = |t: &mut Table,
                  label: &str,
                  key: &str,
                  (x, y): (Option<f64>, Option<f64>),
                  (show, unit): (fn(Option<f64>) -> String, Unit),
                  better: Better,
                  points: bool| {
        t.row(
            label,
            sa.cell(key, show(x), unit),
            sb.cell(key, show(y), unit),
            change_of(both, key, (x, y), better, points),
        );
    };
    let count = |v: u64| Some(v as f64);
    let counted = (number as fn(Option<f64>) -> String, Unit::Count);
    let shares = (percent as fn(Option<f64>) -> String, Unit::Percent);
    figure(
        &mut t,
        "user requests",
        "user.requests",
        (count(sa.user.requests), count(sb.user.requests)),
        counted,
        Better::Neither,
        false,
    );
    figure(
        &mut t,
        "goodput",
        "user.goodput",
        (sa.user.goodput, sb.user.goodput),
        shares,
        Better::Higher,
        true,
    );
    let window = fault_window(a);
    let (during_a, after_a) = goodput_around_fault(a);
    let (during_b, after_b) = goodput_around_fault(b);
    if let Some((_, to)) = window {
        for (label, key, x, y) in [
            (
                format!("  during {}", windows_text(&fault_windows(a))),
                "user.goodput_during_fault",
                during_a,
                during_b,
            ),
            (
                format!("  after {}s", to.as_secs_f64()),
                "user.goodput_after_fault",
                after_a,
                after_b,
            ),
        ] {
            figure(&mut t, &label, key, (x, y), shares, Better::Higher, true);
        }
    }
    let (la, lb) = (&sa.user.latency_ms, &sb.user.latency_ms);
    for (label, key, x, y) in [
        ("latency p50", "user.latency_ms.p50", la.p50, lb.p50),
        ("latency p99", "user.latency_ms.p99", la.p99, lb.p99),
        ("latency p99.9", "user.latency_ms.p999", la.p999, lb.p999),
    ] {
        figure(
            &mut t,
            label,
            key,
            (x, y),
            (ms, Unit::Ms),
            Better::Lower,
            false,
        );
    }
    t.row(
        "recovered",
        recovery_cell(a),
        recovery_cell(b),
        String::new(),
    );
    // What a count of attempts is judged against: each run's users times the normal load.
    let users = (sa.user.requests as f64, sb.user.requests as f64);
    let names: BTreeSet<&String> = sa.services.keys().chain(sb.services.keys()).collect();
    for name in names {
        let (x, y) = (sa.services.get(name), sb.services.get(name));
        t.heading(&format!("service {name}"));
        let normal = (
            x.and_then(|s| s.normal_per_user),
            y.and_then(|s| s.normal_per_user),
        );
        for (label, key, value, better, unit) in SERVICE_ROWS {
            let better = match key {
                "attempts" => Better::attempts(normal, users),
                "amplification" => Better::attempts(normal, (1.0, 1.0)),
                _ => better,
            };
            let key = format!("services.{name}.{key}");
            let pair = (x.and_then(value), y.and_then(value));
            figure(&mut t, label, &key, pair, (number, unit), better, false);
        }
        // Only where a queue dropped stale work, so a comparison of plain queues is as before.
        let dropped = |s: Option<&ServiceSummary>| s.map(|s| s.queue_dropped as f64);
        if dropped(x).unwrap_or(0.0) + dropped(y).unwrap_or(0.0) > 0.0 {
            let key = format!("services.{name}.queue_dropped");
            let pair = (dropped(x), dropped(y));
            figure(
                &mut t,
                "  queue dropped",
                &key,
                pair,
                counted,
                Better::Neither,
                false,
            );
        }
        let (ux, uy) = (x.map(|s| s.utilization), y.map(|s| s.utilization));
        let key = format!("services.{name}.utilization");
        figure(
            &mut t,
            "  utilization",
            &key,
            (ux, uy),
            shares,
            Better::Neither,
            true,
        );
    }
    let edges: BTreeSet<&String> = sa.calls.keys().chain(sb.calls.keys()).collect();
    for edge in edges {
        let (x, y) = (sa.calls.get(edge), sb.calls.get(edge));
        t.heading(&format!("call {edge}"));
        let normal = (
            x.and_then(|c| c.normal_per_user),
            y.and_then(|c| c.normal_per_user),
        );
        for (label, key, value, better) in CALL_ROWS {
            let better = match key {
                "attempts" => Better::attempts(normal, users),
                _ => better,
            };
            let key = format!("calls.{edge}.{key}");
            let pair = (x.map(value), y.map(value));
            figure(&mut t, label, &key, pair, counted, better, false);
        }
    }
    out.push('\n');
    t.render(&mut out);
    let _ = writeln!(
        out,
        "latency is of the requests answered in time: {} of A's, {} of B's",
        sa.cell("user.goodput", percent(sa.user.goodput), Unit::Percent),
        sb.cell("user.goodput", percent(sb.user.goodput), Unit::Percent)
    );
    out.push_str("\nverdict:\n");
    // The bottom of a storm is where the load per user request is highest in either run: name
    // it (a fix that adds load, such as hedging, must show where it lands too).
    let peak_load = |name: &String, a: Option<f64>| {
        let b = sb.services.get(name).and_then(|s| s.amplification);
        a.unwrap_or(0.0).max(b.unwrap_or(0.0))
    };
    let peak = sa.services.iter().max_by(|p, q| {
        peak_load(p.0, p.1.amplification)
            .partial_cmp(&peak_load(q.0, q.1.amplification))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    // Every figure's name in one column, as wide as the longest ("load on" a long name).
    let width = peak
        .map_or(0, |(name, _)| "load on ".len() + name.chars().count())
        .max(14);
    verdict(
        &mut out,
        ("goodput", "", width),
        both,
        "user.goodput",
        (sa.user.goodput, sb.user.goodput),
        Better::Higher,
        shares,
    );
    if window.is_some() {
        for (figure, key, pair) in [
            (
                "  in the fault",
                "user.goodput_during_fault",
                (during_a, during_b),
            ),
            ("  after it", "user.goodput_after_fault", (after_a, after_b)),
        ] {
            verdict(
                &mut out,
                (figure, "", width),
                both,
                key,
                pair,
                Better::Higher,
                shares,
            );
        }
    }
    // Latency is of the answered requests: a run that fails most of its users keeps only its
    // fast answers, and its tail looks short. Where the other run answered more, the faster
    // tail is not called better (the demo's as-found graph, answering a quarter of its users,
    // read "latency p99 better with A").
    let goodput_word = word_of(
        both,
        "user.goodput",
        (sa.user.goodput, sb.user.goodput),
        Better::Higher,
    );
    for (figure, key, pair) in [
        ("latency p99", "user.latency_ms.p99", (la.p99, lb.p99)),
        ("latency p99.9", "user.latency_ms.p999", (la.p999, lb.p999)),
    ] {
        let word = word_of(both, key, pair, Better::Lower);
        let fewer = match (word, goodput_word) {
            ("better with A", "better with B") => Some("A"),
            ("better with B", "better with A") => Some("B"),
            _ => None,
        };
        if let Some(side) = fewer {
            let _ = writeln!(
                out,
                "  {figure:<width$} not compared ({side} answered fewer in time: B {}, A {}): \
                 B {}, A {}",
                sb.cell("user.goodput", percent(sb.user.goodput), Unit::Percent),
                sa.cell("user.goodput", percent(sa.user.goodput), Unit::Percent),
                sb.cell(key, ms(pair.1), Unit::Ms),
                sa.cell(key, ms(pair.0), Unit::Ms)
            );
            continue;
        }
        verdict(
            &mut out,
            (figure, "", width),
            both,
            key,
            pair,
            Better::Lower,
            (ms, Unit::Ms),
        );
    }
    let recovered = match (no_recovery_figure(a), no_recovery_figure(b)) {
        // The same reason for both (the scenario's: no level before it, too short a run).
        (Some(x), Some(y)) if x == y => Some(x),
        (None, None) => None,
        // One run's own (it answered no one before the fault, or its goodput came back too
        // near the end to hold): each run in its words, where A's reason stood for both.
        _ => Some(format!(
            "B {}; A {}",
            super::text::recovery_words(b),
            super::text::recovery_words(a)
        )),
    };
    let recovered = if let Some(why) = recovered {
        why
    } else if sa.seeds.is_some() {
        recovery_over_seeds(sa, sb)
    } else {
        match (sa.recovered_at_s, sb.recovered_at_s) {
            (None, None) => "neither recovered within the run".to_string(),
            (None, Some(at)) => format!("better with B: B recovered at {at}s, A never did"),
            (Some(at), None) => format!("better with A: A recovered at {at}s, B never did"),
            (Some(x), Some(y)) if x == y => format!("the same: both at {x}s"),
            (Some(x), Some(y)) => format!(
                "better with {}: B at {y}s, A at {x}s",
                if y < x { "B" } else { "A" }
            ),
        }
    };
    let _ = writeln!(out, "  {:<width$} {recovered}", "recovery");
    if let Some((name, x)) = peak {
        let y = sb.services.get(name).and_then(|s| s.amplification);
        let normal = (
            x.normal_per_user,
            sb.services.get(name).and_then(|s| s.normal_per_user),
        );
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let figure = format!("load on {name}");
        let key = format!("services.{name}.amplification");
        let unit = " attempts per user request";
        verdict(
            &mut out,
            (&figure, unit, width),
            both,
            &key,
            (x.amplification, y),
            Better::attempts(normal, (1.0, 1.0)),
            (show, Unit::Decimal),
        );
    }
    let seconds = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}s"));
    verdict(
        &mut out,
        ("wasted work", "", width),
        both,
        "wasted_work_s",
        (Some(sa.wasted_work_s()), Some(sb.wasted_work_s())),
        Better::Lower,
        (seconds, Unit::Seconds),
    );
    out
}

/// The line under a header of several seeds: which seeds, what ± means, what the charts show.
pub(crate) fn seeds_note(s: &Summary) -> Option<String> {
    let seeds = s.seeds.as_ref()?;
    Some(format!(
        "{} seeds (--seed {} and the {} after it): each figure is a mean ± the half-width of \
         its 95% confidence interval (Student's t, {} degree{} of freedom); the timeline and \
         charts are seed {}'s",
        seeds.count,
        seeds.first,
        seeds.count - 1,
        seeds.count - 1,
        if seeds.count == 2 { "" } else { "s" },
        seeds.first
    ))
}

/// The recovery verdict over several seeds: the run that recovered with more seeds is better;
/// with as many, the earlier where the intervals of the moments do not overlap.
fn recovery_over_seeds(sa: &Summary, sb: &Summary) -> String {
    let of = sa.seeds.as_ref().map_or(1, |s| s.count);
    let (x, y) = (
        sa.intervals.get("recovered_at_s"),
        sb.intervals.get("recovered_at_s"),
    );
    let count = |i: Option<&Interval>| i.map_or(0, |i| i.seeds);
    let at = |i: Option<&Interval>| {
        i.map_or(String::new(), |i| {
            format!(" ({})", i.text(Unit::At, i.seeds))
        })
    };
    let (na, nb) = (count(x), count(y));
    let word = if na == 0 && nb == 0 {
        return format!("neither recovered within the run, with any of the {of} seeds");
    } else if na != nb {
        if nb > na {
            "better with B"
        } else {
            "better with A"
        }
    } else {
        seeds_word(x, y, Better::Lower)
    };
    format!(
        "{word}: B recovered with {nb} of {of} seeds{}, A with {na} of {of}{}",
        at(y),
        at(x)
    )
}

#[cfg(test)]
mod tests {
    use super::super::summary::tests::{outcome, run};
    use super::*;

    /// Columns are as wide as their widest cell in characters, as `format!` pads: a byte
    /// count made every column holding a "±" (the intervals of --seeds) or an accented name
    /// wider than its cells.
    #[test]
    fn a_table_is_as_wide_as_its_cells_in_characters() {
        let mut table = Table { rows: Vec::new() };
        table.row("café", "1.0 ± 0.1".into(), "2.0".into(), "+100%".into());
        table.row("web", "10.0".into(), "2.0 ± 0.3".into(), "x".into());
        let mut out = String::new();
        table.render(&mut out);
        assert_eq!(
            out,
            "café  1.0 ± 0.1        2.0  +100%\n\
             web        10.0  2.0 ± 0.3  x\n"
        );
    }

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

    /// Latency is of the requests answered in time: a run that answered fewer is not called
    /// better for the shorter tail of what it did answer (the demo's as-found graph answered a
    /// quarter of its users and read "latency p99 better with A"). Where the run that answered
    /// more is the faster one too, it is better as before.
    #[test]
    fn a_faster_tail_over_fewer_answers_is_not_called_better() {
        let today = outcome();
        let mut fixed = outcome();
        fixed.users.succeeded = fixed.users.requests;
        for step in &mut fixed.timeline {
            step.succeeded = step.users;
        }
        // B answers everyone, each 1 s slower than A's answers.
        let slower = |o: &mut stormguard_sim::engine::Outcome| {
            for step in &mut o.timeline {
                for l in &mut step.latency_ns {
                    *l += 1_000_000_000;
                }
            }
            for l in &mut o.users.latency_ns {
                *l += 1_000_000_000;
            }
        };
        let mut slow_fixed = fixed.clone();
        slower(&mut slow_fixed);
        let text = side_by_side(
            &run("today.toml", today.clone()),
            &run("fixed.toml", slow_fixed),
        );
        assert!(
            text.contains("latency is of the requests answered in time: "),
            "{text}"
        );
        let p99 = text
            .lines()
            .find(|l| l.starts_with("  latency p99 "))
            .unwrap();
        assert!(
            p99.contains("not compared (A answered fewer in time: B 100.0%, A "),
            "{p99}"
        );
        // A slower A that answered fewer: B is better on both counts.
        let mut slow_today = today;
        slower(&mut slow_today);
        let text = side_by_side(&run("today.toml", slow_today), &run("fixed.toml", fixed));
        let p99 = text
            .lines()
            .find(|l| l.starts_with("  latency p99 "))
            .unwrap();
        assert!(p99.contains("better with B: "), "{p99}");
    }

    /// `outcome` with db receiving `per_user` attempts a user request, its summary judged
    /// against the graph's normal load (api -> db once a request: 1 each).
    fn with_db_load(file: &str, per_user: f64) -> Run {
        let mut o = outcome();
        let attempts = (o.users.requests as f64 * per_user).round() as u64;
        o.services.get_mut("db").unwrap().attempts = attempts;
        o.calls[0].attempts = attempts;
        let graph = stormguard_graph::parse(
            "g.toml",
            "[entry]\nservice = \"api\"\n[services.api]\n[[services.api.calls]]\n\
             to = \"db\"\ntimeout = \"100ms\"\nmax_attempts = 2\n[services.db]\n",
        )
        .unwrap();
        let mut run = run(file, o);
        run.summary = run.summary.with_normal_load(&graph);
        run
    }

    #[test]
    fn attempts_are_judged_by_what_exceeds_the_normal_load() {
        let row = |text: &str, heading: &str, label: &str| -> String {
            let mut lines = text.lines().skip_while(|l| *l != heading).skip(1);
            lines.find(|l| l.starts_with(label)).unwrap().to_string()
        };
        // A's failures above kept half the requests from db; B lets every one through: more
        // attempts, none of them beyond the normal load, so no word.
        let text = side_by_side(&with_db_load("a.toml", 0.5), &with_db_load("b.toml", 1.0));
        for (heading, label) in [
            ("service db", "  attempts"),
            ("service db", "  per user"),
            ("call api->db", "  attempts"),
        ] {
            let line = row(&text, heading, label);
            assert!(line.ends_with(" +100%"), "{heading}: {line}");
        }
        // Above the normal load is amplification: worse, and the verdict says so.
        let text = side_by_side(&with_db_load("a.toml", 1.0), &with_db_load("b.toml", 1.5));
        assert!(
            row(&text, "service db", "  attempts").ends_with(" +50% worse"),
            "{text}"
        );
        assert!(
            row(&text, "call api->db", "  attempts").ends_with(" +50% worse"),
            "{text}"
        );
        assert!(
            text.contains("  load on db     better with A: B 1.50, A 1.00"),
            "{text}"
        );
        // Less of it is better, down to the normal load and no further.
        let text = side_by_side(&with_db_load("a.toml", 3.0), &with_db_load("b.toml", 0.8));
        assert!(
            row(&text, "service db", "  per user").ends_with(" -73% better"),
            "{text}"
        );
        // Both within 1% of it: neither amplifies, and the verdict says so rather than "about
        // the same" beside two figures 10% apart.
        let text = side_by_side(&with_db_load("a.toml", 1.005), &with_db_load("b.toml", 0.9));
        assert!(
            text.contains("  load on db     neither above its normal load: B 0.90, A 1.00"),
            "{text}"
        );
    }

    /// The first of `runs` with the intervals over all of them, as `--seeds` makes it.
    fn over_seeds(runs: Vec<Run>) -> Run {
        let per_seed: Vec<_> = runs.iter().map(figures).collect();
        let count = runs.len() as u32;
        let mut first = runs.into_iter().next().unwrap();
        first.summary.seeds = Some(super::super::seeds::SeedRange {
            first: 7,
            last: 7 + u64::from(count) - 1,
            count,
        });
        first.summary.intervals = super::super::seeds::intervals(&per_seed);
        first
    }

    /// A run whose db wasted `wasted` seconds and whose users lost `lost` answers a second.
    fn seeded(file: &str, wasted: f64, lost: u64) -> Run {
        let mut o = outcome();
        o.services.get_mut("db").unwrap().wasted_work_s = wasted;
        for step in &mut o.timeline {
            step.succeeded = step.users - lost;
        }
        o.users.succeeded = o.timeline.iter().map(|s| s.succeeded).sum();
        run(file, o)
    }

    #[test]
    fn over_seeds_a_difference_inside_the_intervals_is_about_the_same() {
        // db's wasted work: 10% less with B on average, but the seeds spread it far wider.
        let a = over_seeds(vec![
            seeded("a.toml", 0.2, 30),
            seeded("a.toml", 0.8, 31),
            seeded("a.toml", 1.4, 29),
        ]);
        let b = over_seeds(vec![
            seeded("b.toml", 0.1, 0),
            seeded("b.toml", 0.7, 1),
            seeded("b.toml", 1.3, 0),
        ]);
        let text = side_by_side(&a, &b);
        assert!(
            text.contains(", seeds 7 to 9, 12s of user arrivals")
                && text
                    .contains("\n3 seeds (--seed 7 and the 2 after it): each figure is a mean ±"),
            "{text}"
        );
        // Goodput: about 70% against about 100%, far apart: better with B, with the intervals.
        let goodput = text.lines().find(|l| l.starts_with("  goodput ")).unwrap();
        assert!(
            goodput.starts_with("  goodput        better with B: B 99."),
            "{goodput}"
        );
        assert!(goodput.ends_with("B 99.7% ±1.4, A 70.3% ±2.5"), "{goodput}");
        let wasted = text
            .lines()
            .find(|l| l.starts_with("  wasted work    "))
            .unwrap();
        assert!(
            wasted.starts_with("  wasted work    about the same: B "),
            "{wasted}"
        );
        assert!(wasted.contains("s ±"), "{wasted}");
        // The table: each cell a mean ± half-width, and the change says the same.
        let row = text
            .lines()
            .skip_while(|l| *l != "service db")
            .find(|l| l.starts_with("  wasted work s"))
            .unwrap();
        assert!(row.ends_with("% about the same"), "{row}\n{text}");
        assert!(row.contains("0.80 ±1.49"), "{row}");
        // Every seed recovered at 8 s in both.
        assert!(
            text.contains(
                "recovery       about the same: B recovered with 3 of 3 seeds (at 8s ±0)"
            ),
            "{text}"
        );
        // With one seed, the same 10% is a verdict: the rule the intervals replace.
        let one = side_by_side(&seeded("a.toml", 0.8, 30), &seeded("b.toml", 0.7, 0));
        assert!(one.contains("  wasted work    better with B"), "{one}");
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
        // Two faults apart: "during" is their seconds, not the calm between them.
        let mut two = outcome();
        let mut second = two.triggers[0].clone();
        second.from = Duration::from_secs(9);
        second.to = Duration::from_secs(10);
        two.triggers[0].to = Duration::from_secs(4);
        two.triggers.push(second);
        let apart = super::super::summary::tests::run("g.toml", two);
        assert_eq!(
            fault_windows(&apart),
            [
                (Duration::from_secs(3), Duration::from_secs(4)),
                (Duration::from_secs(9), Duration::from_secs(10))
            ]
        );
        let seconds = |at: &[usize]| {
            let steps = &apart.outcome.timeline;
            let users: u64 = at.iter().map(|&s| steps[s].users).sum();
            let ok: u64 = at.iter().map(|&s| steps[s].succeeded).sum();
            Some(ok as f64 / users as f64)
        };
        let (during, after) = goodput_around_fault(&apart);
        assert_eq!(during, seconds(&[3, 9]));
        assert_eq!(after, between(10, 12));
        assert_eq!(windows_text(&fault_windows(&apart)), "3s-4s, 9s-10s");
    }

    /// A reason only one run has for no recovery figure (its goodput came back too near the
    /// end to hold) is said of that run, beside the other's recovery, where A's reason stood
    /// for both.
    #[test]
    fn a_recovery_one_run_cannot_measure_is_said_of_that_run_only() {
        let mut late = outcome();
        for step in &mut late.timeline[3..9] {
            step.succeeded = 0;
        }
        late.recovered_at = None;
        let (a, b) = (run("a.toml", late), run("b.toml", outcome()));
        let text = side_by_side(&a, &b);
        let line = text
            .lines()
            .find(|l| l.starts_with("  recovery"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            line.contains("B at 8s, 2s after the last fault or load step ended; A not measured: goodput came back at 9s"),
            "{line}"
        );
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
