//! `stormguard export`: a graph's policies (what `check --fix` changed, or an imported graph)
//! written back in one system's own resources: into the files the graph was imported from,
//! where the destination has a resource there, comments and layout kept; new resources
//! otherwise. What the target cannot express is printed, never dropped.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use stormguard_mesh::export::{self, Existing, Export, Target};

use crate::{graph_file, InputError};

/// Arguments of `stormguard export`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The graph file (TOML): typically `stormguard import`'s output after `check --fix`.
    graph: PathBuf,
    /// The system to write: istio (VirtualService, DestinationRule), gateway-api (HTTPRoute),
    /// linkerd (HTTPRoute annotations), envoy (a bootstrap per caller) or grpc (service config).
    #[arg(long, value_parser = parse_target)]
    to: Target,
    /// The files the graph was imported from (files or directories): each destination that has
    /// a resource there is edited in it. Default: the inputs the imported graph's header names.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    from: Vec<PathBuf>,
    /// Where to write: edited files at their paths relative to it, new resources in
    /// `stormguard-TARGET.yaml` (gRPC: `.json`; Envoy: one bootstrap per caller).
    #[arg(long, value_name = "DIR", default_value = "stormguard-export")]
    out: PathBuf,
    /// Edit the files given to --from where they are (new resources still go to --out).
    #[arg(long)]
    in_place: bool,
    /// Write also the values `check --fix` derived from a default no file gave (a connect
    /// timeout from the assumed 1 ms round trip, a timeout from the default latency, an attempt
    /// taken off a call to a service of one assumed instance). Without it they are left as the
    /// files had them, and listed.
    #[arg(long)]
    write_assumed: bool,
}

fn parse_target(text: &str) -> Result<Target, String> {
    Target::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
        format!("unknown target {text:?}: use one of {}", names.join(", "))
    })
}

/// Writes the files; the summary of what was written and what could not be expressed goes to
/// stderr (stdout stays empty: the output is files).
pub(crate) fn run(args: Args, _out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    run_to(args, &mut std::io::stderr().lock())
}

fn run_to(args: Args, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let name = args.graph.display().to_string();
    let text = stormguard_graph::input::read_text(&args.graph)
        .map_err(|e| InputError(format!("{name}: cannot read: {e}")))?;
    let (graph, kind) = graph_file::parse(&name, &text)?;
    let from = if args.from.is_empty() {
        export::inputs_from_header(&text, &args.graph)
    } else {
        args.from.clone()
    };
    let existing = if from.is_empty() {
        Existing::default()
    } else {
        Existing::read(&from).map_err(|e| InputError(e.to_string()))?
    };
    let mut existing = existing;
    if kind == graph_file::Kind::ProxySettings {
        existing.instances = upstream_instances(&name, &text)?;
    }
    let guessed = from_defaults(&graph, &text);
    // What rests on a default is exported as the files had it, unless asked for: the graph is
    // read again with those changes undone, all at once (nearly always valid); else one at a
    // time, each kept only if the graph is still valid, in rounds until none more can be (a
    // connect timeout put back to 10 s is valid only once the 23 ms timeout fitted to a default
    // latency is gone, and never above a timeout the fixes set from the graph's own figures:
    // that one is written), within TRIES readings of the whole graph.
    let mut undone = vec![false; guessed.len()];
    let mut kept_text = None::<String>;
    if !args.write_assumed && !guessed.is_empty() {
        let places: Vec<_> = guessed.iter().map(|g| (g.call(), g.key.as_str())).collect();
        let (reverted, each) = stormguard_graph::fix::revert_fixes(&text, &places);
        if graph_file::parse(&name, &reverted).is_ok() {
            kept_text = Some(reverted);
            undone = each;
        } else {
            let mut tries = 0;
            let mut progress = true;
            while progress && tries < TRIES {
                progress = false;
                for (g, undone) in guessed.iter().zip(undone.iter_mut()) {
                    if *undone || tries == TRIES {
                        continue;
                    }
                    let current = kept_text.as_deref().unwrap_or(&text);
                    let (reverted, each) =
                        stormguard_graph::fix::revert_fixes(current, &[(g.call(), &g.key)]);
                    if !each[0] {
                        continue;
                    }
                    tries += 1;
                    if graph_file::parse(&name, &reverted).is_ok() {
                        kept_text = Some(reverted);
                        *undone = true;
                        progress = true;
                    }
                }
            }
        }
    }
    let (left_out, written): (Vec<_>, Vec<_>) = guessed
        .iter()
        .zip(&undone)
        .partition(|(_, undone)| **undone);
    let left_out: Vec<&Guessed> = left_out.into_iter().map(|(g, _)| g).collect();
    let written: Vec<&Guessed> = written.into_iter().map(|(g, _)| g).collect();
    let kept;
    let exported = match &kept_text {
        Some(reverted) => {
            kept = graph_file::parse(&name, reverted)?.0;
            &kept
        }
        None => &graph,
    };
    let result = export::export(exported, args.to, &existing);
    write_files(&args, &result, err)?;
    report(&args, &from, &result, err)?;
    if !left_out.is_empty() {
        writeln!(
            err,
            "not written, as each rests on a default no file gave (the files keep what they \
             had): set it in the graph (--base for manifests) and fix again, or pass \
             --write-assumed to write them as they are ({}):",
            left_out.len()
        )?;
        for g in &left_out {
            writeln!(err, "  {}", g.line)?;
        }
    }
    if !written.is_empty() {
        let why = if args.write_assumed {
            "(--write-assumed)"
        } else {
            "(what the files had could not be put back: it conflicts with the other fixes, \
             or the note does not say it)"
        };
        writeln!(
            err,
            "written from defaults no file gave, as if measured {why}: set them in the graph \
             (--base for manifests), fix again, and check these before applying ({}):",
            written.len()
        )?;
        for g in &written {
            writeln!(err, "  {}", g.line)?;
        }
    }
    // The application's own calls as exported: a change left out above is not one to make in
    // its client either.
    let application = export::application_calls(exported, kept_text.as_deref().unwrap_or(&text));
    if !application.is_empty() {
        writeln!(
            err,
            "the application's own calls, which no {} resource holds: change them in its \
             client ({}):",
            args.to,
            application.len()
        )?;
        for call in &application {
            writeln!(err, "  {call}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// At most this many readings of the whole graph go into finding which changes resting on a
/// default can be undone one by one, when undoing them all at once leaves the graph invalid:
/// each is a parse of the whole graph, and a graph of thousands of calls must not take minutes
/// (what is not tried is written, and listed).
const TRIES: usize = 48;

/// A setting `check --fix` wrote that rests on a default ([`from_defaults`]).
struct Guessed {
    from: String,
    endpoint: Option<String>,
    index: usize,
    to: String,
    key: String,
    /// As listed: the call, the change and its note, and the default it came from.
    line: String,
}

impl Guessed {
    fn call(&self) -> stormguard_graph::fix::CallPlace<'_> {
        (&self.from, self.endpoint.as_deref(), self.index, &self.to)
    }
}

/// The settings `check --fix` wrote (read from its notes in the graph's `text`) that rest on a
/// default the file never gave (`Graph::assumed`): a connect timeout from the default round
/// trip of 1 ms, a timeout from the default latency (p50 1 ms, p99 10 ms) of its callee, an
/// attempt taken off a call to what the default makes one instance. An imported mesh says none
/// of these; written into its manifests they would read as measured (a 3 ms connect timeout in
/// a DestinationRule), so `export` leaves them out unless `--write-assumed` asks.
fn from_defaults(graph: &stormguard_graph::Graph, text: &str) -> Vec<Guessed> {
    use stormguard_graph::model::RestsOn;
    let assumed = &graph.assumed;
    if assumed.is_empty() {
        return Vec::new();
    }
    let calls: Vec<_> = graph
        .each_call()
        .map(|(from, endpoint, index, call)| (from, endpoint, index, call.to.as_str()))
        .collect();
    let noted = stormguard_graph::fix::noted_changes(text, &calls);
    let inline = stormguard_graph::fix::inline_calls(text, &calls);
    let mut out = Vec::new();
    if inline > 0 {
        // Not one of the changes: said once, and written as it is.
        out.push(Guessed {
            from: String::new(),
            endpoint: None,
            index: usize::MAX,
            to: String::new(),
            key: String::new(),
            line: format!(
                "{inline} call(s) written inline (calls = [{{ ... }}]) carry no check --fix \
                 notes, so what the fix derived there from defaults cannot be told: write them \
                 as [[...calls]] tables and fix again"
            ),
        });
    }
    for ((from, endpoint, index, to), changes) in calls.iter().zip(noted) {
        let shown = match endpoint {
            Some(endpoint) => format!("{from} ({endpoint}) -> {to}"),
            None => format!("{from} -> {to}"),
        };
        for change in changes {
            let key = change.split(" = ").next().unwrap_or_default();
            // The rules are in the note: `(was 3; check --fix: a, b)`.
            let rules: Vec<&str> = change
                .rsplit_once("check --fix: ")
                .map(|(_, rules)| rules.trim_end_matches(')').split(", ").collect())
                .unwrap_or_default();
            let why = match assumed.behind(from, to, key, &rules) {
                Some(RestsOn::Rtt) => {
                    "by a connect rule that took the default round trip (rtt) of 1ms"
                }
                Some(RestsOn::Latency(_)) => "from the default latency (p50 1ms, p99 10ms)",
                Some(RestsOn::Instances(_)) => "from the default of one instance",
                None => continue,
            };
            out.push(Guessed {
                from: from.to_string(),
                endpoint: endpoint.map(str::to_string),
                index: *index,
                to: to.to_string(),
                key: key.to_string(),
                line: format!("{shown}: {change}, {why}"),
            });
        }
    }
    out
}

/// Each upstream's instances in a proxy settings file, as `host:port`: its listed `instances`,
/// or its `discovery` name at its port (which the exported system then resolves).
fn upstream_instances(
    name: &str,
    text: &str,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, InputError> {
    let settings =
        stormguard_proxy::config::parse(name, text).map_err(|e| InputError(e.to_string()))?;
    Ok(settings
        .upstreams
        .iter()
        .map(|(upstream, u)| {
            let instances = match &u.discovery {
                Some(d) if d.host.contains(':') => vec![format!("[{}]:{}", d.host, d.port)],
                Some(d) => vec![format!("{}:{}", d.host, d.port)],
                None => u.instances.clone(),
            };
            (upstream.clone(), instances)
        })
        .collect())
}

/// Where an edited file goes under `--out`: its path relative to the current directory, with
/// any root, `..` or drive left out, so that nothing is written outside the directory.
fn under(dir: &Path, file: &Path) -> PathBuf {
    let mut path = dir.to_path_buf();
    for component in file.components() {
        if let Component::Normal(part) = component {
            path.push(part);
        }
    }
    path
}

fn write_files(args: &Args, result: &Export, out: &mut dyn Write) -> anyhow::Result<()> {
    for file in &result.files {
        let target = if file.edited && args.in_place {
            file.path.clone()
        } else {
            under(&args.out, &file.path)
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", parent.display()))?;
        }
        std::fs::write(&target, &file.text)
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", target.display()))?;
        let how = if file.edited {
            format!("edited {}", file.path.display())
        } else {
            "new".to_string()
        };
        writeln!(
            out,
            "wrote {} ({how}): {}",
            target.display(),
            file.written.join(", ")
        )?;
    }
    for path in &result.unchanged {
        writeln!(
            out,
            "unchanged {}: no value in it changes (not written)",
            path.display()
        )?;
    }
    Ok(())
}

fn report(
    args: &Args,
    from: &[PathBuf],
    result: &Export,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    if from.is_empty() {
        writeln!(
            err,
            "no --from files (and no inputs named in the graph's header): every resource is new"
        )?;
    }
    if !result.unexpressed.is_empty() {
        writeln!(
            err,
            "{} cannot express ({}):",
            args.to,
            result.unexpressed.len()
        )?;
        for item in &result.unexpressed {
            writeln!(err, "  {item}")?;
        }
    }
    if !result.conflicts.is_empty() {
        writeln!(err, "one policy per resource ({}):", result.conflicts.len())?;
        for conflict in &result.conflicts {
            writeln!(err, "  {conflict}")?;
        }
    }
    for note in &result.notes {
        writeln!(err, "note: {note}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edited_files_stay_under_the_output_directory() {
        let dir = Path::new("out");
        assert_eq!(
            under(dir, Path::new("/etc/k8s/a.yaml")),
            Path::new("out/etc/k8s/a.yaml")
        );
        assert_eq!(
            under(dir, Path::new("../k8s/a.yaml")),
            Path::new("out/k8s/a.yaml")
        );
        assert_eq!(
            under(dir, Path::new("k8s/./a.yaml")),
            Path::new("out/k8s/a.yaml")
        );
    }

    #[test]
    fn targets_by_name() {
        assert_eq!(parse_target("gateway-api"), Ok(Target::GatewayApi));
        assert!(parse_target("consul")
            .unwrap_err()
            .contains("istio, gateway-api"));
    }
}
