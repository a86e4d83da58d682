//! `stormguard sim`: what a retry policy does to many clients at once, in virtual time.
//!
//! Only the published experiments run so far; they check the simulator against an independent
//! one before it is trusted with a service graph.

use std::io::Write;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use stormguard_sim::experiment::brooker_jitter::{self, Config, Report};

use crate::InputError;

/// Arguments of `stormguard sim`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["file", "experiment"])))]
pub(crate) struct Args {
    /// The graph file (TOML) to simulate.
    file: Option<PathBuf>,
    /// Run a published experiment instead of a graph, to compare the simulator with it.
    #[arg(long, value_enum, conflicts_with = "file")]
    experiment: Option<Experiment>,
    /// Clients contending for the row (brooker-jitter).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    clients: u32,
    /// Runs averaged per strategy (brooker-jitter).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    runs: u32,
    /// Seed of the runs: the same seed gives byte-identical output.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Experiment {
    /// Brooker 2015, "Exponential Backoff And Jitter": clients racing to write one row.
    BrookerJitter,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

pub(crate) fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let Some(Experiment::BrookerJitter) = args.experiment else {
        // Said plainly rather than left to a missing subcommand: the flag that does work is named.
        let file = args.file.as_deref().unwrap_or("FILE".as_ref()).display();
        return Err(InputError(format!(
            "sim {file}: the graph simulator is not built yet; available: --experiment brooker-jitter"
        ))
        .into());
    };
    let config = Config {
        clients: args.clients,
        runs: NonZeroU32::new(args.runs).context("--runs is at least 1")?,
        seed: args.seed,
    };
    let report = brooker_jitter::run(&config);
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
        Format::Text => write_text(&report, config.seed, out)?,
    }
    out.flush().context("writing the report")?;
    Ok(ExitCode::SUCCESS)
}

/// The table a person reads: the measured means beside the published ones, where they exist,
/// so a disagreement is seen at once.
fn write_text(report: &Report, seed: u64, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "brooker-jitter: {} clients, mean of {} runs, seed {seed} \
         (Brooker 2015, \"Exponential Backoff And Jitter\")",
        report.clients, report.runs
    )?;
    let published = report
        .strategies
        .iter()
        .all(|(s, _)| s.published(report.clients).is_some());
    write!(out, "{:<20} {:>10} {:>12}", "strategy", "calls", "time ms")?;
    if published {
        write!(
            out,
            " {:>10} {:>12} {:>7} {:>7}",
            "pub calls", "pub time ms", "calls x", "time x"
        )?;
    }
    writeln!(out)?;
    for (strategy, outcome) in &report.strategies {
        write!(
            out,
            "{:<20} {:>10.1} {:>12.1}",
            strategy.name(),
            outcome.calls,
            outcome.time_ms
        )?;
        if let Some(reference) = strategy.published(report.clients) {
            write!(
                out,
                " {:>10.0} {:>12.0} {:>7.2} {:>7.2}",
                reference.calls,
                reference.time_ms,
                outcome.calls / reference.calls,
                outcome.time_ms / reference.time_ms
            )?;
        }
        writeln!(out)?;
    }
    if published {
        writeln!(
            out,
            "pub: means over 100 runs of aws-samples/aws-arch-backoff-simulator; x: measured / published"
        )?;
    } else {
        writeln!(
            out,
            "published figures exist for 50, 100 and 190 clients; run one of those to compare"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    fn run_args(argv: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["sim"];
        full.extend_from_slice(argv);
        let cmd = Cmd::try_parse_from(full)?;
        let mut out = Vec::new();
        run(cmd.args, &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn text_compares_with_the_published_figures_where_they_exist() {
        let args = ["--experiment", "brooker-jitter", "--runs", "2", "--clients"];
        let text = run_args(&[&args[..], &["50"]].concat()).unwrap();
        assert!(text.contains("pub calls"), "{text}");
        let full = text.lines().find(|l| l.starts_with("full-jitter")).unwrap();
        assert!(full.contains(" 333 "), "{text}");
        let text = run_args(&[&args[..], &["20"]].concat()).unwrap();
        assert!(!text.contains("pub calls"), "{text}");
        assert!(text.contains("exist for 50, 100 and 190"), "{text}");
        assert_eq!(text.lines().count(), 8, "{text}");
    }

    #[test]
    fn the_same_arguments_give_the_same_bytes() {
        let argv = [
            "--experiment",
            "brooker-jitter",
            "--clients",
            "15",
            "--runs",
            "3",
            "--seed",
            "4",
            "--format",
            "json",
        ];
        assert_eq!(run_args(&argv).unwrap(), run_args(&argv).unwrap());
    }

    #[test]
    fn a_graph_file_is_an_input_error_that_names_what_works() {
        let err = run_args(&["graph.toml"]).unwrap_err();
        assert!(err.downcast_ref::<InputError>().is_some());
        assert!(
            err.to_string().contains("--experiment brooker-jitter"),
            "{err}"
        );
    }

    #[test]
    fn a_file_or_an_experiment_is_needed_and_runs_are_at_least_one() {
        assert!(
            Cmd::try_parse_from(["sim", "graph.toml", "--experiment", "brooker-jitter"]).is_err()
        );
        assert!(Cmd::try_parse_from(["sim"]).is_err());
        assert!(
            Cmd::try_parse_from(["sim", "--experiment", "brooker-jitter", "--runs", "0"]).is_err()
        );
    }
}
