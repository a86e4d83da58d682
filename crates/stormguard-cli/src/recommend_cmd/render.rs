//! The report: a table to read, or JSON for scripts (keys stable, durations both as text in
//! the graph file's syntax and as milliseconds).

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};
use stormguard_graph::report::{Finding, Severity};
use stormguard_recommend::calls::{CallPlan, MatchedBy};
use stormguard_recommend::histogram::Share;
use stormguard_recommend::readable::show;
use stormguard_recommend::suggest::{quantile_name, Suggestion};

use super::{Applied, Outcome};

/// The table: one row per series with its warnings under it, the series skipped and why, then
/// with a graph one row per call and `check`'s new findings.
pub(super) fn text(outcome: &Outcome) -> String {
    let mut out = String::new();
    let quantile = 1.0 - outcome.false_timeout_rate;
    let suggested = outcome.series.iter().filter(|(_, s)| s.is_ok()).count();
    let _ = writeln!(
        out,
        "stormguard recommend: {suggested} latency histogram{} from {}; timeouts at the {} (a \
         false-timeout rate of {})\n",
        if suggested == 1 { "" } else { "s" },
        outcome.source,
        quantile_name(quantile),
        percent(outcome.false_timeout_rate),
    );
    let extra = !["p50", "p99", "p99.9"].contains(&quantile_name(quantile).as_str());
    let mut rows = vec![{
        let mut header = vec!["SERIES", "REQUESTS", "P50", "P99", "P99.9"]
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        if extra {
            header.push(quantile_name(quantile).to_uppercase());
        }
        header.push("TIMEOUT".to_string());
        (header, Vec::new())
    }];
    for (series, suggestion) in &outcome.series {
        let Ok(s) = suggestion else { continue };
        let mut row = vec![
            series.to_string(),
            count_text(s.requests),
            show(s.p50),
            show(s.p99),
            show(s.p999),
        ];
        if extra {
            row.push(show(s.estimate));
        }
        row.push(stormguard::duration::format(s.timeout));
        let mut warnings: Vec<String> = s.warnings.iter().map(|w| format!("  ! {w}")).collect();
        if s.timeout > super::longest_timeout() {
            warnings.push(format!("  ! {}", super::too_long()));
        }
        rows.push((row, warnings));
    }
    if outcome.series.is_empty() {
        out.push_str(
            "no histogram found: no `_bucket` samples of a histogram family (summaries, gauges \
             and counters are read past, as a summary's quantiles cannot be combined or \
             re-cut at another rate)\n",
        );
    } else if rows.len() == 1 {
        out.push_str("no latency histogram with requests found\n");
    } else {
        table(&mut out, &rows);
    }
    let skipped: Vec<_> = outcome
        .series
        .iter()
        .filter_map(|(series, s)| s.as_ref().err().map(|why| format!("  {series}: {why}")))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(out, "\nskipped:\n{}", skipped.join("\n"));
    }
    if let Some(applied) = &outcome.applied {
        calls_text(&mut out, outcome, applied);
    }
    out
}

fn calls_text(out: &mut String, outcome: &Outcome, applied: &Applied) {
    let _ = writeln!(out, "\ncalls of {}:", applied.file);
    let mut rows = vec![(
        ["CALL", "SERIES", "NOW", "WITHIN NOW", "SUGGESTED"]
            .map(str::to_string)
            .to_vec(),
        Vec::new(),
    )];
    for plan in &applied.plans {
        let series = match plan.series.split_first() {
            None => "-".to_string(),
            Some((&first, [])) => outcome.series[first].0.to_string(),
            Some((&first, rest)) => format!("{} +{}", outcome.series[first].0, rest.len()),
        };
        let (suggested, notes) = match &plan.suggestion {
            Ok(s) => {
                let mut notes: Vec<String> =
                    s.warnings.iter().map(|w| format!("  ! {w}")).collect();
                if let Some(why) = super::not_written(plan) {
                    notes.push(format!("  ! not written: {why}"));
                }
                (stormguard::duration::format(s.timeout), notes)
            }
            Err(why) => ("-".to_string(), vec![format!("  - {why}")]),
        };
        let row = vec![
            call_name(plan, &applied.plans),
            series,
            plan.current
                .map_or("none".to_string(), stormguard::duration::format),
            plan.share_within_current.map_or("-".to_string(), share),
            suggested,
        ];
        rows.push((row, notes));
    }
    table(out, &rows);
    out.push('\n');
    out.push_str(&check_text(applied));
    if applied.plans.iter().any(|p| p.suggestion.is_ok()) {
        out.push_str("(--format toml writes the graph with these timeouts)\n");
    }
}

/// `web -> api`, with the call's index when the service calls the same service twice.
fn call_name(plan: &CallPlan, plans: &[CallPlan]) -> String {
    let twice = plans
        .iter()
        .filter(|p| p.from == plan.from && p.to == plan.to)
        .count()
        > 1;
    if twice {
        format!("{} -> {} [{}]", plan.from, plan.to, plan.index)
    } else {
        format!("{} -> {}", plan.from, plan.to)
    }
}

/// What `check` says of the graph with the suggested timeouts: the findings the suggestions
/// bring, each with its fix.
pub(super) fn check_text(applied: &Applied) -> String {
    let mut out = format!("check on {} with the suggested timeouts: ", applied.file);
    let new = applied.new_findings.len();
    // What else moved: findings resolved, and findings still there whose figures changed.
    let mut also = vec![format!("{} as before", applied.old_findings)];
    if !applied.changed_findings.is_empty() {
        also.push(format!(
            "{} of them changed",
            applied.changed_findings.len()
        ));
    }
    if !applied.resolved_findings.is_empty() {
        also.push(format!("{} resolved", applied.resolved_findings.len()));
    }
    let also = also.join(", ");
    if new == 0 {
        let _ = writeln!(out, "no new findings ({also})");
    } else {
        let _ = writeln!(
            out,
            "{new} new finding{} ({also}):",
            if new == 1 { "" } else { "s" },
        );
    }
    for finding in &applied.resolved_findings {
        let _ = writeln!(out, "  resolved {} {}", finding.rule, place(finding));
    }
    for finding in &applied.changed_findings {
        let _ = writeln!(
            out,
            "  changed {} {} {}: {}",
            severity_word(finding.severity),
            finding.rule,
            place(finding),
            finding.message
        );
    }
    for finding in &applied.new_findings {
        let _ = writeln!(
            out,
            "  {} {} {}: {}\n    fix: {}",
            severity_word(finding.severity),
            finding.rule,
            place(finding),
            finding.message,
            finding.fix
        );
    }
    out
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn place(finding: &Finding) -> String {
    match (&finding.from, &finding.to, &finding.service) {
        (Some(from), Some(to), _) => format!("{from} -> {to}"),
        (_, _, Some(service)) => service.clone(),
        _ => "graph".to_string(),
    }
}

/// Columns padded to their widest cell; each row's notes on the lines under it.
fn table(out: &mut String, rows: &[(Vec<String>, Vec<String>)]) {
    let columns = rows[0].0.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|(cells, _)| cells[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (cells, notes) in rows {
        let mut line = String::new();
        for (c, cell) in cells.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
        for note in notes {
            let _ = writeln!(out, "{note}");
        }
    }
}

/// `99.97%`; `~75%` when interpolated inside a bucket; `>=99.9%` when the timeout lies above
/// every finite bucket.
fn share(share: Share) -> String {
    match share {
        Share::Exact(v) => percent(v),
        Share::Interpolated(v) => format!("~{}", percent(v)),
        Share::AtLeast(v) => format!(">={}", percent(v)),
    }
}

fn percent(v: f64) -> String {
    let text = format!("{:.3}", v * 100.0);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn suggestion_json(s: &Suggestion) -> Value {
    json!({
        "requests": s.requests,
        "p50_ms": ms(s.p50),
        "p99_ms": ms(s.p99),
        "p999_ms": ms(s.p999),
        "quantile": s.quantile,
        "estimate_ms": ms(s.estimate),
        "suggested_timeout": stormguard::duration::format(s.timeout),
        "suggested_timeout_ms": ms(s.timeout),
        "only_a_floor": s.only_a_floor(),
        "bucket": { "lower_ms": ms(s.bucket.0), "upper_ms": s.bucket.1.map(ms) },
        "warnings": s.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
    })
}

/// The JSON report: `{"source", "false_timeout_rate", "series": [...], "skipped": [...],
/// "calls": [...] | null, "check": {...} | null}`.
pub(super) fn json(outcome: &Outcome) -> String {
    let mut series = Vec::new();
    let mut skipped = Vec::new();
    for (s, suggestion) in &outcome.series {
        match suggestion {
            Ok(suggestion) => {
                let mut entry = json!({
                    "series": s.to_string(),
                    "metric": s.metric,
                    "labels": s.labels,
                    "unit": s.unit,
                });
                if let (Value::Object(entry), Value::Object(rest)) =
                    (&mut entry, suggestion_json(suggestion))
                {
                    entry.extend(rest);
                }
                series.push(entry);
            }
            Err(why) => skipped.push(json!({ "series": s.to_string(), "reason": why.to_string() })),
        }
    }
    let (calls, check) = match &outcome.applied {
        None => (Value::Null, Value::Null),
        Some(applied) => (
            Value::Array(
                applied
                    .plans
                    .iter()
                    .map(|plan| call_json(outcome, plan))
                    .collect(),
            ),
            json!({
                "new_findings": applied.new_findings,
                "unchanged_findings": applied.old_findings,
                "changed_findings": applied.changed_findings,
                "resolved_findings": applied.resolved_findings,
            }),
        ),
    };
    let mut text = serde_json::to_string_pretty(&json!({
        "source": outcome.source,
        "false_timeout_rate": outcome.false_timeout_rate,
        "series": series,
        "skipped": skipped,
        "calls": calls,
        "check": check,
    }))
    .expect("a JSON value always serializes");
    text.push('\n');
    text
}

fn call_json(outcome: &Outcome, plan: &CallPlan) -> Value {
    let matched_by = match &plan.matched_by {
        None => Value::Null,
        Some(MatchedBy::MetricsKey(_)) => json!("metrics"),
        Some(MatchedBy::Label(label)) => json!(format!("label:{label}")),
    };
    let (share, share_kind) = match plan.share_within_current {
        None => (Value::Null, Value::Null),
        Some(Share::Exact(v)) => (json!(v), json!("exact")),
        Some(Share::Interpolated(v)) => (json!(v), json!("interpolated")),
        Some(Share::AtLeast(v)) => (json!(v), json!("at_least")),
    };
    let (suggestion, reason) = match &plan.suggestion {
        Ok(s) => (suggestion_json(s), Value::Null),
        Err(why) => (Value::Null, json!(why.to_string())),
    };
    json!({
        "from": plan.from,
        "to": plan.to,
        "index": plan.index,
        "series": plan.series.iter().map(|&i| outcome.series[i].0.to_string()).collect::<Vec<_>>(),
        "matched_by": matched_by,
        "current_timeout": plan.current.map(stormguard::duration::format),
        "share_within_current": share,
        "share_within_current_kind": share_kind,
        "suggestion": suggestion,
        "reason": reason,
        "not_written": super::not_written(plan),
    })
}

/// A count of requests as the table shows it: whole, or in scientific notation past 10^15,
/// where `{:.0}` printed a 1e30 count as 31 digits of float noise.
pub(super) fn count_text(requests: f64) -> String {
    if requests.abs() < 1e15 {
        format!("{requests:.0}")
    } else {
        format!("{requests:e}")
    }
}
