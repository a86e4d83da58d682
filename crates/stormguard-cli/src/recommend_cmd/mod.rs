//! `stormguard recommend`: timeouts from measured latency, the loop from production metrics back
//! to settings.
//!
//! Reads latency histograms (a Prometheus server's buckets over a window, or a `/metrics` page),
//! takes p50, p99 and p99.9 as Prometheus does, and suggests each a timeout at the
//! false-timeout rate (Brooker's p99.9 by default). With `--graph`, ties the series to the
//! graph's calls, says what share of requests each call's current timeout lets through (Mux's
//! Apdex-style figure), writes the graph with the suggested timeouts, and runs `check` on it:
//! a timeout raised to the callee's p99.9 can exceed its caller's and break telescoping, and
//! that must be seen before it ships, not after.
//!
//! ## Exit codes
//! 0; 1 when `check` finds an error in the graph with the suggested timeouts that it does not
//! find in the graph as given (the suggestion breaks something; errors already there are
//! `check`'s to report); 2 on bad input, and when no series gives a timeout (none is a
//! histogram, or each was skipped for the reason printed: a script must not read "no
//! suggestion" as success); 3 when the server or page cannot be read.

pub(crate) mod fetch;
mod render;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use stormguard_graph::report::{Finding, Severity};
use stormguard_graph::{check, Graph};
use stormguard_recommend::calls::{self, CallPlan};
use stormguard_recommend::readable::show;
use stormguard_recommend::rewrite::GraphFile;
use stormguard_recommend::series::{Series, Unit};
use stormguard_recommend::suggest::{quantile_name, suggest, Latency, Skip, Suggestion};

use crate::InputError;
use fetch::Source;

/// Arguments of `stormguard recommend`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["prometheus", "metrics"])))]
pub(crate) struct Args {
    /// A Prometheus server, e.g. http://127.0.0.1:9090: every histogram's buckets over --window.
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    /// How far back to look on the Prometheus server ("1h", "30m", "24h").
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    window: String,
    /// A Prometheus text exposition page: a file, `-` for standard input, or an http:// URL
    /// such as the proxy's http://127.0.0.1:9901/metrics.
    #[arg(long, value_name = "FILE_OR_URL")]
    metrics: Option<String>,
    /// A graph file: ties series to its calls (by a call's `metrics = { job = "...", ... }`
    /// key, else by the called service's name as the `upstream`, `service`, `route` or `job`
    /// label) and checks the graph with the suggested timeouts.
    #[arg(long, value_name = "FILE")]
    graph: Option<PathBuf>,
    /// The share of good requests a timeout may cut off: 0.001 sets it at the p99.9.
    /// Default: the graph's [check] false_timeout_rate, else 0.001.
    #[arg(long, value_name = "RATE")]
    false_timeout_rate: Option<f64>,
    /// The unit of histograms whose name (`_seconds`, `_milliseconds`, `_ms`) and page state
    /// none; without it they are skipped, as they may not be latencies at all.
    #[arg(long, value_enum, value_name = "UNIT")]
    unit: Option<UnitArg>,
    /// A table to read, JSON for scripts, or the graph file with the suggested timeouts
    /// (needs --graph; `check`'s new findings go to standard error).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Toml,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum UnitArg {
    Seconds,
    Milliseconds,
}

/// Everything the command found, for the renderers.
struct Outcome {
    /// Where the figures came from.
    source: String,
    false_timeout_rate: f64,
    /// Every series, with its suggestion or why there is none.
    series: Vec<(Series, Result<Suggestion, Skip>)>,
    applied: Option<Applied>,
}

/// The suggestions applied to the graph, and what `check` says of the result.
struct Applied {
    /// The graph file, as given.
    file: String,
    plans: Vec<CallPlan>,
    /// The graph file with the suggested timeouts.
    text: String,
    /// Findings of the result that the graph as given does not have.
    new_findings: Vec<Finding>,
    /// Findings of the result that the graph as given has too.
    old_findings: usize,
    /// Of those, the ones whose words changed (a figure moved: a timeout-inversion that the
    /// suggestion made worse is not "as before"), as the result has them.
    changed_findings: Vec<Finding>,
    /// Findings of the graph as given that the result no longer has.
    resolved_findings: Vec<Finding>,
}

impl Applied {
    fn breaks_something(&self) -> bool {
        self.new_findings
            .iter()
            .any(|f| f.severity == Severity::Error)
    }
}

pub(crate) fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    run_with(args, out, &mut std::io::stderr())
}

fn run_with(args: Args, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if args.format == Format::Toml && args.graph.is_none() {
        return Err(InputError(
            "--format toml writes the graph with the suggested timeouts: give it with --graph FILE"
                .to_string(),
        )
        .into());
    }
    let graph = args.graph.as_deref().map(load_graph).transpose()?;
    let rate = args
        .false_timeout_rate
        .or(graph.as_ref().map(|g| g.graph.check.false_timeout_rate))
        .unwrap_or(0.001);
    if !(rate > 0.0 && rate < 1.0) {
        return Err(InputError(format!(
            "--false-timeout-rate {rate}: give a share strictly between 0 and 1, e.g. 0.001 for \
             the p99.9"
        ))
        .into());
    }
    let unit = args.unit.map(|u| match u {
        UnitArg::Seconds => Unit::Seconds,
        UnitArg::Milliseconds => Unit::Milliseconds,
    });
    let source = match (&args.prometheus, &args.metrics) {
        (Some(url), _) => Source::Prometheus {
            url: url.clone(),
            window: fetch::window(&args.window)?,
        },
        (None, Some(page)) => Source::Page(page.clone()),
        (None, None) => unreachable!("clap requires one of --prometheus and --metrics"),
    };
    let series = fetch::series(&source, unit)?;
    let suggestions = series
        .into_iter()
        .map(|s| {
            let suggestion = Latency::of(&s, unit)
                .ok_or(Skip::NoUnit)
                .and_then(|latency| suggest(&latency, rate));
            (s, suggestion)
        })
        .collect::<Vec<_>>();
    let all: Vec<Series> = suggestions.iter().map(|(s, _)| s.clone()).collect();
    let applied = graph.map(|g| apply(&g, &all, unit, rate)).transpose()?;
    let outcome = Outcome {
        source: source.describe(),
        false_timeout_rate: rate,
        series: suggestions,
        applied,
    };
    let (stdout, stderr) = match args.format {
        Format::Text => (render::text(&outcome), String::new()),
        Format::Json => (render::json(&outcome), String::new()),
        Format::Toml => {
            let applied = outcome.applied.as_ref().expect("--graph was checked above");
            (applied.text.clone(), render::check_text(applied))
        }
    };
    out.write_all(stdout.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the report")?;
    err.write_all(stderr.as_bytes())
        .context("writing the findings")?;
    let breaks = outcome
        .applied
        .as_ref()
        .is_some_and(Applied::breaks_something);
    let none = outcome.series.iter().all(|(_, s)| s.is_err());
    Ok(if none {
        ExitCode::from(2)
    } else if breaks {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A graph given with `--graph`: its model and its document.
struct GraphInput {
    path: String,
    graph: Graph,
    file: GraphFile,
}

fn load_graph(path: &std::path::Path) -> anyhow::Result<GraphInput> {
    let name = path.display().to_string();
    let text = stormguard_graph::input::read_text(path)
        .map_err(|e| InputError(format!("{name}: cannot read: {e}")))?;
    // The error already says file:line:column, the key and what would be valid.
    let graph = stormguard_graph::parse(&name, &text).map_err(|e| InputError(e.to_string()))?;
    let file = GraphFile::parse(&text).map_err(|e| InputError(format!("{name}: {e}")))?;
    Ok(GraphInput {
        path: name,
        graph,
        file,
    })
}

/// The longest timeout a graph file may hold (an hour).
/// Why a call's suggestion is said but not written into the graph, if it is not; the one
/// answer the graph written, the text table and the JSON give.
///
/// A tail past the longest timeout a graph may hold: the graph would not read back, and the
/// whole table was lost for one call. A floor below the current timeout: the quantile lies
/// somewhere above the highest bucket, so cutting to the floor fails more healthy requests
/// than the false-timeout rate, by how much the buckets cannot say (a 1s timeout was cut to the
/// 100ms floor with 1% of requests above it, and "no new findings"); the table's warning says
/// which bucket to add.
pub(super) fn not_written(plan: &CallPlan) -> Option<String> {
    let suggestion = plan.suggestion.as_ref().ok()?;
    if suggestion.timeout > longest_timeout() {
        Some(too_long())
    } else if suggestion.only_a_floor() && plan.current.is_some_and(|t| t > suggestion.timeout) {
        Some(
            "only a floor, below the current timeout, which it would cut to fail more requests \
             than the false-timeout rate"
                .to_string(),
        )
    } else {
        None
    }
}

/// What a suggestion past the longest timeout a graph may hold is.
pub(super) fn too_long() -> String {
    format!(
        "above {}, the longest timeout a graph may hold; a tail this long is a job's, not a \
         request's",
        stormguard::duration::format(longest_timeout())
    )
}

pub(super) fn longest_timeout() -> std::time::Duration {
    let stormguard_graph::parse::ranges::Bounds::Duration(_, longest) =
        stormguard_graph::parse::ranges::TIMEOUT.bounds
    else {
        unreachable!("a timeout's range is of durations")
    };
    longest
}

/// Writes each call's suggested timeout into the graph (where it differs from the current
/// one) and checks the result against the graph as given.
fn apply(
    input: &GraphInput,
    series: &[Series],
    unit: Option<Unit>,
    rate: f64,
) -> anyhow::Result<Applied> {
    let keys = input.file.metrics_keys();
    let plans = calls::plan(&input.graph, &keys, series, unit, rate);
    let mut file = input.file.clone();
    for plan in &plans {
        let Ok(suggestion) = &plan.suggestion else {
            continue;
        };
        if plan.current == Some(suggestion.timeout) || not_written(plan).is_some() {
            continue;
        }
        let was = plan
            .current
            .map_or("none".to_string(), stormguard::duration::format);
        let note = format!(
            "stormguard recommend: {} {} (was {was})",
            quantile_name(suggestion.quantile),
            show(suggestion.estimate)
        );
        file.set_timeout(&plan.from, plan.index, suggestion.timeout, &note);
    }
    let text = file.to_string();
    let name = format!("{} (with the suggested timeouts)", input.path);
    let suggested = stormguard_graph::parse(&name, &text)
        .context("the graph with the suggested timeouts does not read back")?;
    let before = check::check(&input.graph).findings;
    let after = check::check(&suggested).findings;
    let same = |a: &Finding, b: &Finding| {
        a.rule == b.rule && a.from == b.from && a.to == b.to && a.service == b.service
    };
    let resolved = before
        .iter()
        .filter(|b| !after.iter().any(|f| same(f, b)))
        .cloned()
        .collect();
    let (old, new): (Vec<Finding>, Vec<Finding>) = after
        .into_iter()
        .partition(|f| before.iter().any(|b| same(f, b)));
    let changed = old
        .iter()
        .filter(|f| !before.iter().any(|b| same(f, b) && b.message == f.message))
        .cloned()
        .collect();
    Ok(Applied {
        file: input.path.clone(),
        plans,
        text,
        new_findings: new,
        old_findings: old.len(),
        changed_findings: changed,
        resolved_findings: resolved,
    })
}

#[cfg(test)]
mod tests;
