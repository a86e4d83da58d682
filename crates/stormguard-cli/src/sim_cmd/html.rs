//! `report.html`: one self-contained page (inline SVG and CSS, no script, nothing fetched) that
//! shows a run over time, so the moment a storm starts, and whether it outlives its trigger, is
//! seen rather than inferred from totals. With two files both runs are on every chart: the first
//! solid, the second dashed.

use std::fmt::Write as _;

use plotters::style::RGBColor;

use super::chart::{self, Chart, Series, PALETTE, SHADES, SHADE_OPACITY};
use super::seeds::Unit;
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
const RUN_NAMES: [&str; 2] = ["A", "B"];
/// The grey of the palette: kept for "others", so no service is drawn in it.
const GREY: RGBColor = PALETTE[7];
/// How many quantities a chart draws per run before the smallest are summed into "others": the
/// eye follows about seven lines, and a legend longer than a line is not read.
pub(crate) const MAX_SERIES: usize = 8;
/// How opaque a solid line is under a dashed one of the same colour: an equal B must not hide A.
const UNDER: f64 = 0.45;

/// The services drawn by name, each with its colour, and the rest (drawn as "others", in grey):
/// the same for every run and every chart, so a service has one colour throughout the page.
/// With more than [`MAX_SERIES`] services, the services a fault hits are kept first, then those
/// with the most attempts over all runs: the service a scenario is about was folded into
/// "others" when it had few attempts (the bottom of a chain of ten).
pub(crate) struct Services {
    pub(crate) kept: Vec<(String, RGBColor)>,
    pub(crate) others: Vec<String>,
}

impl Services {
    pub(crate) fn of(runs: &[&Run]) -> Services {
        let mut total: std::collections::BTreeMap<&String, u64> = Default::default();
        for run in runs {
            for (name, s) in &run.outcome.services {
                *total.entry(name).or_default() += s.attempts;
            }
        }
        let faulted: std::collections::BTreeSet<&str> = runs
            .iter()
            .flat_map(|run| &run.outcome.triggers)
            .filter_map(|t| t.service.as_deref())
            .collect();
        let mut names: Vec<&String> = total.keys().copied().collect();
        let mut others = Vec::new();
        if names.len() > MAX_SERIES {
            // Faulted first, then most attempts, ties by name, so the choice is the same every
            // run.
            let rank = |n: &String| (!faulted.contains(n.as_str()), std::cmp::Reverse(total[n]));
            names.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
            others = names.split_off(MAX_SERIES - 1);
            names.sort();
            others.sort();
        }
        let colours = PALETTE.iter().filter(|c| **c != GREY);
        Services {
            kept: names
                .into_iter()
                .zip(colours)
                .map(|(n, c)| (n.clone(), *c))
                .collect(),
            others: others.into_iter().cloned().collect(),
        }
    }
}

/// The four charts of the issue, each with every run: a quantity keeps its colour in every run
/// and chart, A's line solid and B's dashed over it.
fn charts(runs: &[&Run]) -> Vec<Chart> {
    let services = Services::of(runs);
    let mut load = Vec::new();
    let mut goodput = Vec::new();
    let mut latency = Vec::new();
    let mut queue = Vec::new();
    let two = runs.len() > 1;
    for (i, run) in runs.iter().enumerate() {
        let steps = &run.outcome.timeline;
        let dashed = i > 0;
        let line = |label: &str, colour, points: Vec<(f64, f64)>| Series {
            label: label.to_string(),
            colour,
            dashed,
            width: 2,
            opacity: if two && !dashed { UNDER } else { 1.0 },
            points,
        };
        let at = |s: &stormguard_sim::engine::Step| s.at_s as f64;
        goodput.push(line(
            "goodput share",
            BLACK,
            steps
                .iter()
                .filter_map(|s| Some((at(s), step_goodput(s)?)))
                .collect(),
        ));
        for (p, name, colour) in [(0.5, "p50", PALETTE[0]), (0.99, "p99", PALETTE[3])] {
            latency.push(line(
                name,
                colour,
                steps
                    .iter()
                    .filter_map(|s| Some((at(s), percentile_ms(&s.latency_ns, p)?)))
                    .collect(),
            ));
        }
        type Map = std::collections::BTreeMap<String, u64>;
        let per_second = |pick: fn(&stormguard_sim::engine::Step) -> &Map,
                          names: &[&String],
                          fold: fn(u64, u64) -> u64| {
            steps
                .iter()
                .map(|s| {
                    let value = names
                        .iter()
                        .map(|n| pick(s).get(*n).copied().unwrap_or(0))
                        .fold(0, fold);
                    (at(s), value as f64)
                })
                .collect::<Vec<_>>()
        };
        let has = |name: &String| run.outcome.services.contains_key(name);
        for (name, colour) in services.kept.iter().filter(|(n, _)| has(n)) {
            load.push(Series {
                width: 3,
                ..line(
                    &format!("attempts at {name}"),
                    *colour,
                    per_second(|s| &s.attempts, &[name], u64::saturating_add),
                )
            });
            queue.push(line(
                name,
                *colour,
                per_second(|s| &s.max_queue, &[name], u64::max),
            ));
        }
        let rest: Vec<&String> = services.others.iter().filter(|n| has(n)).collect();
        if !rest.is_empty() {
            // Attempts add up; queues do not (each is one instance's), so the longest is shown.
            load.push(Series {
                width: 3,
                ..line(
                    &format!("attempts at {} others", rest.len()),
                    GREY,
                    per_second(|s| &s.attempts, &rest, u64::saturating_add),
                )
            });
            queue.push(line(
                &format!("longest of {} others", rest.len()),
                GREY,
                per_second(|s| &s.max_queue, &rest, u64::max),
            ));
        }
        // Last and narrower: the entry service's attempts equal the users until it retries, and
        // the offered load must stay visible over them.
        load.push(line(
            "user requests",
            BLACK,
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

/// The legend under a chart: one entry per quantity (its colour is the same in both runs), then
/// which run is solid and which dashed, then the shaded windows.
fn legend(out: &mut String, chart: &Chart, run: &Run, runs: usize) {
    out.push_str("<div class=\"legend\">");
    let swatch =
        |out: &mut String, class: &str, colour: RGBColor, width, dashed: bool, label: &str| {
            let dash = if dashed {
                " stroke-dasharray=\"7 4\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<span class=\"{class}\"><svg width=\"28\" height=\"10\"><line x1=\"0\" y1=\"5\" \
             x2=\"28\" y2=\"5\" stroke=\"{}\" stroke-width=\"{width}\"{dash}/></svg>{}</span>",
                hex(colour),
                escape(label)
            );
        };
    let mut seen = std::collections::BTreeSet::new();
    for s in &chart.series {
        if seen.insert(&s.label) {
            swatch(out, "q", s.colour, s.width, false, &s.label);
        }
    }
    if runs > 1 {
        for (i, name) in RUN_NAMES.iter().enumerate() {
            let how = if i == 0 { "solid" } else { "dashed" };
            swatch(out, "run", BLACK, 2, i > 0, &format!("{name} ({how})"));
        }
    }
    for (i, t) in run.outcome.triggers.iter().enumerate() {
        let _ = write!(
            out,
            "<span class=\"window\"><svg width=\"16\" height=\"12\"><rect width=\"16\" \
             height=\"12\" fill=\"{}\" fill-opacity=\"{SHADE_OPACITY}\"/></svg>{} ({}s to {}s)</span>",
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
    let latency = |key: &str, v| s.cell(key, ms(v), Unit::Ms);
    let _ = write!(
        out,
        "<h3>{}</h3>\n<table><tr><th>user requests</th><th>goodput</th><th>p50</th><th>p99</th>\
         <th>p99.9</th><th>recovered</th></tr>\n<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td></tr></table>\n",
        escape(name),
        s.cell("user.requests", s.user.requests.to_string(), Unit::Count),
        s.cell("user.goodput", percent(s.user.goodput), Unit::Percent),
        latency("user.latency_ms.p50", l.p50),
        latency("user.latency_ms.p99", l.p99),
        latency("user.latency_ms.p999", l.p999),
        super::text::recovery_cell(run)
    );
    out.push_str(
        "<table><tr><th>service</th><th>attempts</th><th>per user</th><th>rejected</th>\
         <th>timed out</th><th>wasted work s</th><th>max queue</th><th>utilization</th></tr>\n",
    );
    for (service, v) in &s.services {
        let key = |k: &str| format!("services.{service}.{k}");
        let count = |k: &str, n: u64| s.cell(&key(k), n.to_string(), Unit::Count);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            escape(service),
            count("attempts", v.attempts),
            s.cell(
                &key("amplification"),
                v.amplification
                    .map_or("-".to_string(), |a| format!("{a:.2}")),
                Unit::Decimal
            ),
            count("rejected", v.rejected),
            count("timed_out", v.timed_out),
            s.cell(
                &key("wasted_work_s"),
                format!("{:.2}", v.wasted_work_s),
                Unit::Decimal
            ),
            count("max_queue", v.max_queue),
            s.cell(
                &key("utilization"),
                percent(Some(v.utilization)),
                Unit::Percent
            )
        );
    }
    out.push_str("</table>\n");
    for line in super::text::service_notes(s) {
        let _ = writeln!(out, "<p>{}</p>", escape(&line));
    }
    if s.calls.is_empty() {
        return;
    }
    out.push_str(
        "<table><tr><th>call</th><th>attempts</th><th>retries</th><th>retries denied</th>\
         <th>hedges</th><th>timeouts</th></tr>\n",
    );
    for (edge, c) in &s.calls {
        let count =
            |k: &str, n: u64| s.cell(&format!("calls.{edge}.{k}"), n.to_string(), Unit::Count);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(edge),
            count("attempts", c.attempts),
            count("retries", c.retries),
            count("retries_denied", c.retries_denied),
            count("hedges", c.hedges),
            count("timeouts", c.timeouts)
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
        "stormguard sim: {}; scenario {scenario}; {}",
        files.join(" against "),
        first.summary.seed_words()
    );
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{0}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{0}</h1>\n<p>{1}s of user \
         arrivals; shaded: the scenario's faults and load steps.{2}{3}</p>\n",
        escape(&title),
        first.summary.duration_s,
        if runs.len() > 1 {
            " Both runs saw the same arrivals and faults: A solid, B dashed, a quantity in one \
             colour in both."
        } else {
            ""
        },
        super::compare::seeds_note(&first.summary)
            .map_or(String::new(), |note| format!(" {}.", escape(&note)))
    );
    let x_max = runs
        .iter()
        .map(|r| r.outcome.timeline.len() as f64)
        .fold(first.summary.duration_s, f64::max);
    for c in charts(runs) {
        let svg = chart::render(&c, x_max, &first.outcome.triggers)?;
        out.push_str("<figure>\n");
        out.push_str(&svg.replacen("<svg ", "<svg class=\"chart\" ", 1));
        legend(&mut out, &c, first, runs.len());
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
        // One legend entry per quantity, in one colour for both runs; the runs told apart by
        // the dashes.
        assert_eq!(page.matches(">user requests</span>").count(), 1);
        assert!(page.contains(">B (dashed)</span>"));
        assert!(page.contains("stroke-dasharray"));
        assert!(page.contains("<pre>verdict:"));
        assert_eq!(page.matches("<h3>").count(), 2);
    }

    /// A run with `n` services `s0`, `s1`, ... below api, `s{k}` taking `k + 1` times the
    /// users' attempts: the more services, the more lines.
    fn wide(n: usize) -> Run {
        let mut o = outcome();
        let db = o.services["db"].clone();
        for k in 0..n {
            let name = format!("s{k}");
            let mut stats = db.clone();
            stats.attempts = (k as u64 + 1) * 1000;
            o.services.insert(name.clone(), stats);
            for step in &mut o.timeline {
                step.attempts.insert(name.clone(), (k as u64 + 1) * 100);
                step.max_queue.insert(name.clone(), k as u64);
            }
        }
        run("wide.toml", o)
    }

    /// The service a fault hits is drawn by name however few its attempts.
    #[test]
    fn a_faulted_service_is_kept_among_many() {
        let (mut a, b) = (wide(9), wide(9));
        a.outcome.triggers.push(stormguard_sim::engine::Trigger {
            from: std::time::Duration::from_secs(1),
            to: std::time::Duration::from_secs(2),
            label: "s0: down".into(),
            service: Some("s0".to_string()),
        });
        let services = Services::of(&[&a, &b]);
        let kept: Vec<&str> = services.kept.iter().map(|(n, _)| n.as_str()).collect();
        // db (the fault of every run here) and s0, then the five largest.
        assert_eq!(kept, ["db", "s0", "s4", "s5", "s6", "s7", "s8"]);
    }

    #[test]
    fn many_services_keep_the_largest_and_sum_the_rest_into_others() {
        let (a, b) = (wide(9), wide(9));
        let services = Services::of(&[&a, &b]);
        // 11 services: s0..s8, api and db; api and db have 1212 and 1812 attempts, s{k}
        // (k+1)*1000: db, which the runs' fault hits, and s8..s3, the six largest.
        let kept: Vec<&str> = services.kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(kept, ["db", "s3", "s4", "s5", "s6", "s7", "s8"]);
        assert_eq!(services.others, ["api", "s0", "s1", "s2"]);
        let colours: std::collections::BTreeSet<String> =
            services.kept.iter().map(|(_, c)| hex(*c)).collect();
        assert_eq!(colours.len(), 7, "a colour each");
        assert!(!colours.contains(&hex(GREY)), "grey is the others'");
        let charts = charts(&[&a, &b]);
        for chart in &charts {
            let per_run = chart.series.iter().filter(|s| !s.dashed).count();
            let labels: std::collections::BTreeSet<&String> =
                chart.series.iter().map(|s| &s.label).collect();
            // The load chart adds the offered load to its eight.
            assert!(per_run <= MAX_SERIES + 1, "{}: {per_run}", chart.title);
            assert_eq!(
                labels.len(),
                per_run,
                "{}: the same quantities in A and B",
                chart.title
            );
        }
        let others = charts[0]
            .series
            .iter()
            .find(|s| s.label == "attempts at 4 others")
            .unwrap();
        // Per second: api 100..102 users, s0 100, s1 200 and s2 300.
        assert_eq!(others.points[0], (0.0, 100.0 + 100.0 + 200.0 + 300.0));
        let queue = charts[3]
            .series
            .iter()
            .find(|s| s.label == "longest of 4 others")
            .unwrap();
        assert_eq!(
            queue.points[4].1, 12.0,
            "api's queue in the fault, the longest of the others"
        );
    }

    #[test]
    fn a_quantity_has_one_colour_in_every_run_and_chart() {
        let (a, b) = (wide(3), wide(3));
        let charts = charts(&[&a, &b]);
        let colour = |chart: &Chart, label: &str, dashed: bool| {
            chart
                .series
                .iter()
                .find(|s| s.label == label && s.dashed == dashed)
                .map(|s| hex(s.colour))
                .unwrap()
        };
        for service in ["api", "db", "s0", "s1", "s2"] {
            let load = format!("attempts at {service}");
            let c = colour(&charts[0], &load, false);
            assert_eq!(c, colour(&charts[0], &load, true), "{service}: A and B");
            assert_eq!(
                c,
                colour(&charts[3], service, false),
                "{service}: load and queue"
            );
            assert_eq!(c, colour(&charts[3], service, true), "{service}: B's queue");
        }
        assert!(charts[0]
            .series
            .iter()
            .all(|s| s.dashed == (s.opacity == 1.0)));
    }
}
