//! `stormguard sim`: what a graph's timeouts and retries do under a fault, in virtual time,
//! before production finds out; and the published experiments that check the simulator.
//!
//! This module reads the files and runs them; the submodules each write one view of the
//! outcome: the JSON summary, the text tables, the CSV timeline and the HTML report.

mod brooker;
mod chart;
pub(crate) mod compare;
mod csv;
mod html;
pub(crate) mod progress;
mod seeds;
mod summary;
mod text;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use stormguard_graph::Graph;
use stormguard_sim::engine::{self, Outcome, Setup, SimError};

use crate::InputError;
use progress::Progress;
use summary::{Comparison, Summary};

const TWO_FILES: &str = "\
With two graph files FILE FILE2, both run through FILE's scenario (its faults, load steps, rate and duration; \
FILE's entry.rate without one) with the same seed, so both see the same arrivals and the same \
faults; every service a fault names must exist in both. The text output puts the runs side by \
side (A = FILE, B = FILE2) with a verdict per key figure; the JSON is {\"runs\": [A, B]}.

Exit status: 0 when the simulation ran, 2 on bad input (a file that does not parse, an unknown \
scenario, a graph whose calls form a cycle, a run over sim's bounds on its work: more than \
10,000,000 user requests, 200,000,000 attempts or 10,000,000 pending events), 3 when the output \
cannot be written. On a terminal, a run that takes over a second shows its progress on stderr.

Manifests (YAML or JSON files, directories) are imported first, as `stormguard import` does, \
into one graph that runs alone (to compare it with another, write it with `stormguard import \
PATH... --out FILE`); its scenarios are those of --base, if it has any.";

/// Arguments of `stormguard sim`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["paths", "experiment"])))]
#[command(after_help = TWO_FILES)]
pub(crate) struct Args {
    /// The graph file (TOML) to simulate: the file of `stormguard check`, with [scenarios.NAME];
    /// or a proxy settings file, its routes run as the calls of the application beside it. A
    /// second graph file (say, the fixed settings) runs through the first's scenario and
    /// arrivals. Or manifests (YAML and JSON files, directories), imported first.
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    calls: crate::import_cmd::Calls,
    /// The scenario of FILE to run: its faults, load steps, rate and duration. Without it, a
    /// file that defines one scenario runs that one (and says so), one that defines several
    /// runs none.
    #[arg(long)]
    scenario: Option<String>,
    /// Run the graph as it is, without any scenario, even where the file defines only one.
    #[arg(long, conflicts_with = "scenario")]
    no_scenario: bool,
    /// How long users arrive (e.g. `120s`, `5m`), 1s to 24h; default the scenario's, else 60s.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Also write summary.json, timeline.csv and report.html (charts) into this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Run a published experiment instead of a graph, to compare the simulator with it.
    #[arg(long, value_enum, conflicts_with_all = ["paths", "scenario", "duration", "out"])]
    experiment: Option<Experiment>,
    /// Clients contending for the row (brooker-jitter).
    // `conflicts_with` rather than `requires = "experiment"`: clap waives a requirement that
    // conflicts with an argument given, and --experiment conflicts with FILE.
    #[arg(long, default_value_t = 100, conflicts_with = "paths",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    clients: u32,
    /// Runs averaged per strategy (brooker-jitter).
    #[arg(long, default_value_t = 100, conflicts_with = "paths",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    runs: u32,
    /// Seed of every random draw: the same files, scenario and seed give byte-identical JSON.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Runs the seeds SEED, SEED+1, ..., SEED+N-1 on all cores, 1 to 1000: with 2 or more,
    /// every figure is a mean with its 95% confidence interval, and a verdict of two files says
    /// "about the same" where the intervals overlap; the timeline and charts are the first
    /// seed's.
    #[arg(long, value_name = "N", default_value_t = 1, conflicts_with = "experiment",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(seeds::MAX_SEEDS)))]
    seeds: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// A run's length (`--duration 90s`) in the policy core's syntax and a scenario's range (1s to
/// 24h, `RUN_LENGTH`), so the command line and the files never disagree on units or bounds: a
/// `--duration 1000000h` once grew the timeline to gigabytes before the first event.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = stormguard::duration::parse(text).map_err(|e| e.to_string())?;
    stormguard_graph::parse::ranges::RUN_LENGTH.duration(duration)
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Experiment {
    /// Brooker 2015, "Exponential Backoff And Jitter": clients racing to write one row.
    BrookerJitter,
}

/// What `sim` prints: the text tables, or the JSON summary.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

/// One simulated file: what the views are written from.
pub(crate) struct Run {
    pub(crate) summary: Summary,
    pub(crate) outcome: Outcome,
    /// The scenarios the file defines, to point at them when none was asked for.
    pub(crate) known_scenarios: Vec<String>,
}

/// How long users arrive when neither --duration nor a scenario says: the engine's default,
/// needed here only to size the progress bar.
const DEFAULT_DURATION: Duration = Duration::from_secs(60);

/// Virtual time 0 for the policy core. Any instant will do: the outcome depends only on
/// differences from it, so reading the clock here cannot make a run differ from another.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

pub(crate) fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if let Some(Experiment::BrookerJitter) = args.experiment {
        return brooker::run(args.clients, args.runs, args.seed, args.format, out);
    }
    let importing = crate::import_cmd::wants_import(&args.paths, &args.calls)?;
    let (first, second) =
        if importing {
            (imported(&args.paths, &args.calls)?, None)
        } else {
            match args.paths.as_slice() {
                [] => anyhow::bail!("a graph file or --experiment is needed"),
                [file] => (read(file)?, None),
                [file, file2] => (read(file)?, Some(read(file2)?)),
                _ => return Err(InputError(
                    "sim runs one graph file, or compares two; several paths are imported into \
                     one graph only when they are manifests: YAML or JSON files, or directories"
                        .to_string(),
                )
                .into()),
            }
        };
    if let (Some(name), true) = (args.scenario.as_deref(), importing) {
        unknown_imported_scenario(&first.1, name, args.calls.base.as_deref())?;
    }
    let (scenario, note) = if args.no_scenario {
        (None, None)
    } else {
        chosen_scenario(&first, args.scenario.as_deref(), args.duration)
    };
    if let Some(note) = note {
        eprintln!("{note}");
    }
    if args.seed.checked_add(u64::from(args.seeds) - 1).is_none() {
        return Err(InputError(format!(
            "--seed {} with --seeds {}: the last seed is past {}; start lower",
            args.seed,
            args.seeds,
            u64::MAX
        ))
        .into());
    }
    let seeds = Seeds {
        first: args.seed,
        count: args.seeds,
    };
    let runs = simulate_seeds(&first, second.as_ref(), scenario, seeds, args.duration)?;
    write_views(&runs, args.format, args.out.as_deref(), out)?;
    Ok(ExitCode::SUCCESS)
}

/// When `scenario` first does something: the earliest start of its faults and load steps.
fn first_trigger(scenario: &stormguard_graph::model::Scenario) -> Option<Duration> {
    (scenario.faults.iter().map(|f| f.from))
        .chain(scenario.load.iter().map(|l| l.from))
        .min()
}

/// The scenario of `first` to run, and what to tell the user about the choice on stderr: the
/// one asked for; else the file's only one (a file written for one experiment should not need
/// `--scenario` to run it, but the user should know a fault ran); else none, saying which the
/// file defines so that a run without faults is not mistaken for the experiment. A second file
/// runs through the same scenario of `first`.
fn chosen_scenario<'a>(
    first: &'a (String, Graph),
    asked: Option<&'a str>,
    duration: Option<Duration>,
) -> (Option<&'a str>, Option<String>) {
    if asked.is_some() {
        return (asked, None);
    }
    let file = &first.0;
    if let Some((name, scenario)) = engine::only_scenario(&first.1) {
        // A --duration that ends before the scenario does anything: not its run, which would
        // report a fault that never happened (asked for by name, that is an error).
        if let Some(start) = first_trigger(scenario).filter(|&s| duration.is_some_and(|d| s >= d)) {
            let note = format!(
                "sim: {file}: no --scenario given, and its only scenario, {name}, starts at {}, \
                 after --duration {}: running without it",
                stormguard::duration::format(start),
                stormguard::duration::format(duration.unwrap_or_default())
            );
            return (None, Some(note));
        }
        let note = format!("sim: {file}: no --scenario given; running its only scenario, {name}");
        return (Some(name), Some(note));
    }
    if first.1.scenarios.is_empty() {
        return (None, None);
    }
    let names: Vec<&str> = first.1.scenarios.keys().map(String::as_str).collect();
    let note = format!(
        "sim: {file} defines the scenarios {}; none ran (no faults, no load steps): pick one \
         with --scenario",
        names.join(", ")
    );
    (None, Some(note))
}

/// Runs `first` (its name and graph), and `second` if given, through `first`'s scenario named
/// `scenario` with the same seed and arrivals, a progress bar on a terminal for each; what `sim
/// FILE [FILE2]` does before it writes anything, and what `demo` runs its two graphs with.
pub(crate) fn simulate(
    first: &(String, Graph),
    second: Option<&(String, Graph)>,
    scenario_name: Option<&str>,
    seed: u64,
    duration: Option<Duration>,
) -> anyhow::Result<Vec<Run>> {
    let seeds = Seeds {
        first: seed,
        count: 1,
    };
    simulate_seeds(first, second, scenario_name, seeds, duration)
}

/// The seeds of a command: `first`, `first+1`, ..., `first+count-1`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seeds {
    pub(crate) first: u64,
    pub(crate) count: u32,
}

/// [`simulate`] for each of `seeds`, files and seeds on all cores: one [`Run`] per file, the
/// first seed's, whose summary holds the intervals of every figure over the seeds when there
/// are two or more. One seed runs as it always has, a file after the other with its progress
/// bar, so that its output does not change.
pub(crate) fn simulate_seeds(
    first: &(String, Graph),
    second: Option<&(String, Graph)>,
    scenario_name: Option<&str>,
    seeds: Seeds,
    duration: Option<Duration>,
) -> anyhow::Result<Vec<Run>> {
    let scenario = scenario_name
        .map(|name| engine::find_scenario(&first.1, name))
        .transpose()
        .map_err(|e| InputError(format!("{}: {e}", first.0)))?;
    if let (Some(scenario), Some(run)) = (scenario, duration) {
        // A run that ends before the scenario does anything would report a fault it never
        // had, and "never recovered" from it.
        if let Some(start) = first_trigger(scenario).filter(|&start| start >= run) {
            return Err(InputError(format!(
                "--duration {}: ends before scenario {} of {} does anything (its first fault or \
                 load step starts at {}); give a longer --duration, or leave it out to run the \
                 scenario's {}",
                stormguard::duration::format(run),
                scenario_name.unwrap_or_default(),
                first.0,
                stormguard::duration::format(start),
                stormguard::duration::format(scenario.duration)
            ))
            .into());
        }
    }
    if let (Some(scenario), Some((name2, graph2))) = (scenario, second) {
        if let Some(fault) = scenario
            .faults
            .iter()
            .find(|f| !graph2.services.contains_key(&f.service))
        {
            return Err(InputError(format!(
                "{name2}: has no service {:?}, which scenario {} of {} puts a fault on; both \
                 files run the same faults, so add the service to {name2} or pick another scenario",
                fault.service,
                scenario_name.unwrap_or_default(),
                first.0
            ))
            .into());
        }
    }
    let setup = |seed| Setup {
        scenario,
        // FILE's rate for both files: the same arrivals, whatever FILE2's entry.rate says.
        rate: Some(scenario.and_then(|s| s.rate).unwrap_or(first.1.entry.rate)),
        seed,
        duration,
        origin: origin(),
    };
    let total = duration
        .or(scenario.map(|s| s.duration))
        .unwrap_or(DEFAULT_DURATION);
    let known_scenarios: Vec<String> = first.1.scenarios.keys().cloned().collect();
    let files: Vec<&(String, Graph)> = std::iter::once(first).chain(second).collect();
    let run_of = |(name, graph): &(String, Graph), outcome: Outcome| Run {
        summary: Summary::new(name, scenario_name, &outcome).with_normal_load(graph),
        outcome,
        known_scenarios: known_scenarios.clone(),
    };
    if seeds.count <= 1 {
        let mut runs = Vec::new();
        for file in files {
            let (name, graph) = file;
            let mut bar = Progress::new(name, total);
            let outcome = run_one(name, graph, &setup(seeds.first), &mut |t| bar.update(t))?;
            bar.finish();
            runs.push(run_of(file, outcome));
        }
        return Ok(runs);
    }
    // Every (seed, file) pair is a task; the bar counts the finished ones.
    let tasks = seeds.count as usize * files.len();
    let label = format!("{} seeds of {} file(s)", seeds.count, files.len());
    let bar = std::sync::Mutex::new((Progress::new(&label, Duration::from_secs(tasks as u64)), 0));
    let done = seeds::in_parallel(tasks, |task| {
        let (k, file) = (task / files.len(), files[task % files.len()]);
        let outcome = run_one(
            &file.0,
            &file.1,
            &setup(seeds.first + k as u64),
            &mut |_| {},
        )?;
        let run = run_of(file, outcome);
        let figures = compare::figures(&run);
        if let Ok(mut bar) = bar.lock() {
            bar.1 += 1;
            let finished = Duration::from_secs(bar.1);
            bar.0.update(finished);
        }
        // Only the first seed's run is kept whole (its timeline is charted); of the others,
        // their figures.
        Ok(((k == 0).then_some(run), figures))
    })?;
    if let Ok(mut bar) = bar.lock() {
        bar.0.finish();
    }
    let range = seeds::SeedRange {
        first: seeds.first,
        last: seeds.first + u64::from(seeds.count) - 1,
        count: seeds.count,
    };
    let mut runs = Vec::new();
    let mut per_file: Vec<(Option<Run>, Vec<_>)> =
        files.iter().map(|_| (None, Vec::new())).collect();
    for (task, (run, figures)) in done.into_iter().enumerate() {
        let slot = &mut per_file[task % files.len()];
        if run.is_some() {
            slot.0 = run;
        }
        slot.1.push(figures);
    }
    for (run, figures) in per_file {
        let mut run = run.context("the first seed's run is kept")?;
        run.summary.seeds = Some(range.clone());
        run.summary.intervals = seeds::intervals(&figures);
        runs.push(run);
    }
    Ok(runs)
}

/// One run of `graph` (the file `name`) under `setup`; an error names the file, and a call
/// cycle its place in the file, as check names it.
fn run_one(
    name: &str,
    graph: &Graph,
    setup: &Setup<'_>,
    progress: &mut dyn FnMut(Duration),
) -> anyhow::Result<Outcome> {
    engine::run(graph, setup, progress).map_err(|e| {
        let at = match &e {
            SimError::CallCycle {
                span: Some(span), ..
            } => format!("{name}:{}:{}", span.line, span.column),
            _ => name.to_string(),
        };
        InputError(format!("{at}: {e}")).into()
    })
}

/// An imported graph's scenarios are its `--base` graph's: a scenario it does not have is
/// told so, naming that file (or its absence), where the error named the file `import --out`
/// would write, which the user never gave.
fn unknown_imported_scenario(graph: &Graph, name: &str, base: Option<&Path>) -> anyhow::Result<()> {
    if graph.scenarios.contains_key(name) {
        return Ok(());
    }
    let known: Vec<&str> = graph.scenarios.keys().map(String::as_str).collect();
    let message = match (base, known.is_empty()) {
        (Some(base), true) => format!(
            "no scenario named {name:?}: an imported graph's scenarios are its --base graph's, \
             and {} defines none; add a [scenarios.NAME] table to it, or run without --scenario",
            base.display()
        ),
        (Some(base), false) => format!(
            "no scenario named {name:?}: an imported graph's scenarios are its --base graph's, \
             and {} defines: {}",
            base.display(),
            known.join(", ")
        ),
        (None, _) => format!(
            "no scenario named {name:?}: an imported graph has the scenarios of its --base \
             graph, and none was given; pass --base with a graph that defines [scenarios.NAME], \
             or run without --scenario"
        ),
    };
    Err(InputError(message).into())
}

/// The file's name as given and its graph (a proxy settings file's read as the graph of its
/// routes); an unreadable or invalid file is an input error that names file:line:column.
fn read(path: &Path) -> anyhow::Result<(String, Graph)> {
    let name = path.display().to_string();
    let text = stormguard_graph::input::read_text(path)
        .map_err(|e| InputError(format!("{name}: cannot read: {e}")))?;
    let (graph, _) = crate::graph_file::parse(&name, &text)?;
    Ok((name, graph))
}

/// The graph imported from manifests, under the name of the file `stormguard import --out`
/// would write; what was read goes to stderr.
fn imported(
    paths: &[PathBuf],
    calls: &crate::import_cmd::Calls,
) -> anyhow::Result<(String, Graph)> {
    let loaded = crate::import_cmd::load(paths, calls)?;
    let detail = crate::import_cmd::Detail {
        verbose: false,
        findings: false,
    };
    // For the person; a closed stderr must not fail the run.
    let _ = std::io::stderr().write_all(loaded.summary(detail).as_bytes());
    let graph = loaded.graph()?;
    Ok((crate::import_cmd::IMPORTED_GRAPH.to_string(), graph))
}

/// The JSON of `--format json` and `summary.json`: one summary, or both runs.
fn json(runs: &[Run]) -> anyhow::Result<String> {
    let mut text = match runs {
        [one] => serde_json::to_string_pretty(&one.summary)?,
        [a, b] => serde_json::to_string_pretty(&Comparison {
            runs: [&a.summary, &b.summary],
        })?,
        _ => anyhow::bail!("sim compares at most two files"),
    };
    text.push('\n');
    Ok(text)
}

/// Prints the chosen format and writes the files of `--out`.
pub(crate) fn write_views(
    runs: &[Run],
    format: Format,
    dir: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let text = match runs {
        [a, b] => compare::side_by_side(a, b),
        [one, ..] => text::single(one),
        [] => String::new(),
    };
    let mut printed = match format {
        Format::Json => json(runs)?,
        Format::Text => text.clone(),
    };
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let all: Vec<&Run> = runs.iter().collect();
        let verdict = text.find("\nverdict:\n").map(|i| &text[i + 1..]);
        for (name, contents) in [
            ("summary.json", json(runs)?),
            ("timeline.csv", csv::timeline(&all)),
            ("report.html", html::page(&all, verdict)?),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, contents)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if format == Format::Text {
            printed.push_str(&format!(
                "\nwrote {0}/summary.json, {0}/timeline.csv and {0}/report.html\n",
                dir.display()
            ));
            if let Some(seeds) = runs.first().and_then(|r| r.summary.seeds.as_ref()) {
                printed.push_str(&format!(
                    "(timeline.csv and the charts: seed {}, the first of the {} seeds)\n",
                    seeds.first, seeds.count
                ));
            }
        }
    }
    out.write_all(printed.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the report")
}

#[cfg(test)]
mod tests;
