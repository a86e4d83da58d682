//! What `sim` predicts is what `proxy` does: the same call settings, put through the simulator
//! and through the real proxy in front of upstreams on 127.0.0.1 with the same latency and the
//! same faults, give the same attempts per request and the same success rate, within 10%.
//!
//! Both sides take every retry decision through the policy core, built for both from one
//! `stormguard_graph::model::Call` (the proxy's route gets the graph's call itself, not a copy of
//! its keys). What this test adds is the mechanisms around the core: the sim's model of
//! connections, balancer, ejection and time against the proxy's real ones.
//!
//! Where the two sides differ by design, they are set up alike:
//! - Users: Poisson arrivals at the same rate on both sides (open loop: a slow answer does not
//!   slow the arrivals, as the sim's users), each request bounded by a client timeout no setting
//!   reaches. The sim's `web` stands for the proxy's caller: it works a few microseconds and has
//!   room for every request, as the proxy has (`max_in_flight` 1024).
//! - Latency: the healthy instances wait a latency drawn from the lognormal the sim fits to
//!   `api`'s p50 and p99 (`LogNormal::fit`, seeded). tokio's timer adds up to a millisecond to
//!   each wait and the proxy its own work; the sim's `rtt = "1ms"` stands for both.
//! - Faults: a scenario's fault hits the first `instances` of its service, and `down` wins where
//!   `down` and `blackhole` both hit, so the blackhole names two instances to land on the second.
//!   The proxy's instances are listed in the same order. The sim's `blackhole` is a connection
//!   never answered: the caller's connect bound ends it, and the balancer ejects the instance.
//!   On 127.0.0.1 that is a listener whose accept queue is full ([`dark`]): the kernel drops the
//!   SYNs. An instance that accepts and then never answers is another fault (each attempt runs
//!   into its timeout after sending, and nothing is ejected), which a scenario cannot put on
//!   one instance; it is not compared here.
//! - Time: ejections last 1 s, 2 s, 4 s .. on both sides, and both runs start with the faults
//!   on, so the probes of the dead instances come at the same times.
//! - Noise: the proxy's run is one sample of some 1 200 requests; the sim's figures are summed
//!   over a few seeds of the same length, so that its own sampling noise is small beside it.
//!
//! The table's other columns (retries, denied retries and attempts at the dead instances per
//! request, the p50 of the successes) are printed, not checked: a few dozen attempts at the dead
//! instances in a run are too few for a 10% bound. They showed the two mechanisms the sim had
//! wrong: a dark instance never ejected without `connect_timeout`, and a balancer comparing the
//! callee's work instead of the caller's attempts in flight (the sim sent 2.5 times the proxy's
//! attempts to the dark instance).
//!
//! Run with `--nocapture` to see the figures side by side.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use stormguard::estimate::LogNormal;
use stormguard_graph::model::Graph;
use stormguard_proxy::{serve, Proxy, ATTEMPTS_HEADER};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// User requests a second, on both sides: a few in flight at a time, far from loading either.
const RATE: f64 = 200.0;

/// How long users arrive, on both sides.
const DURATION: Duration = Duration::from_secs(6);

/// How long one request may take before the driver gives up on it: far beyond anything the
/// settings allow, so it only bounds a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The graph every setting is put into: `web` calls `api`, four instances whose latency is a
/// lognormal of p50 40 ms and p99 200 ms; instance 0 refuses connections and instance 1 never
/// answers one (see the module docs for why `instances = 2`). `CALL` is the setting's keys.
const GRAPH: &str = r#"
[entry]
service = "web"
rate = RATE
timeout = "10s"

[services.web]
concurrency = 1000
queue = 1000
latency = { p50 = "20us", p99 = "100us" }

[[services.web.calls]]
to = "api"
rtt = "1ms"
CALL

[services.api]
instances = 4
concurrency = 1000
queue = 1000
latency = { p50 = "40ms", p99 = "200ms" }

[scenarios.faults]
duration = "DURATION"

[[scenarios.faults.faults]]
service = "api"
from = "0s"
to = "1h"
down = true
instances = 1

[[scenarios.faults.faults]]
service = "api"
from = "0s"
to = "1h"
blackhole = true
instances = 2
"#;

/// One call setting, as a graph file (and a proxy route) writes it.
struct Setting {
    name: &'static str,
    keys: &'static str,
}

/// The settings compared. A `request_timeout` that no request reaches, as a proxy route that
/// retries must have one.
const SETTINGS: [Setting; 3] = [
    // A timeout near the p90: some one attempt in ten is retried, within the default budget.
    Setting {
        name: "2 attempts, 120ms per try",
        keys: r#"
timeout = "120ms"
request_timeout = "2s"
connect_timeout = "20ms"
max_attempts = 2
backoff = "full-jitter(base=5ms, cap=25ms)"
"#,
    },
    // A timeout near the p70: retries are wanted for nearly a third of the requests, and the
    // budget allows a tenth; it decides the success rate.
    Setting {
        name: "3 attempts, 60ms per try, 10% budget",
        keys: r#"
timeout = "60ms"
request_timeout = "2s"
connect_timeout = "20ms"
max_attempts = 3
backoff = "full-jitter(base=5ms, cap=25ms)"
retry_budget = { ratio = 0.1, min_per_sec = 5 }
"#,
    },
    // No connect_timeout: connecting is bounded by the attempt's timeout on both sides
    // (`stormguard_graph::policy::connect_timeout`), and the dark instance is still ejected.
    Setting {
        name: "2 attempts, 120ms, no connect timeout",
        keys: r#"
timeout = "120ms"
request_timeout = "2s"
max_attempts = 2
backoff = "full-jitter(base=5ms, cap=25ms)"
"#,
    },
];

fn graph(setting: &Setting) -> Graph {
    let text = GRAPH
        .replace("CALL", setting.keys)
        .replace("RATE", &RATE.to_string())
        .replace("DURATION", &format!("{}s", DURATION.as_secs()));
    stormguard_graph::parse("agreement.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

/// What one side measured, summed over its runs.
#[derive(Clone, Debug, Default)]
struct Figures {
    requests: f64,
    succeeded: f64,
    /// Attempts at `api`, first tries and retries.
    attempts: f64,
    retries: f64,
    retries_denied: f64,
    /// Attempts at the refusing or the dark instance.
    unreachable: f64,
    /// Latency of each successful request, in milliseconds.
    latency_ms: Vec<f64>,
}

impl Figures {
    fn per_request(&self, count: f64) -> f64 {
        count / self.requests
    }

    fn attempts_per_request(&self) -> f64 {
        self.per_request(self.attempts)
    }

    fn success_rate(&self) -> f64 {
        self.per_request(self.succeeded)
    }

    fn p50_ms(&self) -> f64 {
        let mut sorted = self.latency_ms.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
    }
}

/// Seeds of the simulated runs, whose figures are summed.
const SIM_SEEDS: [u64; 4] = [1, 2, 3, 4];

/// Any instant will do as virtual time's origin: the outcome depends only on differences.
#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

fn simulate(graph: &Graph) -> Figures {
    let mut sum = Figures::default();
    for seed in SIM_SEEDS {
        let outcome = stormguard_sim::engine::simulate(graph, Some("faults"), seed, None, origin())
            .expect("the graph simulates");
        let (api, call) = (&outcome.services["api"], &outcome.calls[0]);
        sum.requests += outcome.users.requests as f64;
        sum.succeeded += outcome.users.succeeded as f64;
        sum.attempts += api.attempts as f64;
        sum.retries += call.retries as f64;
        sum.retries_denied += call.retries_denied as f64;
        sum.unreachable += api.unreachable as f64;
        sum.latency_ms
            .extend(outcome.users.latency_ns.iter().map(|&ns| ns as f64 / 1e6));
    }
    sum
}

/// An upstream instance that answers 200 after a latency drawn from `latency`, counting the
/// requests it receives in `hits`.
async fn healthy(latency: LogNormal, seed: u64, hits: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rng = Arc::new(Mutex::new(Pcg64::seed_from_u64(seed)));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (rng, hits) = (rng.clone(), hits.clone());
            let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                hits.fetch_add(1, Ordering::Relaxed);
                let delay = latency.sample(&mut *rng.lock().unwrap());
                async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// An address where nothing listens: bound, then released, so connecting is refused.
async fn refusing() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An address that never answers a connection, the sim's `blackhole`: a listener with room for
/// one connection waiting to be accepted, filled by one of ours and never accepted. The kernel
/// drops every further SYN, so a connect waits for the caller's connect bound. The listener and
/// the connection that fills it are returned to be kept alive.
async fn dark() -> (SocketAddr, TcpListener, TcpStream) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let filler = TcpStream::connect(addr).await.unwrap();
    // The accept queue is full once a connect cannot complete.
    let probe = tokio::time::timeout(Duration::from_millis(50), TcpStream::connect(addr)).await;
    assert!(
        probe.is_err(),
        "a connection to the dark instance completed"
    );
    (addr, listener, filler)
}

/// The sum of counter `name`'s series for the route `api` in the metrics `text`.
fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains("target=\"api\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, value| sum + value)
}

/// Runs the proxy with `graph`'s call as its route in front of the faulty upstream, drives it,
/// and reads what it did.
async fn through_proxy(graph: &Graph, seed: u64) -> Figures {
    let api = &graph.services["api"];
    let latency = LogNormal::fit(api.latency.p50, api.latency.p99).unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let (dark, _listener, _filler) = dark().await;
    let instances = [
        refusing().await,
        dark,
        healthy(latency, seed, hits.clone()).await,
        healthy(latency, seed + 1, hits.clone()).await,
    ];
    let listed = instances
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut config = stormguard_proxy::config::parse(
        "agreement-proxy.toml",
        &format!(
            "[upstreams.api]\ninstances = [{listed}]\n\
             [[routes]]\nname = \"api\"\nupstream = \"api\"\ntimeout = \"1s\"\n"
        ),
    )
    .unwrap();
    // The graph's call itself, as the route's policy: the settings are one value.
    let mut call = graph.services["web"].calls[0].clone();
    call.to = "api".to_string();
    config.routes[0].call = call;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut registry = Registry::default();
    let proxy = Proxy::new(config, &mut registry).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve(
        proxy,
        listener,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    let answers = drive(addr, seed).await;
    let _ = stop.send(());
    let _ = served.await;

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let mut figures = Figures {
        retries: counter(&text, "stormguard_retries_total"),
        retries_denied: counter(&text, "stormguard_retries_denied_total"),
        ..Figures::default()
    };
    for answer in &answers {
        figures.requests += 1.0;
        figures.attempts += f64::from(answer.attempts);
        if answer.status == 200 {
            figures.succeeded += 1.0;
            figures.latency_ms.push(answer.latency.as_secs_f64() * 1e3);
        }
    }
    // Every attempt is in a header and in the metrics: the two ways of counting agree.
    assert_eq!(
        figures.attempts,
        counter(&text, "stormguard_attempts_total"),
        "attempts in stormguard-attempts headers and in the metrics"
    );
    figures.unreachable = figures.attempts - hits.load(Ordering::Relaxed) as f64;
    figures
}

/// What the client saw of one request.
struct Answer {
    status: u16,
    /// `stormguard-attempts`.
    attempts: u32,
    latency: Duration,
}

/// Sends requests to the proxy at `RATE`, as Poisson arrivals from a seeded stream, for
/// `DURATION`, and waits for every answer.
async fn drive(proxy: SocketAddr, seed: u64) -> Vec<Answer> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut rng = Pcg64::seed_from_u64(seed);
    let uri: http::Uri = format!("http://{proxy}/").parse().unwrap();
    let start = tokio::time::Instant::now();
    let mut at = Duration::ZERO;
    let mut sent = Vec::new();
    loop {
        at += Duration::from_secs_f64(-(1.0 - rng.random::<f64>()).ln() / RATE);
        if at >= DURATION {
            break;
        }
        tokio::time::sleep_until(start + at).await;
        let (client, uri) = (client.clone(), uri.clone());
        sent.push(tokio::spawn(async move {
            let begun = tokio::time::Instant::now();
            let answer = async {
                let response = client.get(uri).await.expect("the proxy answers");
                let status = response.status().as_u16();
                let attempts = response
                    .headers()
                    .get(ATTEMPTS_HEADER)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .expect("every answer says how many attempts it took");
                let _ = response.into_body().collect().await;
                Answer {
                    status,
                    attempts,
                    latency: begun.elapsed(),
                }
            };
            tokio::time::timeout(CLIENT_TIMEOUT, answer)
                .await
                .expect("the proxy answers within the client's timeout")
        }));
    }
    let mut answers = Vec::with_capacity(sent.len());
    for request in sent {
        answers.push(request.await.unwrap());
    }
    answers
}

/// Whether `a` and `b` differ by at most 10% of the larger.
fn agree(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.10 * a.max(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_predicts_the_attempts_and_success_rate_the_proxy_has() {
    let mut rows = Vec::new();
    for (i, setting) in SETTINGS.iter().enumerate() {
        let graph = graph(setting);
        let sim = simulate(&graph);
        let proxy = through_proxy(&graph, 10 * i as u64 + 1).await;
        rows.push((setting.name, sim, proxy));
    }
    eprintln!(
        "\n{:<38} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "setting",
        "side",
        "requests",
        "att/req",
        "success",
        "retry/rq",
        "deny/rq",
        "dead/rq",
        "p50 ms"
    );
    for (name, sim, proxy) in &rows {
        for (side, f) in [("sim", sim), ("proxy", proxy)] {
            eprintln!(
                "{name:<38} {side:>5} {:>8} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.1}",
                f.requests,
                f.attempts_per_request(),
                f.success_rate(),
                f.per_request(f.retries),
                f.per_request(f.retries_denied),
                f.per_request(f.unreachable),
                f.p50_ms(),
            );
        }
    }
    for (name, sim, proxy) in &rows {
        let (a, b) = (sim.attempts_per_request(), proxy.attempts_per_request());
        assert!(
            agree(a, b),
            "{name}: attempts per request, sim {a:.3}, proxy {b:.3}"
        );
        let (a, b) = (sim.success_rate(), proxy.success_rate());
        assert!(
            agree(a, b),
            "{name}: success rate, sim {a:.3}, proxy {b:.3}"
        );
    }
}
