//! The report for a person at a terminal: what is wrong, service by service, then the figures.

use std::fmt::Write;

use super::{figure, millis, place, Location};
use crate::model::Graph;
use crate::report::{Finding, Report, ServiceFigures, Severity};

const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// The report as text: findings grouped by service (a call's under its caller), each with its
/// severity, rule, place, message and fix; then every service's figures in depth order, so the
/// numbers the findings quote can be seen along the graph; then the counts.
///
/// `color` adds ANSI colour (red errors, yellow warnings, dim infos); the caller decides, because
/// only it knows whether the text goes to a terminal.
///
/// No finding says where in a file it is: for a graph that came from a file, [`text_in`] says.
pub fn text(graph: &Graph, report: &Report, color: bool) -> String {
    render(graph, report, &|_, _| None, color)
}

/// [`text`] for a graph read from `file` (the path as the user gave it): each finding with a
/// place in the file says where, `--> FILE:LINE:COLUMN` under its message (the line of its call
/// or service table, as SARIF places it), so that a person at a terminal goes to the line to
/// change, where a terminal or an editor opens it with a click.
///
/// ```
/// let graph = stormguard_graph::parse(
///     "g.toml",
///     "[entry]\nservice = \"a\"\n[services.a]\n[[services.a.calls]]\nto = \"b\"\n[services.b]\n",
/// )
/// .unwrap();
/// let report = stormguard_graph::check::check(&graph);
/// let text = stormguard_graph::render::text_in(&graph, &report, "g.toml", false);
/// assert!(text.contains("\n    --> g.toml:4:1\n"), "{text}");
/// ```
pub fn text_in(graph: &Graph, report: &Report, file: &str, color: bool) -> String {
    // Line 0 is no place: a finding on the graph as a whole.
    let at = |_: usize, finding: &Finding| {
        let span = finding.span.filter(|span| span.line > 0)?;
        Some(Location {
            file: file.to_string(),
            line: span.line,
            column: span.column,
        })
    };
    render(graph, report, &at, color)
}

/// [`text`] with the `i`th finding at `locations[i]`, if any: a graph whose findings are in
/// other files than its own (an imported graph's, each in the manifest that set its value).
pub fn text_located(
    graph: &Graph,
    report: &Report,
    locations: &[Option<Location>],
    color: bool,
) -> String {
    render(
        graph,
        report,
        &|i, _| locations.get(i).cloned().flatten(),
        color,
    )
}

/// Where the `i`th finding of the report is, if anywhere.
type At<'a> = dyn Fn(usize, &Finding) -> Option<Location> + 'a;

fn render(graph: &Graph, report: &Report, at: &At<'_>, color: bool) -> String {
    let paint = Paint(color);
    let mut out = String::new();
    if report.findings.is_empty() {
        out.push_str("no findings\n");
    }
    for (service, findings) in grouped(&report.findings, report) {
        let header = match service {
            Some(name) if is_entry(graph, name) => format!("{name} (entry)"),
            Some(name) => name.to_string(),
            None => "the graph".to_string(),
        };
        let _ = writeln!(out, "{}", paint.apply(BOLD, &header));
        for (i, finding) in findings {
            write_finding(&mut out, finding, at(i, finding), paint);
        }
        out.push('\n');
    }
    write_figures(&mut out, graph, report);
    write_unreachable(&mut out, graph, report);
    let summary = report.summary;
    let _ = writeln!(
        out,
        "\n{}, {}, {}",
        paint.apply_if(summary.errors > 0, RED, &count(summary.errors, "error")),
        paint.apply_if(
            summary.warnings > 0,
            YELLOW,
            &count(summary.warnings, "warning")
        ),
        count(summary.infos, "info"),
    );
    out
}

/// Whether to emit ANSI codes; a type so every colouring site goes through one switch.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn apply(self, code: &str, text: &str) -> String {
        self.apply_if(true, code, text)
    }

    fn apply_if(self, wanted: bool, code: &str, text: &str) -> String {
        if self.0 && wanted {
            format!("{code}{text}{RESET}")
        } else {
            text.to_string()
        }
    }
}

/// A service's findings (`None`: the graph's as a whole), each with its place in the report.
type Group<'a> = (Option<&'a str>, Vec<(usize, &'a Finding)>);

/// Findings by service, in the order a reader walks the graph: by depth from the entry (the entry
/// first, as in the figures table), then by name; services the entry does not reach, and findings
/// on the graph as a whole, last.
fn grouped<'a>(findings: &'a [Finding], report: &Report) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    for (i, finding) in findings.iter().enumerate() {
        let key = place(finding);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push((i, finding)),
            None => groups.push((key, vec![(i, finding)])),
        }
    }
    groups.sort_by_key(|(key, _)| {
        let depth = key
            .and_then(|name| report.services.get(name).or(report.endpoints.get(name)))
            .map_or(u32::MAX, |f| f.depth);
        (key.is_none(), depth, key.map(str::to_string))
    });
    groups
}

fn write_finding(out: &mut String, finding: &Finding, location: Option<Location>, paint: Paint) {
    let (label, code) = match finding.severity {
        Severity::Error => ("error", RED),
        Severity::Warning => ("warning", YELLOW),
        Severity::Info => ("info", DIM),
    };
    let subject = match (&finding.from, &finding.to, &finding.service) {
        (Some(from), Some(to), _) => format!(" {from} -> {to}"),
        (Some(from), None, _) => format!(" {from}"),
        (None, _, Some(service)) => format!(" {service}"),
        _ => String::new(),
    };
    let head = format!("{label}[{}]", finding.rule);
    let fix = format!("fix: {}", finding.fix);
    let at = location.map(|l| format!("--> {}:{}:{}", l.file, l.line.max(1), l.column.max(1)));
    if finding.severity == Severity::Info {
        // An info is context, not a problem: the whole of it recedes.
        let line = format!("{head}{subject}: {}", finding.message);
        let _ = writeln!(out, "  {}", paint.apply(DIM, &line));
        if let Some(at) = &at {
            let _ = writeln!(out, "    {}", paint.apply(DIM, at));
        }
        let _ = writeln!(out, "    {}", paint.apply(DIM, &fix));
    } else {
        let _ = writeln!(
            out,
            "  {}{subject}: {}",
            paint.apply(code, &head),
            finding.message
        );
        if let Some(at) = &at {
            let _ = writeln!(out, "    {at}");
        }
        let _ = writeln!(out, "    {fix}");
    }
}

/// Whether `name` (a service, or `service/endpoint`) is where users come in.
fn is_entry(graph: &Graph, name: &str) -> bool {
    let entry = &graph.entry.service;
    name == entry
        || name.strip_prefix(entry.as_str()).is_some_and(|rest| {
            rest.strip_prefix('/')
                .zip(graph.services.get(entry))
                .is_some_and(|(endpoint, service)| service.endpoint(endpoint).is_some())
        })
}

/// The figures table: services by depth, then name, each service with endpoints followed by
/// its endpoints' rows (`gateway/browse`), whose figures differ from the service's.
fn write_figures(out: &mut String, graph: &Graph, report: &Report) {
    let mut services: Vec<(&String, &ServiceFigures)> = report.services.iter().collect();
    services.sort_by(|a, b| a.1.depth.cmp(&b.1.depth).then_with(|| a.0.cmp(b.0)));
    let mut rows: Vec<(&String, &ServiceFigures)> = Vec::new();
    for (name, figures) in services {
        rows.push((name, figures));
        if let Some(service) = graph.services.get(name) {
            let endpoints = service.endpoints.iter().filter_map(|e| {
                report
                    .endpoints
                    .get_key_value(&format!("{name}/{}", e.name))
            });
            rows.extend(endpoints);
        }
    }
    let header = [
        "service",
        "depth",
        "worst case",
        "amplification",
        "sustained",
    ];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|(name, f)| {
            let name = if **name == graph.entry.service {
                format!("{name} (entry)")
            } else {
                name.to_string()
            };
            [
                name,
                f.depth.to_string(),
                millis(f.worst_case_ms),
                format!("x{}", figure(f.amplification)),
                format!("x{}", figure(f.sustained_amplification)),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, row: [&str; 5]| {
        let mut text = format!("{:<w$}", row[0], w = widths[0]);
        for (cell, width) in row.iter().zip(widths).skip(1) {
            let _ = write!(text, "  {cell:>width$}");
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(out, header);
    for row in &cells {
        line(out, [&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
}

/// Services no request reaches have no figures; naming them says the table is not incomplete
/// by accident, and a service nobody calls is often a typo in a `to`.
fn write_unreachable(out: &mut String, graph: &Graph, report: &Report) {
    let unreachable: Vec<&str> = graph
        .services
        .keys()
        .filter(|name| !report.services.contains_key(*name))
        .map(String::as_str)
        .collect();
    if !unreachable.is_empty() {
        let _ = writeln!(
            out,
            "not reached from the entry: {}",
            unreachable.join(", ")
        );
    }
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
