//! `check`'s report on an imported graph: the graph's findings and the import's own, each at
//! the manifest line its value came from, so that code scanning shows a finding on the
//! `VirtualService` a team edits, not on a graph file it never sees.
//!
//! A graph finding points at a call's or service's table of the generated graph; the source map
//! says which manifest line each value of it came from. The line chosen is that of the key the
//! fix changes (a timeout finding lands on the manifest's timeout), else the table's own line,
//! else the first value of the table that came from a file, else the callee's workload (a hop
//! no route covers has only a system's defaults). A finding none of those explain (a call of
//! the base graph, say) stays at the generated graph's line, in the file [`IMPORTED_GRAPH`] that
//! `stormguard import --out` writes.

use serde::Serialize;
use stormguard_graph::model::Span;
use stormguard_graph::render::{self, ExtraRule, Location};
use stormguard_graph::report::{Finding, Report, Severity, Summary};
use stormguard_graph::Graph;
use stormguard_mesh::assemble::SourceMap;
use stormguard_mesh::inventory::ImportFinding;
use stormguard_mesh::names;
use stormguard_mesh::source::Origin;

use super::{Loaded, IMPORTED_GRAPH};

/// A report whose every finding has a place in the files the user gave, or in the generated
/// graph.
pub(crate) struct Located {
    /// The graph's findings, then the import's, with the summary counting both.
    pub(crate) report: Report,
    /// Where each finding of `report` is, by index.
    places: Vec<Place>,
    /// The import's rules, declared in SARIF beside `check`'s.
    extra: Vec<ExtraRule>,
    documents: usize,
    files: usize,
    unread: usize,
}

/// Where a finding is.
#[derive(Clone, Debug, PartialEq)]
enum Place {
    /// A line of a manifest (or of the base graph) that set the value.
    Manifest(Origin),
    /// A line of the generated graph, or none.
    Graph(Option<Span>),
}

impl Located {
    /// `report` (check's, on the imported graph) with the import's findings added and every
    /// finding placed.
    pub(crate) fn new(loaded: &Loaded, graph: &Graph, mut report: Report) -> Located {
        let imported = &loaded.imported;
        let toml = Table::lines(&imported.toml);
        let mut places: Vec<Place> = report
            .findings
            .iter()
            .map(|f| match toml.origin_of(graph, &imported.sources, f) {
                Some(origin) => Place::Manifest(origin.clone()),
                None => Place::Graph(f.span),
            })
            .collect();
        let mut extra: Vec<ExtraRule> = Vec::new();
        for finding in &imported.findings {
            let converted = to_graph_finding(finding);
            places.push(match finding.origin.file_line() {
                Some(_) => Place::Manifest(finding.origin.clone()),
                // A system's default: where its service is (a Deployment), if anywhere.
                None => match converted
                    .service
                    .as_deref()
                    .and_then(|service| toml.service_origin(graph, &imported.sources, service))
                {
                    Some(origin) => Place::Manifest(origin.clone()),
                    None => Place::Graph(None),
                },
            });
            report.findings.push(converted);
            if !extra.iter().any(|r| r.id == finding.rule) {
                extra.push(ExtraRule {
                    id: finding.rule,
                    summary: format!(
                        "{}: a finding of imported settings (stormguard-mesh)",
                        finding.rule
                    ),
                    severity: finding.severity,
                });
            }
        }
        report.summary = summary(&report.findings);
        Located {
            report,
            places,
            extra,
            documents: loaded.documents,
            files: loaded.files,
            unread: imported.unread.len(),
        }
    }

    /// Where finding `i` is, as SARIF and the JSON name it: the manifest relative to where
    /// `check` runs, or the generated graph.
    fn location(&self, i: usize) -> Location {
        match &self.places[i] {
            Place::Manifest(origin) => {
                let (file, line, column) = origin
                    .file_line()
                    .expect("a manifest place is a file origin");
                Location {
                    file: crate::check_cmd::repository_path(std::path::Path::new(file)),
                    line: line as usize,
                    column: column as usize,
                }
            }
            Place::Graph(span) => {
                let span = span.unwrap_or(Span { line: 1, column: 1 });
                Location {
                    file: IMPORTED_GRAPH.to_string(),
                    line: span.line,
                    column: span.column,
                }
            }
        }
    }

    /// SARIF with every finding at its place and the import's rules declared.
    pub(crate) fn sarif(&self) -> String {
        let locations: Vec<Location> = (0..self.places.len()).map(|i| self.location(i)).collect();
        render::sarif_located(&self.report, &locations, &self.extra)
    }

    /// The text report, each finding placed in a manifest saying what set its value (`(from
    /// VirtualService reviews http[0].retries.attempts)`) and where, as a graph file's findings
    /// do (`--> k8s/reviews.yaml:14:7`). One on the generated graph, which is not among the
    /// user's files, says no place.
    pub(crate) fn text(&self, graph: &Graph, colour: bool) -> String {
        let mut report = self.report.clone();
        let mut locations = Vec::with_capacity(self.places.len());
        for (i, (finding, place)) in report.findings.iter_mut().zip(&self.places).enumerate() {
            match place {
                Place::Manifest(origin) => {
                    if let Origin::File { what, .. } = origin {
                        if !what.is_empty() {
                            finding.message = format!("{} (from {what})", finding.message);
                        }
                    }
                    locations.push(Some(self.location(i)));
                }
                Place::Graph(_) => locations.push(None),
            }
        }
        render::text_located(graph, &report, &locations, colour)
    }

    /// `check`'s JSON with a `source` per finding (`file`, `line`, `column`, as SARIF places it)
    /// and what the import read.
    pub(crate) fn json(&self) -> String {
        #[derive(Serialize)]
        struct Placed<'a> {
            #[serde(flatten)]
            finding: &'a Finding,
            source: Source,
        }
        #[derive(Serialize)]
        struct Source {
            file: String,
            line: usize,
            column: usize,
        }
        #[derive(Serialize)]
        struct Imported {
            documents: usize,
            files: usize,
            unread: usize,
        }
        #[derive(Serialize)]
        struct Json<'a> {
            findings: Vec<Placed<'a>>,
            services:
                &'a std::collections::BTreeMap<String, stormguard_graph::report::ServiceFigures>,
            #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
            endpoints:
                &'a std::collections::BTreeMap<String, stormguard_graph::report::ServiceFigures>,
            summary: Summary,
            imported: Imported,
        }
        let findings = self
            .report
            .findings
            .iter()
            .enumerate()
            .map(|(i, finding)| {
                let Location { file, line, column } = self.location(i);
                Placed {
                    finding,
                    source: Source {
                        file,
                        line: line.max(1),
                        column: column.max(1),
                    },
                }
            })
            .collect();
        let json = Json {
            findings,
            services: &self.report.services,
            endpoints: &self.report.endpoints,
            summary: self.report.summary,
            imported: Imported {
                documents: self.documents,
                files: self.files,
                unread: self.unread,
            },
        };
        let mut out = serde_json::to_string_pretty(&json)
            .expect("a report always serializes: string keys and plain fields only");
        out.push('\n');
        out
    }
}

/// The generated graph's lines, to find a table's keys in.
struct Table<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Table<'a> {
    fn lines(toml: &'a str) -> Table<'a> {
        Table {
            lines: toml.lines().collect(),
        }
    }

    /// The lines of the table whose header is line `start` (1-based): up to the next header.
    fn table(&self, start: usize) -> impl Iterator<Item = usize> + '_ {
        (start.max(1)..=self.lines.len())
            .take_while(move |&n| n == start || !self.lines[n - 1].trim_start().starts_with('['))
    }

    /// The line setting `key` in the table at line `start`.
    fn key_line(&self, start: usize, key: &str) -> Option<usize> {
        self.table(start).find(|&n| assigns(self.lines[n - 1], key))
    }

    /// The manifest origin of a finding on the generated graph: of the line of a key its fix
    /// edits (in the edited call's table, found through the graph), else of the finding's own
    /// line, else of its table's first value that came from a file. `None` when none of those
    /// came from a file.
    fn origin_of<'s>(
        &self,
        graph: &Graph,
        sources: &'s SourceMap,
        finding: &Finding,
    ) -> Option<&'s Origin> {
        let from_file = |line: usize| sources.locate(line).filter(|o| o.file_line().is_some());
        let edited = finding.edits.iter().find_map(|edit| {
            let service = graph.services.get(&edit.from)?;
            let calls = match &edit.endpoint {
                Some(endpoint) => &service.endpoint(endpoint)?.calls,
                None => &service.calls,
            };
            let call = calls.get(edit.index?).filter(|c| c.to == edit.to)?;
            // A key the files leave to a default (a budget Linkerd's annotations cannot
            // express) is placed at what makes it matter there: the retries it would bound.
            from_file(self.key_line(call.span.line, edit.key)?)
                .or_else(|| from_file(self.key_line(call.span.line, related_key(edit.key)?)?))
        });
        let span = finding.span;
        let callee = finding.to.as_deref().or(finding.service.as_deref());
        edited
            .or_else(|| span.and_then(|s| from_file(s.line)))
            .or_else(|| span.and_then(|s| self.table(s.line).find_map(from_file)))
            // Every value of the call is a system's default (a hop with no route): the callee's
            // workload is the manifest nearest to the fix.
            .or_else(|| callee.and_then(|name| self.service_origin(graph, sources, name)))
    }

    /// The first value of service `name`'s table (or of `SERVICE/ENDPOINT`'s service) that came
    /// from a file: its Deployment's replicas, say.
    fn service_origin<'s>(
        &self,
        graph: &Graph,
        sources: &'s SourceMap,
        name: &str,
    ) -> Option<&'s Origin> {
        let service = graph
            .services
            .get(name)
            .or_else(|| graph.services.get(name.split('/').next()?))?;
        self.table(service.span.line)
            .find_map(|n| sources.locate(n).filter(|o| o.file_line().is_some()))
    }
}

/// The key whose line places a finding whose fix sets `key`, when `key`'s own value is no
/// file's: the retries that a limiter or a backoff would govern.
fn related_key(key: &str) -> Option<&'static str> {
    match key {
        "retry_budget" | "token_bucket" | "backoff" => Some("max_attempts"),
        _ => None,
    }
}

/// Whether a TOML line sets `key` (`key = ...`).
fn assigns(line: &str, key: &str) -> bool {
    line.trim_start()
        .strip_prefix(key)
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// The import's finding as one of `check`'s, on the graph service its destination names.
fn to_graph_finding(finding: &ImportFinding) -> Finding {
    Finding {
        rule: finding.rule,
        severity: finding.severity,
        from: None,
        to: None,
        service: finding
            .host
            .as_ref()
            .map(|host| names::graph_name(&names::service_of(host).0)),
        message: finding.message.clone(),
        fix: finding.fix.clone(),
        value: None,
        limit: None,
        span: None,
        edits: Vec::new(),
    }
}

fn summary(findings: &[Finding]) -> Summary {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    Summary {
        errors: count(Severity::Error),
        warnings: count(Severity::Warning),
        infos: count(Severity::Info),
    }
}

/// A severity as the reports write it.
pub(crate) fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}
