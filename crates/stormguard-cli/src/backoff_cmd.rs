//! `stormguard backoff`: what a backoff policy really does, sampled.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use stormguard::backoff::{self, Backoff, JitterRng};

use crate::InputError;

/// Arguments of `stormguard backoff`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The policy, in the library's text form, e.g. "full-jitter(base=25ms, cap=1s)".
    text: String,
    /// Attempts in all, the first included: retries 1..N-1 are shown.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=64))]
    attempts: u32,
    /// Sampled request sequences.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    samples: u32,
    /// Seed for the jitter (the same seed gives the same output).
    #[arg(long, conflicts_with = "host_id")]
    seed: Option<u64>,
    /// Derive the seed from a host identity, as a host with `deterministic` jitter would.
    #[arg(long)]
    host_id: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

#[derive(Serialize, Debug, PartialEq)]
struct Report {
    backoff: String,
    retries: Vec<RetryStats>,
    worst_case_sleep_ms: f64,
}

#[derive(Serialize, Debug, PartialEq)]
struct RetryStats {
    n: u32,
    min_ms: f64,
    mean_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn ms(d: Duration) -> f64 {
    // Microsecond resolution is plenty for a backoff and keeps the JSON readable.
    (d.as_nanos() as f64 / 1e3).round() / 1e3
}

/// The `q` quantile of sorted samples, by the nearest-rank method.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sample(backoff: &Backoff, retries: u32, samples: u32, rng: &mut JitterRng) -> Vec<RetryStats> {
    let mut per_retry: Vec<Vec<Duration>> =
        vec![Vec::with_capacity(samples as usize); retries as usize];
    for _ in 0..samples {
        let mut schedule = backoff.schedule();
        for delays in per_retry.iter_mut() {
            delays.push(schedule.next_delay(rng));
        }
    }
    per_retry
        .into_iter()
        .enumerate()
        .map(|(i, mut delays)| {
            delays.sort_unstable();
            let total: Duration = delays.iter().sum();
            RetryStats {
                n: i as u32 + 1,
                min_ms: ms(delays[0]),
                mean_ms: ms(total / samples),
                p50_ms: ms(quantile(&delays, 0.5)),
                p99_ms: ms(quantile(&delays, 0.99)),
                max_ms: ms(delays[delays.len() - 1]),
            }
        })
        .collect()
}

pub(crate) fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let backoff: Backoff = args
        .text
        .parse()
        .map_err(|e| InputError(format!("backoff {:?}: {e}", args.text)))?;
    let (mut rng, seed_note) = match (&args.host_id, args.seed) {
        (Some(id), _) => (backoff::for_host(id), format!("host id {id:?}")),
        (None, seed) => {
            let seed = seed.unwrap_or(0);
            (backoff::seeded(seed), format!("seed {seed}"))
        }
    };
    let retries = args.attempts - 1;
    let report = Report {
        backoff: backoff.to_string(),
        retries: sample(&backoff, retries, args.samples, &mut rng),
        worst_case_sleep_ms: ms(backoff.worst_case_total(retries)),
    };
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
        Format::Text => {
            writeln!(
                out,
                "{}: {} attempts ({} retries), {} sampled sequences, {}",
                report.backoff, args.attempts, retries, args.samples, seed_note
            )?;
            writeln!(
                out,
                "{:>5} {:>11} {:>11} {:>11} {:>11} {:>11}",
                "retry", "min", "mean", "p50", "p99", "max"
            )?;
            for r in &report.retries {
                writeln!(
                    out,
                    "{:>5} {:>9.3}ms {:>9.3}ms {:>9.3}ms {:>9.3}ms {:>9.3}ms",
                    r.n, r.min_ms, r.mean_ms, r.p50_ms, r.p99_ms, r.max_ms
                )?;
            }
            writeln!(
                out,
                "worst case: {:.3}ms asleep over {} retries{}",
                report.worst_case_sleep_ms,
                retries,
                if backoff.is_jittered() || matches!(backoff, Backoff::None) {
                    ""
                } else {
                    " (no jitter: clients that fail together retry together)"
                }
            )?;
        }
    }
    out.flush().context("writing the report")?;
    Ok(ExitCode::SUCCESS)
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
        let mut full = vec!["backoff"];
        full.extend_from_slice(argv);
        let cmd = Cmd::try_parse_from(full)?;
        let mut out = Vec::new();
        run(cmd.args, &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn json_has_the_documented_shape_and_bounds() {
        let text = run_args(&[
            "full-jitter(base=25ms, cap=250ms)",
            "--attempts",
            "4",
            "--samples",
            "2000",
            "--seed",
            "3",
            "--format",
            "json",
        ])
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["backoff"], "full-jitter(base=25ms, cap=250ms)");
        let retries = v["retries"].as_array().unwrap();
        assert_eq!(retries.len(), 3);
        for (i, r) in retries.iter().enumerate() {
            let ceiling = 25.0 * 2f64.powi(i as i32);
            assert_eq!(r["n"], i as u64 + 1);
            assert!(r["min_ms"].as_f64().unwrap() >= 0.0);
            assert!(r["max_ms"].as_f64().unwrap() <= ceiling);
            let mean = r["mean_ms"].as_f64().unwrap();
            assert!(
                (mean - ceiling / 2.0).abs() < ceiling * 0.05,
                "mean {mean} for c={ceiling}"
            );
            for key in ["p50_ms", "p99_ms"] {
                assert!(r[key].as_f64().is_some());
            }
        }
        assert_eq!(v["worst_case_sleep_ms"], 25.0 + 50.0 + 100.0);
    }

    #[test]
    fn the_same_seed_or_host_gives_the_same_output() {
        let a = run_args(&["decorrelated-jitter(base=10ms, cap=1s)", "--seed", "9"]).unwrap();
        let b = run_args(&["decorrelated-jitter(base=10ms, cap=1s)", "--seed", "9"]).unwrap();
        assert_eq!(a, b);
        let c = run_args(&[
            "decorrelated-jitter(base=10ms, cap=1s)",
            "--host-id",
            "web-7",
        ])
        .unwrap();
        let d = run_args(&[
            "decorrelated-jitter(base=10ms, cap=1s)",
            "--host-id",
            "web-7",
        ])
        .unwrap();
        assert_eq!(c, d);
        assert_ne!(a, c);
    }

    #[test]
    fn exponential_without_jitter_is_flagged() {
        let text = run_args(&["exponential(base=100ms, cap=1s)", "--attempts", "3"]).unwrap();
        assert!(text.contains("no jitter"), "{text}");
        assert!(text.contains("worst case: 300.000ms"), "{text}");
    }

    #[test]
    fn a_bad_text_is_an_input_error() {
        let err = run_args(&["exponential(base=100ms)"]).unwrap_err();
        assert!(err.downcast_ref::<InputError>().is_some());
        assert!(err.to_string().contains("cap"), "{err}");
    }
}
