//! The published experiments `stormguard sim --experiment` runs, which check the simulator
//! against an independent one before it is trusted with a service graph.

use std::io::Write;
use std::num::NonZeroU32;
use std::process::ExitCode;

use anyhow::Context;
use stormguard_sim::experiment::brooker_jitter::{self, Config, Report};

use super::Format;

/// Runs Brooker's experiment and prints it in `format`.
pub(crate) fn run(
    clients: u32,
    runs: u32,
    seed: u64,
    format: Format,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let config = Config {
        clients,
        runs: NonZeroU32::new(runs).context("--runs is at least 1")?,
        seed,
    };
    let report = brooker_jitter::run(&config);
    match format {
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
