//! `stormguard proxy`: the sidecar, run from its settings file, or the file checked with
//! `--validate` the way `check` checks a graph (exit 0, or 2 at `file:line:column`).
//!
//! ## What running it does
//! Binds the listen and admin addresses (port 0 takes a free port), prints one line with the
//! addresses actually bound, and serves until SIGTERM or SIGINT. Meanwhile SIGHUP, `POST
//! /reload` and an edit of the file reload it. At SIGTERM the drain starts: `/healthz` answers
//! 503, no new connection is accepted, requests in flight get up to `listen.shutdown_grace` (as
//! the running settings say at that moment) to finish, and the process exits 0.
//!
//! ## Log lines
//! The library logs through `tracing`, the access log included (one line per request, target
//! `stormguard::access`, `listen.access_log`); [`crate::logging`] writes each event as one
//! timestamped line on stderr, text or JSON (`--log-format`), filtered by `STORMGUARD_LOG`
//! (`info` by default; an invalid filter is refused with exit 2 before anything listens).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use stormguard_proxy::admin::{AdminServer, Health};
use stormguard_proxy::config::{self, Config};
use stormguard_proxy::reload::{ReloadMetrics, Reloader};
use stormguard_proxy::signals::{Hangups, Termination};
use stormguard_proxy::Proxy;
use tokio::net::TcpListener;

use crate::logging::{self, LogFormat};
use crate::InputError;

/// Arguments of `stormguard proxy`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The settings file (TOML); `stormguard reference` prints every key it takes.
    #[arg(long)]
    config: PathBuf,
    /// Check the file and exit: 0 when it is valid, 2 with file:line:column when it is not.
    #[arg(long)]
    validate: bool,
    /// How log lines and the access log are written on stderr: text, or one JSON object per
    /// line. STORMGUARD_LOG filters them (default info; e.g. info,stormguard::access=off).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

pub(crate) fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let file = args.config.display().to_string();
    // The error already says file:line:column, the key and what would be valid.
    let config = config::load(&args.config).map_err(|e| InputError(e.to_string()))?;
    if args.validate {
        writeln!(out, "{file}: ok ({})", counts(&config)).context("writing the verdict")?;
        return Ok(ExitCode::SUCCESS);
    }
    let filter = logging::filter(std::env::var(logging::LOG_VARIABLE).ok().as_deref())?;
    logging::install(filter, args.log_format);
    // Text lines need no fields: the access log makes its line itself, for half the work.
    stormguard_proxy::access_log_format(match args.log_format {
        LogFormat::Text => stormguard_proxy::AccessLineFormat::Text,
        LogFormat::Json => stormguard_proxy::AccessLineFormat::Json,
    });
    let runtime = runtime_builder(std::env::var("TOKIO_WORKER_THREADS").ok().as_deref())
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(serve(args.config, config, out));
    // Whatever is still running (admin connections, the watcher) ends with the process.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The runtime for `TOKIO_WORKER_THREADS` (one worker per core when unset).
///
/// One worker is a current-thread runtime: everything (accepting, every connection, the admin
/// endpoint) runs on one thread, as in one nginx or HAProxy worker. The multi-thread runtime
/// with one worker would run the accept loop on the main thread and the connections on the
/// worker, and pay for work stealing, cross-thread wake-ups and atomic task queues that one
/// thread has no use for (measured: less CPU time per request on one core).
fn runtime_builder(worker_threads: Option<&str>) -> tokio::runtime::Builder {
    if worker_threads.map(str::trim) == Some("1") {
        tokio::runtime::Builder::new_current_thread()
    } else {
        // Honours TOKIO_WORKER_THREADS itself.
        tokio::runtime::Builder::new_multi_thread()
    }
}

/// "2 routes, 1 upstream".
fn counts(config: &Config) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(config.routes.len(), "route"),
        plural(config.upstreams.len(), "upstream")
    )
}

async fn serve(path: PathBuf, config: Config, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    // Before anything can announce the proxy: a SIGHUP or SIGTERM from then on is ours.
    let termination = Termination::install().context("installing the SIGTERM handler")?;
    let hangups = Hangups::install().context("installing the SIGHUP handler")?;
    let file = path.display().to_string();
    let listener = bind("listen", config.listen.address).await?;
    let admin_listener = bind("admin", config.admin.address).await?;

    // The proxy runs with the addresses as bound, so /config shows the real ports; the reloader
    // keeps the addresses as the file wrote them, to tell a moved address from port 0.
    let mut running = config.clone();
    running.listen.address = listener.local_addr().context("the listen address")?;
    running.admin.address = admin_listener.local_addr().context("the admin address")?;
    let (listen, admin) = (running.listen.address, running.admin.address);
    let mut registry = Registry::default();
    let proxy =
        Proxy::new(running, &mut registry).map_err(|e| InputError(format!("{file}: {e}")))?;
    let metrics = ReloadMetrics::register(&mut registry);
    let reloader = Arc::new(Reloader::new(
        path,
        Arc::new(proxy.clone()),
        metrics,
        config.clone(),
    ));
    let health = Arc::new(Health::default());
    let admin_server = AdminServer::new(reloader.clone(), Arc::new(registry), health.clone());
    tokio::spawn(admin_server.serve(admin_listener, std::future::pending()));
    tokio::spawn(hangups.reload_each(reloader.clone()));
    tokio::spawn(reloader.watch());

    writeln!(
        out,
        "stormguard proxy: listening on http://{listen}, admin on http://{admin} ({file}: {})",
        counts(&config)
    )
    .and_then(|()| out.flush())
    .context("writing the start line")?;

    let (drain_started, drain) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let signal = termination.wait().await;
        health.drain();
        tracing::info!(
            signal,
            "draining: no new connections, requests in flight may finish"
        );
        let _ = drain_started.send(());
    };
    // The grace is read when the drain starts, so a reload that changed it counts.
    let grace_proxy = proxy.clone();
    let grace_over = async move {
        if drain.await.is_err() {
            std::future::pending::<()>().await;
        }
        let grace = grace_proxy.config().listen.shutdown_grace;
        tokio::time::sleep(grace).await;
        grace
    };
    tokio::select! {
        () = stormguard_proxy::serve(proxy, listener, shutdown, UNBOUNDED_GRACE) => {
            tracing::info!("stopped");
        }
        grace = grace_over => tracing::warn!(
            ?grace,
            "stopped: the grace period is over, connections still open were dropped"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// What `serve` is given as its own grace: the drain is bounded by the live setting above.
const UNBOUNDED_GRACE: Duration = Duration::from_secs(365 * 24 * 3600);

async fn bind(what: &str, address: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot bind {what}.address {address}: is another process on it? change {what}.address or stop it")
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    fn validate(text: &str, name: &str) -> (anyhow::Result<ExitCode>, String, String) {
        let file = std::env::temp_dir().join(format!(
            "stormguard-proxy-cmd-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&file, text).unwrap();
        let path = file.display().to_string();
        let args = Cmd::try_parse_from(["proxy", "--config", &path, "--validate"])
            .unwrap()
            .args;
        let mut out = Vec::new();
        let result = run(args, &mut out);
        std::fs::remove_file(&file).unwrap();
        (result, String::from_utf8(out).unwrap(), path)
    }

    #[test]
    fn a_valid_file_is_counted() {
        let text = "[upstreams.a]\ninstances = [\"127.0.0.1:9001\"]\n[upstreams.b]\ninstances = [\"127.0.0.1:9002\"]\n[[routes]]\nname = \"a\"\nupstream = \"a\"\ntimeout = \"1s\"\n";
        let (result, out, path) = validate(text, "valid");
        assert_eq!(result.unwrap(), ExitCode::SUCCESS);
        assert_eq!(out, format!("{path}: ok (1 route, 2 upstreams)\n"));
    }

    #[test]
    fn an_invalid_file_is_an_input_error_at_its_place() {
        let (result, out, path) = validate("[[routes]]\nname = \"a\"\n", "invalid");
        let error = result.unwrap_err();
        let input = error.downcast_ref::<InputError>().expect("exit 2");
        assert!(input.0.starts_with(&format!("{path}:1:1: ")), "{input}");
        assert!(out.is_empty());
    }

    #[test]
    fn one_worker_is_one_thread() {
        let flavor = |threads| {
            runtime_builder(threads)
                .build()
                .unwrap()
                .handle()
                .runtime_flavor()
        };
        use tokio::runtime::RuntimeFlavor;
        assert_eq!(flavor(Some("1")), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(Some("2")), RuntimeFlavor::MultiThread);
        assert_eq!(flavor(None), RuntimeFlavor::MultiThread);
    }

    #[test]
    fn config_is_required() {
        assert!(Cmd::try_parse_from(["proxy", "--validate"]).is_err());
    }
}
