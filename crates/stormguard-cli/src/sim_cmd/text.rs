//! The text a person reads after `stormguard sim` on one file: what the users saw first, then
//! where the load went, then the calls that made it; and the formats of its figures, shared
//! with the side-by-side view of two files and the HTML report.

use std::fmt::Write as _;

use stormguard_sim::engine;

use super::seeds::Unit;
use super::summary::ServiceSummary;
use super::Run;

/// The lines under the services table, each only where a service has any: requests a queue
/// answered 503 for waiting too long, attempts that found their instance down or blackholed,
/// and queued requests dropped for a passed deadline (the text and the HTML report both).
pub(crate) fn service_notes(s: &super::summary::Summary) -> Vec<String> {
    type Kind = (&'static str, fn(&ServiceSummary) -> u64, &'static str);
    let kinds: [Kind; 3] = [
        (
            "queue drops",
            |v| v.queue_dropped,
            "answered 503 for waiting past the queue's limit",
        ),
        (
            "unreachable",
            |v| v.unreachable,
            "attempts that found their instance down or blackholed",
        ),
        (
            "deadline drops",
            |v| v.dropped,
            "queued requests dropped unanswered: their caller's deadline had passed",
        ),
    ];
    kinds
        .into_iter()
        .filter_map(|(what, of, why)| {
            let counts: Vec<String> = (s.services.iter())
                .filter(|(_, v)| of(v) > 0)
                .map(|(name, v)| format!("{name} {}", of(v)))
                .collect();
            (!counts.is_empty()).then(|| format!("{what}: {} ({why})", counts.join(", ")))
        })
        .collect()
}

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
pub(crate) fn number(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// `at 52s`, or `never`.
pub(crate) fn recovery(value: Option<f64>) -> String {
    value.map_or("never".to_string(), |s| format!("at {s}s"))
}

/// Why `run`'s recovery is not a figure, if it is not: nothing to recover from, or what
/// [`engine::unmeasured`] finds. Then a missing `recovered_at_s` is not "never".
pub(crate) fn no_recovery_figure(run: &Run) -> Option<String> {
    let outcome = &run.outcome;
    if outcome.triggers.is_empty() {
        return Some("nothing to recover from: no fault or load step".to_string());
    }
    // Faults alone, on services no request reached: nothing was disturbed, so a recovery
    // would be one from nothing.
    let unreached: Vec<&str> = outcome
        .triggers
        .iter()
        .map(|t| t.service.as_deref())
        .collect::<Option<Vec<&str>>>()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| {
            outcome
                .services
                .get(*s)
                .is_none_or(|stats| stats.attempts == 0)
        })
        .collect();
    if !unreached.is_empty() && unreached.len() == outcome.triggers.len() {
        let mut names = unreached;
        names.sort_unstable();
        names.dedup();
        return Some(format!(
            "nothing to recover from: no request reached {}, which the faults hit",
            names.join(", ")
        ));
    }
    engine::unmeasured(&outcome.timeline, &outcome.triggers)
        .map(|why| format!("not measured: {}", why.words()))
}

/// [`recovery`] in a table: `-` where the run has no recovery figure, with every seed's
/// interval when several ran (where a missing interval said `never` even when recovery was
/// not measured at all).
pub(crate) fn recovery_cell(run: &Run) -> String {
    match no_recovery_figure(run) {
        Some(_) => "-".to_string(),
        None => run.summary.cell(
            "recovered_at_s",
            recovery(run.summary.recovered_at_s),
            super::seeds::Unit::At,
        ),
    }
}

pub(crate) fn scenario_line(run: &Run) -> String {
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
pub(crate) fn recovery_words(run: &Run) -> String {
    if let Some(why) = no_recovery_figure(run) {
        return why;
    }
    let last_end = run.outcome.triggers.iter().map(|t| t.to).max();
    match (last_end, run.summary.recovered_at_s) {
        (Some(end), Some(at)) => format!(
            "at {at}s, {}s after the last fault or load step ended",
            at - end.as_secs_f64()
        ),
        _ => "never: goodput did not return to 95% of its level before the faults".to_string(),
    }
}

/// One run, as a summary and two tables; with several seeds, each figure a mean ± its 95%
/// half-width.
pub(crate) fn single(run: &Run) -> String {
    let s = &run.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sim {}: {}, {}, {}s of user arrivals",
        s.file,
        scenario_line(run),
        s.seed_words(),
        s.duration_s
    );
    if let Some(note) = super::compare::seeds_note(s) {
        let _ = writeln!(out, "{note}");
    }
    let l = &s.user.latency_ms;
    let latency = |key: &str, v: Option<f64>| s.cell(key, ms(v), Unit::Ms);
    let recovery = match &s.seeds {
        Some(seeds) if !run.outcome.triggers.is_empty() => {
            match s.intervals.get("recovered_at_s") {
                Some(at) => format!(
                    "{}, with {} of the {} seeds",
                    at.text(Unit::At, at.seeds),
                    at.seeds,
                    seeds.count
                ),
                None => format!(
                    "never, with any of the {} seeds: {}",
                    seeds.count,
                    recovery_words(run)
                ),
            }
        }
        _ => recovery_words(run),
    };
    let _ = writeln!(
        out,
        "users     {} requests, {} answered in time (goodput)\n\
         latency   p50 {}, p99 {}, p99.9 {} (of the answered ones)\n\
         recovery  {}\n",
        s.cell("user.requests", s.user.requests.to_string(), Unit::Count),
        s.cell("user.goodput", percent(s.user.goodput), Unit::Percent),
        latency("user.latency_ms.p50", l.p50),
        latency("user.latency_ms.p99", l.p99),
        latency("user.latency_ms.p999", l.p999),
        recovery
    );
    // One seed's tables keep their fixed columns, byte for byte as they always were.
    let widen = s.seeds.is_some();
    let mut services = Table::new(
        [
            "service",
            "attempts",
            "per user",
            "rejected",
            "timed out",
            "wasted s",
            "max queue",
            "util",
        ],
        [7, 9, 8, 8, 9, 8, 9, 6],
        widen,
    );
    for (name, v) in &s.services {
        let key = |k: &str| format!("services.{name}.{k}");
        services.row([
            name.clone(),
            s.cell(&key("attempts"), v.attempts.to_string(), Unit::Count),
            s.cell(
                &key("amplification"),
                v.amplification
                    .map_or("-".to_string(), |a| format!("{a:.2}")),
                Unit::Decimal,
            ),
            s.cell(&key("rejected"), v.rejected.to_string(), Unit::Count),
            s.cell(&key("timed_out"), v.timed_out.to_string(), Unit::Count),
            s.cell(
                &key("wasted_work_s"),
                format!("{:.2}", v.wasted_work_s),
                Unit::Decimal,
            ),
            s.cell(&key("max_queue"), v.max_queue.to_string(), Unit::Count),
            s.cell(
                &key("utilization"),
                percent(Some(v.utilization)),
                Unit::Percent,
            ),
        ]);
    }
    services.render(&mut out);
    for line in service_notes(s) {
        let _ = writeln!(out, "{line}");
    }
    if !s.calls.is_empty() {
        out.push('\n');
        let mut calls = Table::new(
            [
                "call", "attempts", "retries", "denied", "hedges", "timeouts",
            ],
            [4, 9, 8, 7, 7, 8],
            widen,
        );
        for (edge, c) in &s.calls {
            let key = |k: &str| format!("calls.{edge}.{k}");
            calls.row([
                edge.clone(),
                s.cell(&key("attempts"), c.attempts.to_string(), Unit::Count),
                s.cell(&key("retries"), c.retries.to_string(), Unit::Count),
                s.cell(
                    &key("retries_denied"),
                    c.retries_denied.to_string(),
                    Unit::Count,
                ),
                s.cell(&key("hedges"), c.hedges.to_string(), Unit::Count),
                s.cell(&key("timeouts"), c.timeouts.to_string(), Unit::Count),
            ]);
        }
        calls.render(&mut out);
    }
    out
}

/// A table of `N` columns, the first left-aligned and the others right-aligned, each at least
/// its minimum width; with `widen`, widened to its longest cell (a mean ± half-width is longer
/// than a count). The first column always fits its longest cell.
struct Table<const N: usize> {
    rows: Vec<[String; N]>,
    widths: [usize; N],
    widen: bool,
}

impl<const N: usize> Table<N> {
    fn new(header: [&str; N], widths: [usize; N], widen: bool) -> Self {
        let mut table = Table {
            rows: Vec::new(),
            widths,
            widen,
        };
        table.row(header.map(str::to_string));
        table
    }

    fn row(&mut self, cells: [String; N]) {
        for (i, (width, cell)) in self.widths.iter_mut().zip(&cells).enumerate() {
            if i == 0 || self.widen {
                *width = (*width).max(cell.chars().count());
            }
        }
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        for row in &self.rows {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(self.widths).enumerate() {
                if i == 0 {
                    let _ = write!(line, "{cell:<width$}");
                } else {
                    let _ = write!(line, "  {cell:>width$}");
                }
            }
            let _ = writeln!(out, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::summary::tests::{outcome, run};
    use super::super::summary::Summary;
    use super::*;

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
        assert!(db.contains(" 0.33 ") && db.ends_with(" 12.3%"), "{db}");
        assert!(text.contains("api->db"), "{text}");
    }

    #[test]
    fn queue_drops_show_only_where_a_queue_dropped() {
        let mut outcome = outcome();
        let plain = single(&run("today.toml", outcome.clone()));
        assert!(!plain.contains("queue drops"), "{plain}");
        let json = serde_json::to_string(&Summary::new("t.toml", None, &outcome)).unwrap();
        assert!(!json.contains("queue_dropped"), "{json}");
        outcome.services.get_mut("db").unwrap().queue_dropped = 12;
        let text = single(&run("today.toml", outcome.clone()));
        assert!(text.contains("queue drops: db 12 (answered 503"), "{text}");
        let json = serde_json::to_string(&Summary::new("t.toml", None, &outcome)).unwrap();
        assert!(json.contains("\"queue_dropped\":12"), "{json}");
    }

    /// Refused and unanswered attempts, and requests dropped for a passed deadline, were in
    /// `attempts` and nowhere else: a service down for 5 s showed thousands of attempts, none
    /// rejected, none timed out. Said where there are any, and in the JSON.
    #[test]
    fn unreachable_and_deadline_drops_show_only_where_there_are_any() {
        let mut outcome = outcome();
        let plain = single(&run("today.toml", outcome.clone()));
        assert!(
            !plain.contains("unreachable:") && !plain.contains("deadline drops:"),
            "{plain}"
        );
        let db = outcome.services.get_mut("db").unwrap();
        db.unreachable = 2400;
        db.dropped = 7;
        let text = single(&run("today.toml", outcome.clone()));
        assert!(
            text.contains("unreachable: db 2400 (attempts that found"),
            "{text}"
        );
        assert!(
            text.contains("deadline drops: db 7 (queued requests"),
            "{text}"
        );
        let json = serde_json::to_string(&Summary::new("t.toml", None, &outcome)).unwrap();
        assert!(
            json.contains("\"unreachable\":2400") && json.contains("\"dropped\":7"),
            "{json}"
        );
    }
}
