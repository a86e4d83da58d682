//! `demo --live`: the sidecar proxy, for real, in front of upstream instances the demo runs
//! itself on 127.0.0.1 (one refusing connections, one slow, two healthy), driven with requests
//! for a while, then asked what it did through its own admin endpoint.
//!
//! The proxy is the library's `Proxy` and `serve`, and its admin server, started as
//! `stormguard proxy` starts them; only the settings file is written by the demo (into the
//! demo's directory, so it can be read, and `/config` names a file that exists).

mod figures;
mod upstreams;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::registry::Registry;
use stormguard_proxy::admin::{AdminServer, Health};
use stormguard_proxy::reload::{ReloadMetrics, Reloader};
use stormguard_proxy::{config, Proxy};
use tokio::net::TcpListener;

use crate::sim_cmd::progress::Progress;
use figures::Figures;
use upstreams::Upstreams;

/// Requests a second the demo sends: enough for every budget to matter, few enough for a
/// laptop's loopback.
const RATE: u32 = 200;

/// Requests in flight at most; a request that would go beyond is not sent (and counted).
const IN_FLIGHT: u32 = 256;

/// How long a request may take before the load driver gives up on it; far above anything the
/// proxy's settings allow, so it only bounds a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The route, as the proxy's metrics label it.
const ROUTE: &str = "storefront";

/// The proxy's settings: the library's recommended policy (one retry on another instance, full
/// jitter, a 20% retry budget, deadline propagation) with a timeout below the slow instance's
/// answer, a hedge that fires well before it, and an adaptive per-try timeout for what the
/// hedge budget leaves.
///
/// `timeout` bounds each attempt and `request_timeout` the whole request, both 250 ms, so an
/// attempt left to run into its timeout leaves no time to retry: with the timeout alone, the
/// slow instance's requests past the 5% hedge budget failed (22 of 3000, `deadline`).
/// The adaptive timeout cuts such an attempt at 80-100 ms (the p99.9 of what the route measures,
/// kept above the hedge delay so that a hedge has 30 ms to answer), which leaves more than
/// half of the 250 ms for a retry on another instance.
fn settings(upstreams: &Upstreams) -> String {
    let instances: Vec<String> = upstreams
        .all()
        .iter()
        .map(|addr| format!("\"{addr}\""))
        .collect();
    format!(
        "# The settings `stormguard demo --live` ran the proxy with; its upstreams ran in the demo's\n\
         # process and are gone with it.\n\
         [listen]\naddress = \"127.0.0.1:0\"\nshutdown_grace = \"1s\"\n\n\
         [admin]\naddress = \"127.0.0.1:0\"\n\n\
         [upstreams.storefront]\n\
         # refusing, slow ({slow}ms), healthy, healthy\n\
         instances = [{}]\n\n\
         [[routes]]\nname = \"{ROUTE}\"\nupstream = \"storefront\"\n\
         timeout = \"250ms\"\nrequest_timeout = \"250ms\"\nconnect_timeout = \"50ms\"\n\
         max_attempts = 2\n\
         retry_budget = {{ ratio = 0.2, min_per_sec = 10 }}\n\
         hedge = {{ delay = \"50ms\", max_extra = 0.05 }}\n\
         adaptive_timeout = {{ false_timeout_rate = 0.001, min = \"80ms\", max = \"100ms\" }}\n",
        instances.join(", "),
        slow = upstreams::SLOW.as_millis()
    )
}

/// Runs the live part for `duration` of requests, writing the proxy's settings into `dir`.
pub(super) fn run(duration: Duration, dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(live(duration, dir, out));
    // The upstreams and the admin server end with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn live(duration: Duration, dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let upstreams = Upstreams::start().await?;
    let path = dir.join("live-proxy.toml");
    let file = path.display().to_string();
    let text = settings(&upstreams);
    std::fs::write(&path, &text).with_context(|| format!("writing {file}"))?;
    let config = config::parse(&file, &text).context("the live demo's proxy settings")?;
    let (budget, hedge_delay) = policy_words(&config);
    let timeout = config
        .routes
        .first()
        .and_then(|r| r.call.timeout)
        .unwrap_or_default();
    let listener = TcpListener::bind(config.listen.address).await?;
    let admin_listener = TcpListener::bind(config.admin.address).await?;
    let mut running = config.clone();
    running.listen.address = listener.local_addr()?;
    running.admin.address = admin_listener.local_addr()?;
    let (proxy_addr, admin_addr) = (running.listen.address, running.admin.address);

    let mut registry = Registry::default();
    let proxy = Proxy::new(running, &mut registry).context("building the proxy")?;
    let reloads = ReloadMetrics::register(&mut registry);
    let reloader = Arc::new(Reloader::new(
        path,
        Arc::new(proxy.clone()),
        reloads,
        config,
    ));
    let admin = AdminServer::new(reloader, Arc::new(registry), Arc::new(Health::default()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(admin.serve(admin_listener, std::future::pending()));
    let server = tokio::spawn(stormguard_proxy::serve(
        proxy,
        listener,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));

    super::say(
        out,
        &format!(
            "\n== 4. stormguard proxy, live: the sidecar on http://{proxy_addr} in front of 4 \
             local instances of one upstream (one refusing connections, one answering after \
             {}ms, two healthy), {RATE} requests a second for {}s (settings: {file}) ==\n",
            upstreams::SLOW.as_millis(),
            duration.as_secs_f64()
        ),
    )?;
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let load = drive(&client, proxy_addr, duration).await;
    let metrics = get(&client, admin_addr, "/metrics").await?;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;

    let figures = Figures::of_route(&figures::parse(&metrics), ROUTE);
    let mut text = format!(
        "\nWhat the proxy did, from its own http://{admin_addr}/metrics (route {ROUTE}):\n"
    );
    text.push_str(&figures.text(&budget, &hedge_delay));
    text.push_str(&format!(
        "Reading it: a refused connection is retried at once on another instance, and the \
         refusing instance is ejected; a request the slow instance holds is hedged to another \
         after {hedge_delay} while the hedge budget allows, else the adaptive per-try timeout \
         cuts it well within the route's {} and it is retried on another instance (retries \
         after timeout).\n",
        stormguard::duration::format(timeout)
    ));
    text.push_str(&format!(
        "The load generator sent {} requests and got {} answers 200{}.\n",
        load.sent,
        load.ok,
        if load.skipped > 0 {
            format!(
                "; {} were not sent, {IN_FLIGHT} being in flight",
                load.skipped
            )
        } else {
            String::new()
        }
    ));
    super::say(out, &text)
}

/// The route's retry budget and hedge delay as the report quotes them: `20%`, `50ms`.
fn policy_words(config: &config::Config) -> (String, String) {
    let call = config.routes.first().map(|r| &r.call);
    let budget = match call.and_then(|c| c.limiter) {
        Some(stormguard_graph::model::LimiterSpec::Budget { ratio, .. }) => {
            format!("{:.0}%", ratio * 100.0)
        }
        _ => "route's".to_string(),
    };
    let hedge = call
        .and_then(|c| c.hedge)
        .map_or("the hedge delay".to_string(), |h| h.delay.to_string());
    (budget, hedge)
}

/// What the load driver saw.
#[derive(Default)]
struct Load {
    sent: u64,
    ok: u64,
    skipped: u64,
}

/// Sends GET / to the proxy at [`RATE`] a second for `duration`, at most [`IN_FLIGHT`] at
/// once, with a progress bar on a terminal; waits for the answers (each bounded by
/// [`CLIENT_TIMEOUT`]).
async fn drive(
    client: &Client<HttpConnector, Empty<Bytes>>,
    proxy: SocketAddr,
    duration: Duration,
) -> Load {
    let ok = Arc::new(AtomicU64::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT as usize));
    let mut bar = Progress::new("proxy", duration);
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / RATE);
    let started = tokio::time::Instant::now();
    let mut load = Load::default();
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < duration {
        ticks.tick().await;
        bar.update(started.elapsed());
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            load.skipped += 1;
            continue;
        };
        load.sent += 1;
        let (client, ok) = (client.clone(), ok.clone());
        tasks.spawn(async move {
            let request = http::Request::get(format!("http://{proxy}/"))
                .body(Empty::new())
                .expect("a valid request");
            let answer = tokio::time::timeout(CLIENT_TIMEOUT, async {
                let response = client.request(request).await.ok()?;
                let status = response.status();
                response.into_body().collect().await.ok()?;
                Some(status)
            })
            .await;
            if let Ok(Some(status)) = answer {
                if status.is_success() {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(slot);
        });
    }
    while tasks.join_next().await.is_some() {}
    bar.finish();
    load.ok = ok.load(Ordering::Relaxed);
    load
}

/// The body of GET `path` on `addr`.
async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<String> {
    let request = http::Request::get(format!("http://{addr}{path}")).body(Empty::new())?;
    let response = tokio::time::timeout(CLIENT_TIMEOUT, client.request(request))
        .await
        .with_context(|| format!("GET http://{addr}{path}: no answer"))?
        .with_context(|| format!("GET http://{addr}{path}"))?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
