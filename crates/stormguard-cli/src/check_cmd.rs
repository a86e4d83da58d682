//! `stormguard check`: what will break in a service graph's timeouts and retries, found before
//! an outage does, with an exit code CI can gate on; and `--fix`, which writes the graph with
//! every value the findings propose, so the fix is a diff to review rather than a list to copy.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use stormguard_graph::fix::{Change, FixError, Fixed, Stop};
use stormguard_graph::report::{Report, Severity};
use stormguard_graph::{check, render, Graph};

use stormguard_proxy::config;

use crate::{explain_cmd, graph_file, import_cmd, InputError};

/// Arguments of `stormguard check`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The graph file (TOML), or a proxy settings file: its routes are checked as the calls of
    /// the application beside the proxy (`app`), one endpoint per route. Or manifests (YAML and
    /// JSON files, directories), imported first as `stormguard import` does: the import's
    /// findings join the graph's, each at the manifest line that set the value (a finding no
    /// manifest line explains is placed in stormguard-imported.toml, the graph `stormguard
    /// import PATH... --out stormguard-imported.toml` writes).
    #[arg(required_unless_present = "rules", value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    calls: import_cmd::Calls,
    /// Output format: a report to read, JSON for scripts, SARIF for code scanning, or a Mermaid
    /// flowchart for a README or pull request.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 1 when a finding is at or above this severity (`never`: always exit 0 on valid input).
    /// With --fix, of the findings left in the fixed graph.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    fail_on: FailOn,
    /// Write the graph with every value the findings propose (timeouts, attempts, backoff,
    /// budgets), keeping the file's comments and layout, and say what changed and what no value
    /// fixes. The graph goes to stdout (what changed to stderr), or to --out. On manifests: the
    /// imported graph with the fixes (the manifests are left alone; `stormguard export` writes
    /// the fixed graph back as their resources).
    #[arg(long, conflicts_with = "format")]
    fix: bool,
    /// With --fix: write the fixed graph to this file instead of stdout (it may be FILE itself).
    #[arg(long, value_name = "FILE", requires = "fix")]
    out: Option<PathBuf>,
    /// List every rule with a one-line summary instead of checking a file (`stormguard explain
    /// RULE` for what one computes, why it matters and how to fix it).
    #[arg(long, conflicts_with_all = ["paths", "fix"])]
    rules: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Sarif,
    Mermaid,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FailOn {
    Error,
    Warning,
    Never,
}

impl FailOn {
    /// Whether `report` should fail the run: any finding at or above the threshold.
    fn fails(self, report: &Report) -> bool {
        let threshold = match self {
            FailOn::Error => Severity::Error,
            FailOn::Warning => Severity::Warning,
            FailOn::Never => return false,
        };
        report.findings.iter().any(|f| f.severity >= threshold)
    }
}

/// Colour only for a person at a terminal, and never when they asked for none
/// (<https://no-color.org>: `NO_COLOR` set to anything but the empty string).
pub(crate) fn colour_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

impl Args {
    /// The graph file: clap asks for a path unless --rules, which [`run`] answers first, and
    /// [`run`] imports several paths or manifests.
    fn file(&self) -> anyhow::Result<&Path> {
        match self.paths.as_slice() {
            [file] => Ok(file),
            _ => Err(InputError(
                "check reads one graph file (TOML); several paths are imported only when they \
                 are manifests: YAML or JSON files, or directories"
                    .to_string(),
            )
            .into()),
        }
    }
}

pub(crate) fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if args.rules {
        return explain_cmd::run(explain_cmd::Args::default(), out);
    }
    if import_cmd::wants_import(&args.paths, &args.calls)? {
        let colour = colour_wanted();
        return run_imported(&args, out, &mut std::io::stderr().lock(), colour);
    }
    if args.fix {
        return run_fix(&args, out, &mut std::io::stderr().lock());
    }
    let colour = colour_wanted();
    run_with_colour(args, out, colour)
}

/// `check PATH...` on manifests: imports them (what was read to `err`), checks the graph, and
/// reports the graph's findings and the import's at the manifests' lines; or, with --fix,
/// writes the imported graph with the fixes.
fn run_imported(
    args: &Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
    colour: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(target) = &args.out {
        // --fix writes a graph; on a manifest it would replace the user's YAML with TOML.
        if import_cmd::is_manifest(target) || args.paths.contains(target) {
            return Err(InputError(format!(
                "--out {}: --fix on manifests writes the imported graph (TOML), not a manifest: \
                 write it to a .toml file, and `stormguard export FILE --to SYSTEM` writes its \
                 policies as the manifests' resources",
                target.display()
            ))
            .into());
        }
    }
    let loaded = import_cmd::load(&args.paths, &args.calls)?;
    check_loaded(args, &loaded, out, err, colour)
}

/// [`run_imported`] once the manifests are imported; apart so that it can be tested on a graph
/// and source map made by hand.
fn check_loaded(
    args: &Args,
    loaded: &import_cmd::Loaded,
    out: &mut dyn Write,
    err: &mut dyn Write,
    colour: bool,
) -> anyhow::Result<ExitCode> {
    let detail = import_cmd::Detail {
        verbose: false,
        findings: args.fix,
    };
    // What was read is for the person; a closed stderr must not fail the check.
    let _ = err.write_all(loaded.summary(detail).as_bytes());
    if args.fix {
        let refused = |e: FixError| match e {
            FixError::Parse(parse) => anyhow::Error::new(loaded.refused(&parse)),
            other => anyhow::Error::new(other),
        };
        let graph = loaded.graph()?;
        let (remedied, remedy_lines) = remedies(&graph, &loaded.imported.findings);
        let text = stormguard_graph::fix::apply(
            import_cmd::IMPORTED_GRAPH,
            &loaded.imported.toml,
            &remedied,
        )
        .map_err(refused)?;
        let fixed = stormguard_graph::fix(import_cmd::IMPORTED_GRAPH, &text).map_err(refused)?;
        let mut said = String::new();
        if !remedy_lines.is_empty() {
            said.push_str(&format!(
                "the import's findings: {} setting{} changed\n{remedy_lines}",
                remedied.len(),
                plural(remedied.len())
            ));
        }
        said.push_str(&fix_summary(&fixed));
        said.push_str(&format!(
            "the manifests are unchanged: `stormguard export FILE --to SYSTEM` writes the fixed \
             graph's policies as resources of {}\n",
            loaded.paths_text()
        ));
        return write_fixed(&fixed, &said, args, out, err);
    }
    let graph = loaded.graph()?;
    let located = import_cmd::report::Located::new(loaded, &graph, check::check(&graph));
    let rendered = match args.format {
        Format::Text => located.text(&graph, colour),
        Format::Json => located.json(),
        Format::Sarif => located.sarif(),
        Format::Mermaid => render::mermaid(&graph, &located.report),
    };
    emit(&rendered, &located.report, args.fail_on, out)
}

/// The settings that fix the import's own findings where a value does (a mesh that replays
/// POSTs: `retry_on` cut to the conditions before the request is sent), as edits of the
/// imported graph's calls, and a line per edit for the person. `check --fix` applies them
/// before its own rounds, so that `export` carries them to the manifests; the graph's own rules
/// cannot see these findings (an imported `idempotent = true` is the mesh's, not the user's).
fn remedies(
    graph: &Graph,
    findings: &[stormguard_mesh::inventory::ImportFinding],
) -> (Vec<stormguard_graph::report::Edit>, String) {
    let mut edits = Vec::new();
    let mut lines = String::new();
    for finding in findings {
        let Some(remedy) = &finding.remedy else {
            continue;
        };
        let (caller, endpoint) = remedy.caller_and_endpoint();
        let Some(service) = graph.services.get(caller) else {
            continue;
        };
        let calls = match endpoint {
            Some(name) => match service.endpoint(name) {
                Some(endpoint) => &endpoint.calls,
                None => continue,
            },
            None => &service.calls,
        };
        for (index, call) in calls.iter().enumerate() {
            if call.to != remedy.to {
                continue;
            }
            edits.push(
                stormguard_graph::report::Edit::set(
                    caller,
                    &remedy.to,
                    index,
                    remedy.key,
                    &remedy.value,
                )
                .in_endpoint(endpoint),
            );
            let _ = writeln!(
                lines,
                "  {} -> {}: {} = {} ({})",
                remedy.caller, remedy.to, remedy.key, remedy.value, finding.rule
            );
        }
    }
    (edits, lines)
}

fn read(file: &Path) -> anyhow::Result<(String, String)> {
    let name = file.display().to_string();
    let text = stormguard_graph::input::read_text(file)
        .map_err(|e| InputError(format!("{name}: cannot read: {e}")))?;
    Ok((name, text))
}

/// `--fix`: the fixed graph to `--out` or `out`, and what changed to `out` when the graph went
/// to a file, else to `err`, so that `check --fix g.toml > fixed.toml` writes a clean file.
fn run_fix(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let (file, text) = read(args.file()?)?;
    if config::is_settings_file(&text) {
        // The fixer edits graph files; a route's keys are a call's, but where they live differs.
        return Err(InputError(format!(
            "{file}: is a proxy settings file: --fix writes graph files only; \
             `stormguard check {file}` names the value to set on each route, to write by hand"
        ))
        .into());
    }
    let fixed = stormguard_graph::fix(&file, &text).map_err(|e| match e {
        // The error already says file:line:column, the key and what would be valid.
        FixError::Parse(parse) => anyhow::Error::new(InputError(parse.to_string())),
        other => anyhow::Error::new(other),
    })?;
    let said = fix_summary(&fixed);
    write_fixed(&fixed, &said, args, out, err)
}

/// The fixed graph to `--out` or `out`, and `said` (what changed) to `out` when the graph went
/// to a file, else to `err`.
fn write_fixed(
    fixed: &Fixed,
    said: &str,
    args: &Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match &args.out {
        Some(path) => {
            std::fs::write(path, &fixed.text)
                .with_context(|| format!("writing {}", path.display()))?;
            writeln!(out, "{said}wrote {}", path.display())
                .and_then(|()| out.flush())
                .context("writing the summary")?;
        }
        None => {
            out.write_all(fixed.text.as_bytes())
                .and_then(|()| out.flush())
                .context("writing the fixed graph")?;
            // What changed is for the person; a closed stderr must not fail the fix.
            let _ = err.write_all(said.as_bytes());
        }
    }
    Ok(if args.fail_on.fails(&fixed.report) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `--fix` did, for a person: each setting changed with its old value and the rules that
/// asked for it, then each finding left with why no value fixed it, then the fixed graph's
/// counts. The demo prints it too.
pub(crate) fn fix_summary(fixed: &Fixed) -> String {
    let mut out = String::new();
    let rounds = match fixed.rounds {
        1 => "1 round".to_string(),
        n => format!("{n} rounds"),
    };
    let _ = writeln!(
        out,
        "check --fix: {} setting{} changed in {rounds}",
        fixed.changes.len(),
        if fixed.changes.len() == 1 { "" } else { "s" }
    );
    for change in &fixed.changes {
        let _ = writeln!(out, "  {}", change_line(&fixed.graph, change));
    }
    let (unsettled, structural): (Vec<_>, Vec<_>) = fixed
        .report
        .findings
        .iter()
        .filter(|f| f.severity > Severity::Info)
        .partition(|f| !f.edits.is_empty());
    if !structural.is_empty() {
        let _ = writeln!(out, "not fixed, since no value fixes it:");
        for f in structural {
            let _ = writeln!(out, "  {}", finding_line(f));
        }
    }
    if !unsettled.is_empty() {
        let why = match fixed.stop {
            Stop::Cycle => "their fixes undo each other: choose between them by hand",
            Stop::Rounds => "the fixes did not settle within the rounds allowed",
            Stop::Fixpoint | Stop::Done => "their edits change nothing",
        };
        let _ = writeln!(out, "not fixed, since {why}:");
        for f in unsettled {
            let _ = writeln!(out, "  {}", finding_line(f));
        }
    }
    if let Some(said) = assumptions(fixed) {
        let _ = writeln!(out, "{said}");
    }
    let summary = fixed.report.summary;
    let _ = writeln!(
        out,
        "the fixed graph: {} error{}, {} warning{}, {} info{}",
        summary.errors,
        plural(summary.errors),
        summary.warnings,
        plural(summary.warnings),
        summary.infos,
        plural(summary.infos)
    );
    out
}

/// The defaults no file gave that the changes rest on, as one line, if any: a connect timeout
/// cut to a few round trips of the default 1 ms, a timeout fitted to the default latency of its
/// callee, an attempt taken off a call to what the default makes one instance, a capacity
/// fix from the default latency. Why: an imported mesh says none of these, and a 3 ms connect
/// timeout or a 23 ms timeout exported to production as if measured is an outage waiting.
fn assumptions(fixed: &Fixed) -> Option<String> {
    use std::collections::BTreeSet;
    use stormguard_graph::model::RestsOn;
    let assumed = &fixed.graph.assumed;
    let (mut rtt, mut latency, mut instances) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for change in &fixed.changes {
        let call = format!("{} -> {}", change.from, change.to);
        match assumed.behind(&change.from, &change.to, change.key, &change.rules) {
            Some(RestsOn::Rtt) => {
                rtt.insert(call);
            }
            Some(RestsOn::Latency(service)) => {
                latency.insert(service);
            }
            Some(RestsOn::Instances(service)) => {
                instances.insert(service);
            }
            None => {}
        }
    }
    let names = |set: &BTreeSet<String>| {
        let shown: Vec<&str> = set.iter().take(4).map(String::as_str).collect();
        match set.len() {
            n if n > 4 => format!("{} and {} more", shown.join(", "), n - 4),
            _ => shown.join(", "),
        }
    };
    let mut parts = Vec::new();
    if !rtt.is_empty() {
        parts.push(format!("a round trip (rtt) of 1ms on {}", names(&rtt)));
    }
    if !latency.is_empty() {
        parts.push(format!("latency p50 1ms, p99 10ms of {}", names(&latency)));
    }
    if !instances.is_empty() {
        parts.push(format!("1 instance of {}", names(&instances)));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "these changes rest on defaults no file gave, taken as measured: {}: give them (in \
             the graph, or with --base for manifests) and fix again before the values go to \
             production",
            parts.join("; ")
        )
    })
}

/// `warning[rule] place: fix`, one line.
fn finding_line(f: &stormguard_graph::Finding) -> String {
    let place = match (&f.from, &f.to, &f.service) {
        (Some(from), Some(to), _) => format!("{from} -> {to}"),
        (_, _, Some(service)) => service.clone(),
        _ => "the graph".to_string(),
    };
    let severity = match f.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    };
    format!("{severity}[{}] {place}: {}", f.rule, f.fix)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `web -> api: max_attempts = 2, was 3 (too-many-attempts)`, or `search: queue_discipline =
/// "codel", added (queue-outlives-caller)` for a service's own key; the caller's endpoint is named
/// for an endpoint's call (`gateway/checkout -> orders`), and the call's number is added when its
/// caller calls the same service more than once.
fn change_line(graph: &Graph, change: &Change) -> String {
    let same_callee = graph
        .services
        .get(&change.from)
        .and_then(|s| {
            s.each_endpoint()
                .find(|e| e.name == change.endpoint.as_deref())
        })
        .map_or(0, |e| e.calls.iter().filter(|c| c.to == change.to).count());
    let from = match &change.endpoint {
        Some(endpoint) => format!("{}/{endpoint}", change.from),
        None => change.from.clone(),
    };
    let call = match change.index {
        // A key of the service's own table.
        None => from,
        Some(index) if same_callee > 1 => {
            format!("{from} -> {} (call {})", change.to, index + 1)
        }
        Some(_) => format!("{from} -> {}", change.to),
    };
    let what = match (&change.before, &change.after) {
        (Some(before), Some(after)) => format!("{} = {after}, was {before}", change.key),
        (None, Some(after)) => format!("{} = {after}, added", change.key),
        (Some(before), None) => format!("{} = {before} removed", change.key),
        (None, None) => format!("{} unchanged", change.key),
    };
    format!("{call}: {what} ({})", change.rules.join(", "))
}

fn run_with_colour(args: Args, out: &mut dyn Write, colour: bool) -> anyhow::Result<ExitCode> {
    let (file, text) = read(args.file()?)?;
    // The error already says file:line:column, the key and what would be valid.
    let (graph, _) = graph_file::parse(&file, &text)?;
    let report = check::check(&graph);
    write_report(
        &graph,
        &report,
        &repository_path(args.file()?),
        &args,
        out,
        colour,
    )
}

/// The file as code scanning wants it in SARIF: relative to where `check` runs (the checkout),
/// when it lies below it; otherwise as given.
pub(crate) fn repository_path(file: &std::path::Path) -> String {
    let relative = std::env::current_dir().ok().and_then(|cwd| {
        file.strip_prefix(cwd)
            .ok()
            .map(std::path::Path::to_path_buf)
    });
    relative
        .unwrap_or_else(|| file.to_path_buf())
        .display()
        .to_string()
}

/// Renders `report` in the chosen format and says, by the exit code, whether it fails the run;
/// apart from [`run`] so it can be tested on reports the rules are not needed to produce.
fn write_report(
    graph: &Graph,
    report: &Report,
    file: &str,
    args: &Args,
    out: &mut dyn Write,
    colour: bool,
) -> anyhow::Result<ExitCode> {
    let rendered = match args.format {
        Format::Text => render::text_in(graph, report, file, colour),
        Format::Json => render::json_in(report, file),
        Format::Sarif => render::sarif(report, file),
        Format::Mermaid => render::mermaid(graph, report),
    };
    emit(&rendered, report, args.fail_on, out)
}

/// Writes a rendered report and says, by the exit code, whether `report` fails the run.
fn emit(
    rendered: &str,
    report: &Report,
    fail_on: FailOn,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    out.write_all(rendered.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the report")?;
    Ok(if fail_on.fails(report) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use clap::Parser;
    use stormguard_graph::model::{CheckConfig, Entry, Latency, Service, Span};
    use stormguard_graph::report::{Finding, Summary};

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    fn args(argv: &[&str]) -> Args {
        let mut full = vec!["check"];
        full.extend_from_slice(argv);
        Cmd::try_parse_from(full).unwrap().args
    }

    fn graph() -> Graph {
        let web = Service {
            name: "web".to_string(),
            instances: 1,
            concurrency: 16,
            queue: 64,
            latency: Latency::default(),
            contention: Duration::ZERO,
            queue_discipline: Default::default(),
            queue_timeout: None,
            calls: Vec::new(),
            endpoints: Vec::new(),
            span: Span { line: 4, column: 1 },
        };
        Graph {
            entry: Entry {
                service: "web".to_string(),
                timeout: Duration::from_secs(10),
                rate: 100.0,
                span: Span { line: 1, column: 1 },
            },
            services: BTreeMap::from([("web".to_string(), web)]),
            check: CheckConfig::default(),
            scenarios: BTreeMap::new(),
            assumed: Default::default(),
        }
    }

    /// A report with one finding of each given severity, on the service `web`.
    fn report(severities: &[Severity]) -> Report {
        let findings: Vec<Finding> = severities
            .iter()
            .map(|&severity| Finding {
                rule: "entry-budget",
                severity,
                from: None,
                to: None,
                service: Some("web".to_string()),
                message: "web may take 12s, users wait 10s.".to_string(),
                fix: "timeout = \"12s\" in [entry]".to_string(),
                value: Some(12_000.0),
                limit: Some(10_000.0),
                span: Some(Span { line: 4, column: 1 }),
                edits: Vec::new(),
            })
            .collect();
        let count = |s| severities.iter().filter(|&&x| x == s).count();
        Report {
            summary: Summary {
                errors: count(Severity::Error),
                warnings: count(Severity::Warning),
                infos: count(Severity::Info),
            },
            findings,
            services: BTreeMap::new(),
            endpoints: BTreeMap::new(),
        }
    }

    fn outcome(argv: &[&str], report: &Report) -> (String, ExitCode) {
        let mut full = vec!["g.toml"];
        full.extend_from_slice(argv);
        let mut out = Vec::new();
        let code = write_report(&graph(), report, "g.toml", &args(&full), &mut out, false).unwrap();
        (String::from_utf8(out).unwrap(), code)
    }

    #[test]
    fn fail_on_error_is_the_default_and_ignores_warnings() {
        let parsed = args(&["g.toml"]);
        assert_eq!(
            (parsed.format, parsed.fail_on),
            (Format::Text, FailOn::Error)
        );
        assert!(!FailOn::Error.fails(&report(&[])));
        assert!(!FailOn::Error.fails(&report(&[Severity::Info, Severity::Warning])));
        assert!(FailOn::Error.fails(&report(&[Severity::Warning, Severity::Error])));
    }

    #[test]
    fn fail_on_warning_counts_warnings_and_errors_but_not_infos() {
        assert!(!FailOn::Warning.fails(&report(&[Severity::Info])));
        assert!(FailOn::Warning.fails(&report(&[Severity::Warning])));
        assert!(FailOn::Warning.fails(&report(&[Severity::Error])));
    }

    #[test]
    fn fail_on_never_passes_anything() {
        assert!(!FailOn::Never.fails(&report(&[Severity::Error, Severity::Warning])));
    }

    #[test]
    fn the_exit_code_follows_fail_on() {
        let warning = report(&[Severity::Warning]);
        assert_eq!(outcome(&[], &warning).1, ExitCode::SUCCESS);
        assert_eq!(
            outcome(&["--fail-on", "warning"], &warning).1,
            ExitCode::from(1)
        );
        let error = report(&[Severity::Error]);
        assert_eq!(outcome(&[], &error).1, ExitCode::from(1));
        assert_eq!(
            outcome(&["--fail-on", "never"], &error).1,
            ExitCode::SUCCESS
        );
        assert_eq!(outcome(&[], &report(&[])).1, ExitCode::SUCCESS);
    }

    #[test]
    fn each_format_writes_its_renderer() {
        let error = report(&[Severity::Error]);
        let (text, _) = outcome(&[], &error);
        assert!(
            text.contains("error[entry-budget] web: web may take 12s"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "{text}");
        let (json, _) = outcome(&["--format", "json"], &error);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["summary"]["errors"], 1);
        let (sarif, _) = outcome(&["--format", "sarif"], &error);
        let v: serde_json::Value = serde_json::from_str(&sarif).unwrap();
        let location = &v["runs"][0]["results"][0]["locations"][0]["physicalLocation"];
        assert_eq!(location["artifactLocation"]["uri"], "g.toml");
        assert_eq!(location["region"]["startLine"], 4);
        let (chart, code) = outcome(&["--format", "mermaid"], &error);
        assert!(chart.starts_with("flowchart LR\n"), "{chart}");
        assert!(chart.contains("class web bad"), "{chart}");
        assert_eq!(code, ExitCode::from(1));
    }

    #[test]
    fn an_unknown_format_or_threshold_is_refused() {
        for argv in [
            ["g.toml", "--format", "yaml"],
            ["g.toml", "--fail-on", "info"],
        ] {
            let mut full = vec!["check"];
            full.extend_from_slice(&argv);
            assert!(Cmd::try_parse_from(full).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn an_unreadable_file_is_an_input_error_naming_it() {
        let missing = std::env::temp_dir().join("stormguard-check-no-such-graph.toml");
        let path = missing.display().to_string();
        let mut out = Vec::new();
        let err = run_with_colour(args(&[&path]), &mut out, false).unwrap_err();
        let input = err.downcast_ref::<InputError>().expect("exit 2, not 1");
        assert!(
            input.0.starts_with(&format!("{path}: cannot read: ")),
            "{input}"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_file_that_does_not_parse_is_an_input_error_at_its_place() {
        let file = std::env::temp_dir().join(format!(
            "stormguard-check-bad-graph-{}.toml",
            std::process::id()
        ));
        std::fs::write(&file, "[entry\nservice = \"web\"\n").unwrap();
        let path = file.display().to_string();
        let mut out = Vec::new();
        let result = run_with_colour(args(&[&path]), &mut out, false);
        std::fs::remove_file(&file).unwrap();
        let err = result.unwrap_err();
        let input = err.downcast_ref::<InputError>().expect("exit 2, not 1");
        assert!(input.0.starts_with(&format!("{path}:1:")), "{input}");
        assert!(out.is_empty());
    }

    /// `check` on an import made by hand (the readers are tested in stormguard-mesh).
    fn imported(argv: &[&str]) -> (anyhow::Result<ExitCode>, String, String) {
        let mut full = vec!["k8s", "grpc"];
        full.extend_from_slice(argv);
        let loaded = import_cmd::tests::loaded(2);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = check_loaded(&args(&full), &loaded, &mut out, &mut err, false);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn imported_findings_count_for_fail_on_and_what_was_read_goes_to_stderr() {
        let (code, out, err) = imported(&[]);
        assert_eq!(code.unwrap(), ExitCode::from(1));
        assert!(out.contains("error[istio-unbounded-retries]"), "{out}");
        assert!(out.contains("2 errors, "), "{out}");
        assert!(
            err.starts_with("imported 9 documents from 3 files"),
            "{err}"
        );
        assert!(err.contains("not read (2):"), "{err}");
        // The report has them: stderr does not list them twice.
        assert!(!err.contains("grpc-max-attempts-capped"), "{err}");
        let (code, ..) = imported(&["--fail-on", "never"]);
        assert_eq!(code.unwrap(), ExitCode::SUCCESS);
        let (code, sarif, _) = imported(&["--format", "sarif"]);
        assert_eq!(code.unwrap(), ExitCode::from(1));
        let v: serde_json::Value = serde_json::from_str(&sarif).unwrap();
        let uris: Vec<&str> = v["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert!(uris.contains(&"k8s/reviews.yaml"), "{uris:?}");
        assert!(uris.contains(&"grpc/service-config.json"), "{uris:?}");
        let (_, chart, _) = imported(&["--format", "mermaid"]);
        assert!(chart.starts_with("flowchart LR\n"), "{chart}");
    }

    #[test]
    fn fix_on_manifests_writes_the_fixed_imported_graph_and_points_to_export() {
        let dir = std::env::temp_dir().join(format!(
            "stormguard-check-fix-imported-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("fixed.toml");
        let (code, out, err) = imported(&["--fix", "--out", target.to_str().unwrap()]);
        code.unwrap();
        let fixed = std::fs::read_to_string(&target).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(fixed.contains("# k8s/reviews.yaml:12"), "{fixed}");
        assert!(!fixed.contains("max_attempts = 4"), "{fixed}");
        stormguard_graph::parse("fixed.toml", &fixed).unwrap();
        assert!(
            out.contains("the manifests are unchanged: `stormguard export"),
            "{out}"
        );
        assert!(err.contains("grpc-max-attempts-capped"), "{err}");
        // To stdout: the graph alone, what changed to stderr.
        let (_, out, err) = imported(&["--fix"]);
        stormguard_graph::parse("fixed.toml", &out).unwrap();
        assert!(err.contains("check --fix: "), "{err}");
    }

    #[test]
    fn fix_on_manifests_refuses_to_write_over_a_manifest() {
        let dir =
            std::env::temp_dir().join(format!("stormguard-check-fix-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.to_str().unwrap();
        for target in ["k8s/reviews.yaml", path] {
            let mut out = Vec::new();
            let error = run_imported(
                &args(&[path, "--fix", "--out", target]),
                &mut out,
                &mut Vec::new(),
                false,
            )
            .unwrap_err();
            let input = error.downcast_ref::<InputError>().expect("exit 2");
            assert!(input.0.contains("stormguard export FILE"), "{input}");
            assert!(out.is_empty());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
