//! `stormguard demo`: the first five minutes. A storefront graph with the settings sample code
//! ships, what `check` finds in it, what `check --fix` makes of it, and the two side by side in
//! the simulator under the same fault; with `--live`, the proxy doing the same for real on this
//! machine.
//!
//! ## Why nothing here is its own
//! Every step is a command a user can run next on their own graph, so the demo calls those
//! commands' code and prints what they print: the graph file is the one under `examples/graphs/`,
//! "with stormguard" is what `check --fix` writes from it at run time, and the comparison is
//! `sim FILE FILE2`'s. What the demo adds is the order, a heading per step, and a few lines that
//! say in words what the tables show.

mod live;

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use stormguard_graph::model::Scenario;
use stormguard_graph::{check, render, Graph};

use crate::check_cmd::{colour_wanted, fix_summary};
use crate::sim_cmd::{self, compare, parse_duration, Format, Run};

/// The storefront as found, built into the binary from the one file that describes it, so the
/// demo and `examples/graphs/` cannot drift apart.
pub(crate) const AS_FOUND: &str =
    include_str!("../../../../examples/graphs/storefront-as-found.toml");

/// The scenario of [`AS_FOUND`] the demo runs.
const SCENARIO: &str = "db-slow";

/// Arguments of `stormguard demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Where to write the two graphs and the simulator's report (summary.json, timeline.csv,
    /// report.html).
    #[arg(long, value_name = "DIR", default_value = "stormguard-demo")]
    out: PathBuf,
    /// Also start the sidecar proxy in front of local upstreams (one refusing connections, one
    /// slow), send it requests, and print what it did from its own /metrics.
    #[arg(long)]
    live: bool,
    /// How long --live sends requests.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration,
          requires = "live")]
    live_duration: Duration,
    /// Seed of the simulation: the same seed gives the same figures.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub(crate) fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let dir = &args.out;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let as_found_path = dir.join("as-found.toml");
    let with_path = dir.join("with-stormguard.toml");
    let (as_found_name, with_name) = (name(&as_found_path), name(&with_path));
    let as_found = stormguard_graph::parse(&as_found_name, AS_FOUND)
        .context("the built-in storefront does not parse")?;
    let fixed = stormguard_graph::fix(&as_found_name, AS_FOUND)
        .context("check --fix on the built-in storefront")?;
    for (path, text) in [
        (&as_found_path, AS_FOUND),
        (&with_path, fixed.text.as_str()),
    ] {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let scenario = as_found
        .scenarios
        .get(SCENARIO)
        .context("the built-in storefront has no scenario db-slow")?;

    let mut text = intro(&as_found, &as_found_name);
    let report = check::check(&as_found);
    text.push_str(&render::text_in(
        &as_found,
        &report,
        &as_found_name,
        colour_wanted(),
    ));
    let _ = write!(
        text,
        "\n== 2. stormguard check --fix: {with_name} is the same graph with every value the \
         findings propose ==\n\n{}",
        fix_summary(&fixed)
    );
    let _ = writeln!(
        text,
        "\n== 3. stormguard sim: {}; both graphs see the same users and the same fault (seed \
         {}) ==\n",
        scenario_words(&as_found, scenario),
        args.seed
    );
    say(out, &text)?;
    let faulty = scenario
        .faults
        .first()
        .map_or_else(|| "db".to_string(), |f| f.service.clone());

    let runs = sim_cmd::simulate(
        &(as_found_name.clone(), as_found),
        Some(&(with_name.clone(), fixed.graph)),
        Some(SCENARIO),
        args.seed,
        None,
    )?;
    sim_cmd::write_views(&runs, Format::Text, Some(dir), out)?;
    say(out, &in_short(&runs, &faulty))?;
    say(
        out,
        &next_steps(dir, &as_found_name, &with_name, args.live, args.seed),
    )?;

    if args.live {
        live::run(args.live_duration, dir, out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A path as the user will type it.
fn name(path: &Path) -> String {
    path.display().to_string()
}

fn say(out: &mut dyn Write, text: &str) -> anyhow::Result<()> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the demo")
}

/// What the demo is, the graph's shape from the entry down, and the heading of step 1.
fn intro(graph: &Graph, as_found: &str) -> String {
    let mut order = vec![graph.entry.service.as_str()];
    let mut next = 0;
    while let Some(&name) = order.get(next) {
        next += 1;
        for call in graph.services.get(name).map_or(&[][..], |s| &s.calls) {
            if !order.contains(&call.to.as_str()) {
                order.push(&call.to);
            }
        }
    }
    let shape: Vec<String> = order
        .iter()
        .filter_map(|name| graph.services.get(*name))
        .filter(|s| !s.calls.is_empty())
        .map(|s| {
            let callees: Vec<&str> = s.calls.iter().map(|c| c.to.as_str()).collect();
            format!("{} -> {}", s.name, callees.join(" and "))
        })
        .collect();
    format!(
        "stormguard demo: a storefront ({}) with the timeouts and retries sample code ships, \
         then with the ones stormguard proposes, under the same fault.\n\n\
         == 1. stormguard check {as_found}: three attempts at every layer, a 1s timeout on \
         every call, no backoff, no retry budget ==\n\n",
        shape.join(", ")
    )
}

/// `db slows down x10 from 15s to 20s, at 200 users a second`.
fn scenario_words(graph: &Graph, scenario: &Scenario) -> String {
    let faults: Vec<String> = scenario
        .faults
        .iter()
        .map(|f| {
            let what = if f.down {
                "is down".to_string()
            } else if f.error_rate > 0.0 {
                format!("fails {:.0}% of requests", f.error_rate * 100.0)
            } else {
                format!("slows down x{}", f.slowdown)
            };
            format!(
                "{} {what} from {}s to {}s",
                f.service,
                f.from.as_secs_f64(),
                f.to.as_secs_f64()
            )
        })
        .collect();
    let rate = scenario.rate.unwrap_or(graph.entry.rate);
    format!("{}, at {rate} users a second", faults.join(" and "))
}

/// Attempts that reached `service` per user request that arrived in the fault window, from the
/// timeline: the load the fault met, which the whole run's figure dilutes with the calm around
/// it.
fn load_during_fault(run: &Run, service: &str) -> Option<f64> {
    let (from, to) = compare::fault_window(run)?;
    let (mut users, mut attempts) = (0u64, 0u64);
    for step in &run.outcome.timeline {
        let at = Duration::from_secs(step.at_s);
        if at >= from && at < to {
            users += step.users;
            attempts += step.attempts.get(service).copied().unwrap_or(0);
        }
    }
    (users > 0).then(|| attempts as f64 / users as f64)
}

/// The comparison in words: whether each run came back after the fault, goodput after it, the
/// work done for callers that had already left, and the load the faulty service met while it
/// lasted.
///
/// The figures that tell a metastable failure from a fault that merely hurt: a system that
/// stays down after its trigger has ended (recovery "never", goodput after it near zero) and
/// keeps working for nobody (wasted work) against one that comes back within seconds.
fn in_short(runs: &[Run], service: &str) -> String {
    let mut text = String::new();
    let Some((from, to)) = runs.first().and_then(compare::fault_window) else {
        return text;
    };
    let _ = writeln!(
        text,
        "\nIn short: {service} was slow for {}s ({}s to {}s), then as fast as before.",
        (to - from).as_secs_f64(),
        from.as_secs_f64(),
        to.as_secs_f64()
    );
    for (label, run) in ["as found", "with stormguard"].iter().zip(runs) {
        let load = load_during_fault(run, service).map_or("-".to_string(), |l| format!("{l:.2}"));
        let (_, after) = compare::goodput_around_fault(run);
        let after = after.map_or("-".to_string(), |g| format!("{:.1}%", g * 100.0));
        let recovered = match run.summary.recovered_at_s {
            Some(at) => format!(
                "recovered at {at}s, {}s after the fault,",
                round_tenths(at - to.as_secs_f64())
            ),
            None => "never recovered: the retries kept it down after the fault,".to_string(),
        };
        let _ = writeln!(
            text,
            "  {label:<16} {recovered} {after} of users answered in time after it; {load} \
             attempts reached {service} per user request while it was slow, and {:.0}s of work \
             went to callers that had given up",
            run.summary.wasted_work_s()
        );
    }
    text
}

/// Seconds to a tenth, as the summary rounds them.
fn round_tenths(seconds: f64) -> f64 {
    (seconds * 10.0).round() / 10.0
}

/// Where the files are and what to run next, with the program as the user invoked it (so
/// `cargo run` users get a path that works from where they are).
fn next_steps(dir: &Path, as_found: &str, with: &str, live: bool, seed: u64) -> String {
    let program = std::env::args()
        .next()
        .filter(|p| p.contains(std::path::MAIN_SEPARATOR))
        .unwrap_or_else(|| "stormguard".to_string());
    // Pasted into a shell as they are: paths with spaces quoted, and the demo's own seed, so
    // that the run gives the figures shown.
    let (program, as_found_arg, with_arg) = (shell(&program), shell(as_found), shell(with));
    let seed = if seed == 0 {
        String::new()
    } else {
        format!(" --seed {seed}")
    };
    let mut text = format!(
        "\nThe two graphs are {as_found} and {with}: edit them, or write your own. Open \
         {}/report.html for both runs' charts. Next:\n  \
         {program} check {as_found_arg}\n  \
         {program} sim {as_found_arg} {with_arg} --scenario {SCENARIO}{seed}\n",
        dir.display()
    );
    if !live {
        let _ = writeln!(
            text,
            "  {program} demo --live      (the sidecar proxy, for real, on this machine)"
        );
    }
    text
}

/// `text` as one shell word: as it is when it holds only characters no shell treats apart,
/// else in single quotes (a quote inside closed, escaped and reopened).
fn shell(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests;
