//! `stormguard`: timeouts, retries, backoff and jitter you can see before you deploy them.

mod backoff_cmd;
mod check_cmd;
mod demo;
mod explain_cmd;
mod export_cmd;
mod graph_file;
mod health_cmd;
mod import_cmd;
mod logging;
mod proxy_cmd;
mod recommend_cmd;
mod sim_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator. `stormguard proxy` allocates a few dozen small
/// objects per request (request heads, header maps, futures) and frees them within
/// microseconds, on one thread or a few; glibc's malloc spent 7% of a profiled proxy core on
/// that, and mimalloc's per-thread free lists serve it with less work and better locality.
/// Measured with bench/proxy.sh: see the commit that made this choice.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Timeouts, retries, backoff with jitter, retry budgets and deadlines: see what a policy does
/// before it is deployed.
#[derive(Parser, Debug)]
#[command(
    name = "stormguard",
    version,
    about,
    long_about = None,
    after_help = "Every key of the graph file and of the proxy settings: `stormguard reference`.\n\
                  Shell completions: `stormguard completions bash|zsh|fish`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start here: a storefront graph with the settings sample code ships, what check finds in
    /// it, what check --fix makes of it, and both simulated under the same fault side by side;
    /// writes the two graphs and an HTML report (--out DIR). --live also runs the proxy in front
    /// of local upstreams and prints what it did.
    Demo(demo::Args),
    /// Sample a backoff policy: the delay before each retry and the worst-case time spent waiting.
    Backoff(backoff_cmd::Args),
    /// Check a service graph file: timeouts that do not telescope, retry amplification, edge
    /// budgets blown and the rest. Exit 1 on findings at or above --fail-on, 2 on bad input.
    /// --fix writes the graph with every value the findings propose; --rules lists the rules,
    /// and `stormguard explain RULE` says what one computes and how to fix it.
    Check(check_cmd::Args),
    /// Explain a rule of check (`stormguard explain timeout-inversion`): what it computes, the
    /// [check] thresholds it reads, why it matters and how to fix it. Without RULE, every rule
    /// with a one-line summary.
    Explain(explain_cmd::Args),
    /// Simulate a graph file's scenario in virtual time: retry storms, wasted work, recovery;
    /// two files side by side on the same arrivals and faults. Also the published experiments
    /// (`--experiment brooker-jitter`) that check the simulator.
    Sim(sim_cmd::Args),
    /// Run the sidecar proxy from its settings file (`--validate`: check the file, exit 0 or 2
    /// with file:line:column). SIGHUP, POST /reload on the admin address, or an edit reloads it;
    /// SIGTERM drains and exits 0.
    Proxy(proxy_cmd::Args),
    /// Ask a running proxy's admin endpoint for /healthz: exit 0 when it answers 200, 1 when it
    /// is draining or does not answer. For Kubernetes `exec` probes, where the admin endpoint
    /// stays on the pod's loopback.
    Health(health_cmd::Args),
    /// Read the timeouts and retries a mesh already runs (Kubernetes, Istio, Gateway API,
    /// Linkerd, Envoy, gRPC service configs; files or directories) into a graph with the source
    /// of every value; `check` and `sim` take the same paths. Exit 2 on a malformed manifest,
    /// at file:line:column.
    Import(import_cmd::Args),
    /// Timeouts from measured latency: p50, p99, p99.9 of Prometheus histograms (a server or a
    /// /metrics page) and the timeout at --false-timeout-rate; with --graph, per call, checked.
    Recommend(recommend_cmd::Args),
    /// Write a graph's policies in Istio, Gateway API, Linkerd, Envoy or gRPC resources: into
    /// the files it was imported from (--from; comments kept), new resources otherwise; what
    /// the target cannot express is listed on stderr.
    Export(export_cmd::Args),
    /// Print the file reference: every key of the graph file and of the proxy settings, with
    /// its type, valid values, default and meaning, and the proxy's answers and access log
    /// (Markdown, as built into this binary; `stormguard reference | less`).
    Reference,
    /// Print a completion script for SHELL on stdout: `stormguard completions bash >
    /// ~/.local/share/bash-completion/completions/stormguard`, `... zsh > ~/.zfunc/_stormguard`,
    /// `... fish > ~/.config/fish/completions/stormguard.fish`.
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// docs/reference.md, built in: an installed binary has no checkout to point at.
const REFERENCE: &str = include_str!("../../../docs/reference.md");

/// Writes `shell`'s completion script for every command and argument of [`Cli`].
fn completions(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    // Made in memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "stormguard", &mut script);
    out.write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// An error in what the user gave us (exit 2), as opposed to a failure while running (exit 3;
/// exit 1 is `check`'s "a finding at or above --fail-on").
#[derive(Debug)]
pub(crate) struct InputError(pub(crate) String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Whether `error` is a write to a pipe whose reader has gone (EPIPE; Rust ignores SIGPIPE, so
/// the write fails instead of the process dying quietly, as a C tool would).
fn closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args, &mut std::io::stdout().lock()),
        Command::Backoff(args) => backoff_cmd::run(args, &mut std::io::stdout().lock()),
        Command::Check(args) => check_cmd::run(args, &mut std::io::stdout().lock()),
        Command::Explain(args) => explain_cmd::run(args, &mut std::io::stdout().lock()),
        Command::Sim(args) => sim_cmd::run(args, &mut std::io::stdout().lock()),
        Command::Proxy(args) => proxy_cmd::run(args, &mut std::io::stdout().lock()),
        Command::Health(args) => health_cmd::run(args, &mut std::io::stdout().lock()),
        Command::Recommend(args) => recommend_cmd::run(args, &mut std::io::stdout().lock()),
        Command::Export(args) => export_cmd::run(args, &mut std::io::stdout().lock()),
        Command::Import(args) => import_cmd::run(args, &mut std::io::stdout().lock()),
        Command::Reference => {
            use std::io::Write;
            std::io::stdout()
                .lock()
                .write_all(REFERENCE.as_bytes())
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from)
        }
        Command::Completions { shell } => completions(shell, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(code) => code,
        // The reader of our output left (`stormguard reference | grep -q ...`, `| head`): what
        // it wanted it had, and a tool in a pipe says nothing then, as those of the shell do.
        Err(error) if closed_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stormguard: {error:#}");
            // 1 is `check`'s "findings at or above --fail-on"; a failure to run (say, a full
            // disk under the report) must not read as that, nor as a clean 0.
            if error.downcast_ref::<InputError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(3)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shell_gets_a_script_that_completes_every_command() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            assert_eq!(completions(shell, &mut out).unwrap(), ExitCode::SUCCESS);
            let script = String::from_utf8(out).unwrap();
            for command in ["demo", "check", "sim", "proxy", "reference", "completions"] {
                assert!(script.contains(command), "{shell}: no `{command}`");
            }
            assert!(script.contains("log-format"), "{shell}: no proxy arguments");
        }
    }

    #[test]
    fn the_reference_is_built_in_and_help_points_to_it() {
        assert!(REFERENCE.starts_with("# File reference"));
        assert!(REFERENCE.contains("### The access log"));
        use clap::CommandFactory;
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("stormguard reference"), "{help}");
        let mut proxy = Cli::command();
        let proxy = proxy.find_subcommand_mut("proxy").unwrap();
        let help = proxy.render_help().to_string();
        assert!(help.contains("stormguard reference"), "{help}");
        assert!(!help.contains("examples/"), "{help}");
    }
}
