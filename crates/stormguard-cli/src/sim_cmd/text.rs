//! The text a person reads after `stormguard sim` on one file: what the users saw first, then
//! where the load went, then the calls that made it; and the formats of its figures, shared
//! with the side-by-side view of two files and the HTML report.

use std::fmt::Write as _;

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
        "{:<width$}  {:>9}  {:>8}  {:>8}  {:>9}  {:>8}  {:>9}  {:>6}",
        "service", "attempts", "per user", "rejected", "timed out", "wasted s", "max queue", "util"
    );
    for (name, v) in &s.services {
        let _ = writeln!(
            out,
            "{name:<width$}  {:>9}  {:>8}  {:>8}  {:>9}  {:>8.2}  {:>9}  {:>6}",
            v.attempts,
            v.amplification
                .map_or("-".to_string(), |a| format!("{a:.2}")),
            v.rejected,
            v.timed_out,
            v.wasted_work_s,
            v.max_queue,
            percent(Some(v.utilization))
        );
    }
    let dropped: Vec<String> = (s.services.iter())
        .filter(|(_, v)| v.queue_dropped > 0)
        .map(|(name, v)| format!("{name} {}", v.queue_dropped))
        .collect();
    if !dropped.is_empty() {
        let _ = writeln!(
            out,
            "queue drops: {} (answered 503 for waiting past the queue's limit)",
            dropped.join(", ")
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
}
