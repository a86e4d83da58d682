//! `stormguard import`: the timeouts and retries a team already runs, read where they live
//! (Kubernetes, Istio, Gateway API, Linkerd, Envoy, gRPC service configs) into a graph that
//! `check`, `sim` and `recommend` read, with a comment naming the source of every value.
//!
//! `check` and `sim` import the same way when given manifests instead of a graph file
//! ([`wants_import`], [`load`]), so that `stormguard check k8s/` works in CI on the files a team
//! keeps; [`report`] puts their findings at the manifests' lines.
//!
//! ## Exit codes
//! 0 when the graph was written; 2 on bad input (a malformed manifest, at `file:line:column`
//! and field; a path that cannot be read; a base graph that does not parse); 3 when the output
//! cannot be written or Prometheus cannot be read.

mod prometheus;
pub(crate) mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use stormguard_graph::{Graph, ParseError};
use stormguard_mesh::{assemble, Imported, Options};

use crate::InputError;

/// The name the imported graph goes by when `check` and `sim` read it without writing it: in
/// their errors, and in SARIF for a finding no manifest line explains. It is the file
/// `stormguard import PATH... --out stormguard-imported.toml` writes, so that a reader can open
/// it at the line named.
pub(crate) const IMPORTED_GRAPH: &str = "stormguard-imported.toml";

/// How many things not read the summary lists before it says how many more there are: one line
/// each for a cluster's manifests would bury the rest of the output.
const UNREAD_SHOWN: usize = 5;

const AFTER: &str = "\
Who calls whom is in none of these files: --base gives a graph whose calls receive the imported \
policies of their callees (the application's own retries, written in it, stack with the \
sidecar's), --prometheus reads the calls from Istio's or Linkerd's request metrics; without \
either, every route is a call from one placeholder caller that the graph names.

Each system's own meaning is kept (Envoy, Istio, Gateway API and Linkerd count retries, gRPC \
counts tries) and each system's defaults are written where a resource is silent. What is not \
read (an unknown kind, a field that changes nothing stormguard models) is summarised on stderr \
(all of it with --verbose), never dropped silently.

`stormguard check PATH...` and `stormguard sim PATH...` import the same way first.

Exit status: 0 when the graph was written, 2 on bad input (a malformed manifest, at \
file:line:column and field), 3 when the output cannot be written or Prometheus cannot be read.";

/// Arguments of `stormguard import`.
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER)]
pub(crate) struct Args {
    /// Files (YAML, multi-document YAML, JSON: Kubernetes resources, an Envoy bootstrap or
    /// /config_dump, a gRPC service config) and directories (every .yaml, .yml and .json below,
    /// hidden entries skipped).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    calls: Calls,
    /// Write the graph to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// `toml`: the graph file `check` and `sim` read, every imported value followed by a comment
    /// naming its source (file:line, or "Istio default"); `json`: the same graph, with a
    /// `source` per imported value.
    #[arg(long, value_enum, default_value_t = Format::Toml)]
    format: Format,
    /// List everything not read on stderr; by default, its count and the first five.
    #[arg(long)]
    verbose: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Toml,
    Json,
}

/// Where the calls of an imported graph come from; `import`, `check` and `sim` take the same.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct Calls {
    /// With manifests: a graph file whose calls receive the imported policies of their callees'
    /// routes (who calls whom, rates, latencies; its own retries stack on the sidecar's).
    #[arg(long, value_name = "GRAPH", conflicts_with = "prometheus")]
    pub(crate) base: Option<PathBuf>,
    /// With manifests: a Prometheus server (http://HOST:PORT) whose Istio or Linkerd request
    /// metrics over --window give the calls, their rates and latencies.
    #[arg(long, value_name = "URL")]
    pub(crate) prometheus: Option<String>,
    /// How far back --prometheus looks ("1h", "30m"); default 1h.
    #[arg(long, value_name = "DURATION", requires = "prometheus", value_parser = parse_window)]
    pub(crate) window: Option<Duration>,
}

impl Calls {
    fn given(&self) -> bool {
        self.base.is_some() || self.prometheus.is_some()
    }
}

/// How far back Prometheus is read when --window is not given, as `recommend` reads it.
const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

fn parse_window(text: &str) -> Result<Duration, String> {
    match stormguard::duration::parse(text) {
        Ok(window) if !window.is_zero() => Ok(window),
        _ => Err("give a duration with a unit, e.g. \"1h\" or \"30m\"".to_string()),
    }
}

pub(crate) fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    run_with(args, out, &mut std::io::stderr().lock())
}

fn run_with(args: Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if let Some(graph) = args.paths.iter().find(|p| is_graph_file(p)) {
        return Err(graph_given_as_manifest(graph).into());
    }
    if let Some(target) = &args.out {
        if args.paths.iter().any(|p| p == target) {
            return Err(InputError(format!(
                "--out {}: is one of the manifests read; write the graph to another file",
                target.display()
            ))
            .into());
        }
    }
    let loaded = load(&args.paths, &args.calls)?;
    let text = match args.format {
        Format::Toml => loaded.imported.toml.clone(),
        Format::Json => {
            let mut text = serde_json::to_string_pretty(&loaded.imported.json)
                .context("writing the graph as JSON")?;
            text.push('\n');
            text
        }
    };
    let mut said = loaded.summary(Detail {
        verbose: args.verbose,
        findings: true,
    });
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            let _ = writeln!(said, "wrote {}", path.display());
        }
        None => out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .context("writing the graph")?,
    }
    // The summary is for the person; a closed stderr must not fail the import.
    let _ = err.write_all(said.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// Whether `path` names a graph file (TOML) rather than a manifest: a directory named
/// `x.toml` is a directory, read as one.
fn is_graph_file(path: &Path) -> bool {
    extension_is(path, &["toml"]) && !path.is_dir()
}

/// Whether `path` is something only the import reads: a directory, or a YAML or JSON file.
pub(crate) fn is_manifest(path: &Path) -> bool {
    path.is_dir() || extension_is(path, &["yaml", "yml", "json"])
}

fn extension_is(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn graph_given_as_manifest(path: &Path) -> InputError {
    InputError(format!(
        "{0}: is a graph file, which is not imported; give it as --base {0} to put the imported \
         policies on its calls",
        path.display()
    ))
}

/// Whether `check` or `sim` must import `paths` first: when one is a directory or a YAML or
/// JSON file, or when --base or --prometheus is given. Otherwise they read graph files as they
/// always have (byte-identical outputs).
///
/// # Errors
/// A graph file among manifests: it would be read as YAML; it belongs in --base.
pub(crate) fn wants_import(paths: &[PathBuf], calls: &Calls) -> Result<bool, InputError> {
    if !calls.given() && !paths.iter().any(|p| is_manifest(p)) {
        return Ok(false);
    }
    match paths.iter().find(|p| is_graph_file(p)) {
        Some(graph) => Err(graph_given_as_manifest(graph)),
        None => Ok(true),
    }
}

/// An import's outcome, with what the summary says of its input.
pub(crate) struct Loaded {
    /// The paths, as given.
    pub(crate) paths: Vec<PathBuf>,
    /// Documents read.
    pub(crate) documents: usize,
    /// Files they came from.
    pub(crate) files: usize,
    /// Documents by kind.
    pub(crate) kinds: BTreeMap<String, usize>,
    /// The graph, its sources, findings and what was not read.
    pub(crate) imported: Imported,
}

/// What [`Loaded::summary`] lists.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Detail {
    /// Everything not read, rather than the first few.
    pub(crate) verbose: bool,
    /// The import's own findings (`check` reports them in its report instead).
    pub(crate) findings: bool,
}

/// Reads `paths` and assembles the graph, its calls from `calls`.
///
/// # Errors
/// An input error (exit 2) for a path that cannot be read or holds no document, a malformed
/// manifest (file:line:column and field) or a base graph that does not parse; Prometheus's own
/// errors as it reports them.
pub(crate) fn load(paths: &[PathBuf], calls: &Calls) -> anyhow::Result<Loaded> {
    let input = |e: stormguard_mesh::ImportError| InputError(e.to_string());
    let documents = stormguard_mesh::read_paths(paths).map_err(input)?;
    if documents.is_empty() && !calls.given() {
        // A wrong path (an empty directory, one of other files, an empty manifest) must not
        // pass a CI job as a mesh with nothing wrong in it. With --base or --prometheus, the
        // calls come from there, and no manifest may be wanted: none of their policies set.
        let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(InputError(format!(
            "{}: no manifest to read: no YAML or JSON document in it (directories are searched \
             for .yaml, .yml and .json files)",
            paths.join(" ")
        ))
        .into());
    }
    let inventory = stormguard_mesh::inventory(&documents).map_err(input)?;
    let base = match (&calls.base, &calls.prometheus) {
        (Some(path), _) => {
            let name = path.display().to_string();
            let text = stormguard_graph::input::read_text(path)
                .map_err(|e| InputError(format!("{name}: cannot read: {e}")))?;
            Some((name, text))
        }
        (None, Some(url)) => Some(prometheus::base(
            url,
            calls.window.unwrap_or(DEFAULT_WINDOW),
        )?),
        (None, None) => None,
    };
    let options = Options {
        base,
        inputs: paths.iter().map(|p| p.display().to_string()).collect(),
    };
    let imported = assemble(&inventory, &options).map_err(input)?;
    let files: BTreeSet<&str> = documents.iter().map(|d| &*d.file).collect();
    Ok(Loaded {
        paths: paths.to_vec(),
        documents: documents.len(),
        files: files.len(),
        kinds: inventory.kinds.clone(),
        imported,
    })
}

impl Loaded {
    /// The paths as one would type them again.
    pub(crate) fn paths_text(&self) -> String {
        let paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        paths.join(" ")
    }

    /// The imported graph, as `check` and `sim` read it.
    ///
    /// # Errors
    /// An input error when the graph holds nothing to read, or refuses an imported value: at
    /// the manifest's line when the graph's line came from one.
    pub(crate) fn graph(&self) -> Result<Graph, InputError> {
        if self.imported.toml.trim().is_empty() {
            return Err(InputError(format!(
                "{}: no route, workload or service was found to make a graph of ({} documents \
                 read); `stormguard import {} --verbose` lists what was not read",
                self.paths_text(),
                self.documents,
                self.paths_text()
            )));
        }
        stormguard_graph::parse(IMPORTED_GRAPH, &self.imported.toml).map_err(|e| self.refused(&e))
    }

    /// A parse error of the imported graph, said at the manifest line its value came from when
    /// the source map knows it, else at the generated graph's line with how to write it.
    pub(crate) fn refused(&self, error: &ParseError) -> InputError {
        match self
            .imported
            .sources
            .locate(error.line)
            .and_then(|o| o.file_line())
        {
            Some((file, line, column)) => InputError(format!(
                "{file}:{line}:{column}: the value imported from here is refused by the graph: \
                 {error}"
            )),
            None => InputError(format!(
                "{error} (the graph imported from {0}: `stormguard import {0} --out \
                 {IMPORTED_GRAPH}` writes it)",
                self.paths_text()
            )),
        }
    }

    /// What was read and what was not, for a person on stderr: the documents by kind, then what
    /// was not read (all of it, or the first few and how many more), then the import's own
    /// findings if asked.
    pub(crate) fn summary(&self, detail: Detail) -> String {
        let mut out = String::new();
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        let _ = write!(
            out,
            "imported {} document{} from {} file{}",
            self.documents,
            plural(self.documents),
            self.files,
            plural(self.files)
        );
        if kinds.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, ": {}", kinds.join(", "));
        }
        let unread = &self.imported.unread;
        if !unread.is_empty() {
            let _ = writeln!(out, "not read ({}):", unread.len());
            let shown = if detail.verbose {
                unread.len()
            } else {
                UNREAD_SHOWN
            };
            for item in unread.iter().take(shown) {
                let _ = writeln!(
                    out,
                    "  {}: {}: {}",
                    item.origin.short(),
                    item.what,
                    item.why
                );
            }
            if unread.len() > shown {
                let _ = writeln!(
                    out,
                    "  and {} more: `stormguard import {} --verbose` lists them all",
                    unread.len() - shown,
                    self.paths_text()
                );
            }
        }
        let findings = &self.imported.findings;
        if detail.findings && !findings.is_empty() {
            let _ = writeln!(
                out,
                "{} finding{} of the imported settings (`stormguard check {}` reports them with \
                 the graph's):",
                findings.len(),
                plural(findings.len()),
                self.paths_text()
            );
            for f in findings {
                let _ = writeln!(
                    out,
                    "  {}[{}] {}: {}",
                    report::severity_word(f.severity),
                    f.rule,
                    f.origin.short(),
                    f.message
                );
            }
        }
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
pub(crate) mod tests;
