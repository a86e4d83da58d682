//! `report.html`: one self-contained page (inline SVG and CSS, no script, nothing fetched) that
//! shows a run over time, so the moment a storm starts, and whether it outlives its trigger, is
//! seen rather than inferred from totals. With two files both runs are on every chart: the first
//! solid, the second dashed.

use std::fmt::Write as _;

use plotters::style::RGBColor;

use super::chart::{self, Chart, Series, PALETTE, SHADES, SHADE_OPACITY};
use super::summary::{percentile_ms, step_goodput};
use super::text::{ms, percent};
use super::Run;

/// `text` safe inside HTML elements and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

const BLACK: RGBColor = RGBColor(20, 20, 20);
/// B's offered load and goodput: apart from black and from every colour of the palette.
const MAGENTA: RGBColor = RGBColor(170, 0, 120);
const RUN_NAMES: [&str; 2] = ["A", "B"];

/// The four charts of the issue, each with every run.
fn charts(runs: &[&Run]) -> Vec<Chart> {
    let suffix = |i: usize| {
        if runs.len() > 1 {
            format!(" ({})", RUN_NAMES[i.min(1)])
        } else {
            String::new()
        }
    };
    let mut load = Vec::new();
    let mut goodput = Vec::new();
    let mut latency = Vec::new();
    let mut queue = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let steps = &run.outcome.timeline;
        let dashed = i > 0;
        // B's black lines in a colour of their own, so a dashed line over an equal solid one
        // still shows.
        let ink = if dashed { MAGENTA } else { BLACK };
        let line = |label: String, colour, points: Vec<(f64, f64)>| Series {
            label,
            colour,
            dashed,
            width: 2,
            points,
        };
        let at = |s: &stormguard_sim::engine::Step| s.at_s as f64;
        goodput.push(line(
            format!("goodput share{}", suffix(i)),
            ink,
            steps
                .iter()
                .filter_map(|s| Some((at(s), step_goodput(s)?)))
                .collect(),
        ));
        for (p, name, colour) in [(0.5, "p50", PALETTE[0]), (0.99, "p99", PALETTE[3])] {
            latency.push(line(
                format!("{name}{}", suffix(i)),
                colour,
                steps
                    .iter()
                    .filter_map(|s| Some((at(s), percentile_ms(&s.latency_ns, p)?)))
                    .collect(),
            ));
        }
        for (k, name) in run.outcome.services.keys().enumerate() {
            let colour = PALETTE[k % PALETTE.len()];
            let series = |pick: fn(&stormguard_sim::engine::Step) -> &_| {
                steps
                    .iter()
                    .map(|s| {
                        let map: &std::collections::BTreeMap<String, u64> = pick(s);
                        (at(s), map.get(name).copied().unwrap_or(0) as f64)
                    })
                    .collect()
            };
            load.push(Series {
                width: 3,
                ..line(
                    format!("attempts at {name}{}", suffix(i)),
                    colour,
                    series(|s| &s.attempts),
                )
            });
            queue.push(line(
                format!("{name}{}", suffix(i)),
                colour,
                series(|s| &s.max_queue),
            ));
        }
        // Last and narrower: the entry service's attempts equal the users until it retries, and
        // the offered load must stay visible over them.
        load.push(line(
            format!("user requests{}", suffix(i)),
            ink,
            steps.iter().map(|s| (at(s), s.users as f64)).collect(),
        ));
    }
    let chart = |title: &str, y_desc: &str, series, y_max| Chart {
        title: title.to_string(),
        y_desc: y_desc.to_string(),
        series,
        y_max,
    };
    vec![
        chart(
            "Offered load and attempts per service",
            "per second",
            load,
            None,
        ),
        chart(
            "Goodput: share of each second's users answered in time",
            "share",
            goodput,
            Some(1.05),
        ),
        chart("Latency of answered user requests", "ms", latency, None),
        chart(
            "Longest queue of an instance, per service",
            "requests",
            queue,
            None,
        ),
    ]
}

/// The legend under a chart: its lines, then the shaded windows.
fn legend(out: &mut String, chart: &Chart, run: &Run) {
    out.push_str("<div class=\"legend\">");
    for s in &chart.series {
        let dash = if s.dashed {
            " stroke-dasharray=\"7 4\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<span><svg width=\"28\" height=\"10\"><line x1=\"0\" y1=\"5\" x2=\"28\" y2=\"5\" \
             stroke=\"{}\" stroke-width=\"{}\"{dash}/></svg>{}</span>",
            hex(s.colour),
            s.width,
            escape(&s.label)
        );
    }
    for (i, t) in run.outcome.triggers.iter().enumerate() {
        let _ = write!(
            out,
            "<span><svg width=\"16\" height=\"12\"><rect width=\"16\" height=\"12\" fill=\"{}\" \
             fill-opacity=\"{SHADE_OPACITY}\"/></svg>{} ({}s to {}s)</span>",
            hex(SHADES[i % SHADES.len()]),
            escape(&t.label),
            t.from.as_secs_f64(),
            t.to.as_secs_f64()
        );
    }
    out.push_str("</div>\n");
}

/// The figures of one run as tables: what the users saw, each service, each call.
fn tables(out: &mut String, name: &str, run: &Run) {
    let s = &run.summary;
    let l = &s.user.latency_ms;
    let _ = write!(
        out,
        "<h3>{}</h3>\n<table><tr><th>user requests</th><th>goodput</th><th>p50</th><th>p99</th>\
         <th>p99.9</th><th>recovered</th></tr>\n<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td></tr></table>\n",
        escape(name),
        s.user.requests,
        percent(s.user.goodput),
        ms(l.p50),
        ms(l.p99),
        ms(l.p999),
        s.recovered_at_s
            .map_or("never".to_string(), |t| format!("at {t}s"))
    );
    out.push_str(
        "<table><tr><th>service</th><th>attempts</th><th>per user</th><th>rejected</th>\
         <th>timed out</th><th>wasted work s</th><th>max queue</th><th>utilization</th></tr>\n",
    );
    for (service, v) in &s.services {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td>\
             <td>{}</td></tr>",
            escape(service),
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
    out.push_str("</table>\n");
    if s.calls.is_empty() {
        return;
    }
    out.push_str(
        "<table><tr><th>call</th><th>attempts</th><th>retries</th><th>retries denied</th>\
         <th>hedges</th><th>timeouts</th></tr>\n",
    );
    for (edge, c) in &s.calls {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(edge),
            c.attempts,
            c.retries,
            c.retries_denied,
            c.hedges,
            c.timeouts
        );
    }
    out.push_str("</table>\n");
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:960px}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px}h3{font-size:15px}\
figure{margin:0 0 20px 0}svg.chart{max-width:100%;height:auto;border:1px solid #ddd}\
.legend{font-size:13px;display:flex;flex-wrap:wrap;gap:4px 16px;margin-top:4px}\
.legend svg{vertical-align:middle;margin-right:4px}\
table{border-collapse:collapse;margin:8px 0 12px 0;font-size:13px}\
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}pre{font-size:13px;background:#f6f6f6;padding:8px}";

/// The whole page. `verdict` is the text report's verdict, shown with two runs.
pub(crate) fn page(runs: &[&Run], verdict: Option<&str>) -> anyhow::Result<String> {
    let first = runs[0];
    let scenario = first.summary.scenario.as_deref().unwrap_or("none");
    let files: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if runs.len() > 1 {
                format!("{} = {}", RUN_NAMES[i.min(1)], r.summary.file)
            } else {
                r.summary.file.clone()
            }
        })
        .collect();
    let title = format!(
        "stormguard sim: {}; scenario {scenario}; seed {}",
        files.join(" against "),
        first.summary.seed
    );
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{0}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{0}</h1>\n<p>{1}s of user \
         arrivals; shaded: the scenario's faults and load steps.{2}</p>\n",
        escape(&title),
        first.summary.duration_s,
        if runs.len() > 1 {
            " Both runs saw the same arrivals and faults: A solid, B dashed."
        } else {
            ""
        }
    );
    let x_max = runs
        .iter()
        .map(|r| r.outcome.timeline.len() as f64)
        .fold(first.summary.duration_s, f64::max);
    for c in charts(runs) {
        let svg = chart::render(&c, x_max, &first.outcome.triggers)?;
        out.push_str("<figure>\n");
        out.push_str(&svg.replacen("<svg ", "<svg class=\"chart\" ", 1));
        legend(&mut out, &c, first);
        out.push_str("</figure>\n");
    }
    out.push_str("<h2>Figures</h2>\n");
    if let Some(verdict) = verdict {
        let _ = writeln!(out, "<pre>{}</pre>", escape(verdict));
    }
    for (i, run) in runs.iter().enumerate() {
        tables(&mut out, &files[i], run);
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::summary::tests::{outcome, run};
    use super::*;

    #[test]
    fn one_page_with_four_charts_shaded_and_nothing_fetched() {
        let page = page(&[&run("a<b>.toml", outcome())], None).unwrap();
        assert_eq!(page.matches("<svg class=\"chart\"").count(), 4);
        assert_eq!(page.matches("<figure>").count(), 4);
        assert!(page
            .contains("<title>stormguard sim: a&lt;b&gt;.toml; scenario db-slow; seed 7</title>"));
        assert!(!page.contains("a<b>"), "unescaped file name");
        assert!(page.contains("db: slowdown x10 &lt;all&gt; (3s to 6s)"));
        for fetch in ["src=", "href=", "<script", "<link", "@import", "url("] {
            assert!(!page.contains(fetch), "{fetch}");
        }
        // Every chart has a line, and the fault is shaded on each.
        assert!(page.matches("stroke-width=\"2\" points=").count() >= 4);
        assert!(page.matches("opacity=\"0.18\"").count() >= 4);
    }

    #[test]
    fn two_runs_share_each_chart_the_second_dashed() {
        let (a, b) = (run("today.toml", outcome()), run("fixed.toml", outcome()));
        let page = page(&[&a, &b], Some("verdict:\n  goodput ...")).unwrap();
        assert_eq!(page.matches("<svg class=\"chart\"").count(), 4);
        assert!(page.contains("A = today.toml against B = fixed.toml"));
        assert!(page.contains("user requests (B)"));
        assert!(page.contains("stroke-dasharray"));
        assert!(page.contains("<pre>verdict:"));
        assert_eq!(page.matches("<h3>").count(), 2);
    }
}
