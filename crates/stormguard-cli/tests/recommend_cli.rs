//! `stormguard recommend` as a user runs it: the built binary against a real Prometheus server
//! (Debian's `prometheus`, started here on 127.0.0.1 with a generated config and a temporary
//! storage dir) that scrapes the stormguard proxy's `/metrics` while a load of known latency
//! runs through it, and a page of the same latencies on a finer bucket ladder.
//!
//! The latencies are 10,000 draws from a seeded lognormal (median 10 ms, sigma 0.9: a p99.9
//! near 160 ms), served by an upstream in this test that answers each request after the next
//! draw. The proxy measures them on its own ladder (100 ms, 250 ms, ...); the page counts the
//! draws themselves on a 5 ms ladder. The recommended p99.9 must lie in the bucket of each
//! ladder that holds the draws' own p99.9: that is what "within the bucket resolution" means.
//! Without a `prometheus` binary, or when it does not start, the test says on standard error
//! that it was skipped and why.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::net::TcpListener;

const SAMPLES: usize = 10_000;
const CONCURRENCY: usize = 64;

fn root() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
}

fn stormguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Said past the test harness's capture, so that a skip is seen in `cargo test`'s output.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "recommend_cli: {text}");
}

/// A directory of this test's own, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("stormguard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed when the test ends however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_page_gives_a_table_and_a_bad_one_exit_2() {
    let dir = TempDir::new("recommend-page");
    let page = dir.0.join("m.prom");
    std::fs::write(
        &page,
        "rpc_seconds_bucket{le=\"0.25\"} 9990\nrpc_seconds_bucket{le=\"+Inf\"} 10000\n",
    )
    .unwrap();
    let page = page.display().to_string();
    let (code, out, err) = stormguard(&["recommend", "--metrics", &page]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("rpc_seconds  10000     125ms  248ms  250ms  250ms"),
        "{out}"
    );
    let bad = dir.0.join("bad.prom");
    std::fs::write(&bad, "rpc_seconds_bucket{le=0.25} 1\n").unwrap();
    let bad = bad.display().to_string();
    let (code, _, err) = stormguard(&["recommend", "--metrics", &bad]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{bad}:1:23: expected `\"`")), "{err}");
    let (code, _, err) = stormguard(&["recommend", "--prometheus", "http://127.0.0.1:1"]);
    assert_eq!(code, 3, "nothing listens there: {err}");
}

/// 10,000 latencies from a lognormal with median 10 ms and sigma 0.9 (Box-Muller on a seeded
/// PCG), capped at 2 s.
fn draws() -> Vec<Duration> {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(6);
    (0..SAMPLES)
        .map(|_| {
            let (u1, u2) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            Duration::from_secs_f64((0.010 * (0.9 * z).exp()).min(2.0))
        })
        .collect()
}

/// The empirical p99.9: the 9,990th of 10,000, the rank `histogram_quantile` looks for.
fn p999(draws: &[Duration]) -> Duration {
    let mut sorted = draws.to_vec();
    sorted.sort();
    sorted[(SAMPLES as f64 * 0.999).ceil() as usize - 1]
}

/// The bucket `(lower, upper]` of `ladder` (seconds) holding `value`.
fn bucket(ladder: &[f64], value: Duration) -> (f64, f64) {
    let v = value.as_secs_f64();
    let i = ladder.partition_point(|&b| b < v);
    (if i == 0 { 0.0 } else { ladder[i - 1] }, ladder[i])
}

/// Serves HTTP/1.1 on 127.0.0.1 with `answer` until the test ends.
async fn serve<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            let service = hyper::service::service_fn(move |req| {
                let answer = answer.clone();
                async move { Ok::<_, Infallible>(answer(req).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// The 5 ms ladder of the page, in seconds: 5 ms to 400 ms, then 0.5, 1, 2.5 s.
fn fine_ladder() -> Vec<f64> {
    let mut ladder: Vec<f64> = (1..=80).map(|i| f64::from(i) * 0.005).collect();
    ladder.extend([0.5, 1.0, 2.5]);
    ladder
}

/// The page of the draws on the fine ladder; all zeros until `fed`, so that Prometheus's first
/// sample of every bucket is 0 and the increase over the window is every draw.
fn page(draws: &[Duration], fed: bool) -> String {
    let mut text = String::from("# TYPE known_latency_seconds histogram\n");
    let count = |upper: f64| {
        if fed {
            draws.iter().filter(|d| d.as_secs_f64() <= upper).count()
        } else {
            0
        }
    };
    for upper in fine_ladder() {
        text.push_str(&format!(
            "known_latency_seconds_bucket{{le=\"{upper}\"}} {}\n",
            count(upper)
        ));
    }
    let total = if fed { draws.len() } else { 0 };
    text.push_str(&format!(
        "known_latency_seconds_bucket{{le=\"+Inf\"}} {total}\n"
    ));
    text.push_str(&format!("known_latency_seconds_count {total}\n"));
    text
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn get(client: &HttpClient, url: &str) -> Option<(u16, String)> {
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(url.parse().unwrap()))
        .await
        .ok()?
        .ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The value of an instant query answering one sample (0 when it answers none).
async fn query(client: &HttpClient, prometheus: &str, promql: &str) -> f64 {
    let encoded: String = promql
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let url = format!("{prometheus}/api/v1/query?query={encoded}");
    let Some((_, body)) = get(client, &url).await else {
        return 0.0;
    };
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `ready` every 200 ms for up to `limit`.
async fn wait_until<F, Fut>(limit: Duration, mut ready: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let rounds = limit.as_millis() / 200;
    for _ in 0..rounds {
        if ready().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Finds `prometheus`: on the PATH, or where Debian puts it.
fn prometheus_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/prometheus")).filter(|p| p.is_file()))
}

/// A free port on 127.0.0.1 for Prometheus to listen on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the proxy binary in front of `upstream`: the child and its listen and admin addresses.
fn start_proxy(dir: &Path, upstream: SocketAddr) -> (Running, String, String) {
    let settings = dir.join("proxy.toml");
    std::fs::write(
        &settings,
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
             [upstreams.api]\ninstances = [\"{upstream}\"]\n\
             [[routes]]\nname = \"api\"\nupstream = \"api\"\ntimeout = \"5s\"\n\
             connect_timeout = \"1s\"\nmax_attempts = 1\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stormguard"))
        .args(["proxy", "--config", &settings.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let after = |marker: &str| {
        let rest = &line[line.find(marker).unwrap_or_else(|| panic!("{line}")) + marker.len()..];
        rest.split([',', ' ']).next().unwrap().to_string()
    };
    let (listen, admin) = (after("listening on http://"), after("admin on http://"));
    (Running(child), listen, admin)
}

fn start_prometheus(
    binary: &Path,
    dir: &Path,
    targets: &[(&str, &str)],
) -> Result<(Running, String), String> {
    let jobs: String = targets
        .iter()
        .map(|(job, target)| {
            format!("  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n")
        })
        .collect();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n{jobs}"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{} would not start: {e}", binary.display()))?;
    Ok((Running(child), format!("http://127.0.0.1:{port}")))
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

fn series<'a>(report: &'a Value, metric: &str, job: &str) -> &'a Value {
    report["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metric"] == metric && s["labels"]["job"] == job)
        .unwrap_or_else(|| panic!("no {metric} of job {job} in {report:#}"))
}

fn ms(v: &Value) -> Duration {
    Duration::from_secs_f64(v.as_f64().unwrap() / 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_recommended_timeout_from_a_real_prometheus_is_the_known_p999() {
    let Some(binary) = prometheus_binary() else {
        say(
            "SKIPPED the_recommended_timeout_from_a_real_prometheus_is_the_known_p999: no \
             `prometheus` binary on the PATH or at /usr/bin/prometheus (Debian: apt-get install \
             prometheus; .ci/run installs it)",
        );
        return;
    };
    let dir = TempDir::new("recommend-prometheus");
    let draws = Arc::new(draws());
    let truth = p999(&draws);

    // The upstream: each request answered after the next draw.
    let next = Arc::new(AtomicUsize::new(0));
    let upstream = {
        let (draws, next) = (draws.clone(), next.clone());
        serve(move |_req| {
            let delay = draws[next.fetch_add(1, Ordering::SeqCst) % SAMPLES];
            async move {
                tokio::time::sleep(delay).await;
                Response::new(Full::new(Bytes::from_static(b"ok")))
            }
        })
        .await
    };
    // The page of the draws on the fine ladder, fed once Prometheus has seen it empty.
    let fed = Arc::new(AtomicBool::new(false));
    let known = {
        let (draws, fed) = (draws.clone(), fed.clone());
        serve(move |_req| {
            let text = page(&draws, fed.load(Ordering::SeqCst));
            async move { Response::new(Full::new(Bytes::from(text))) }
        })
        .await
    };
    let (_proxy, listen, admin) = start_proxy(&dir.0, upstream);
    let known = known.to_string();
    let targets = [("proxy", admin.as_str()), ("known", known.as_str())];
    let (_prometheus, url) = match start_prometheus(&binary, &dir.0, &targets) {
        Ok(started) => started,
        Err(why) => {
            say(&format!("SKIPPED the real-Prometheus test: {why}"));
            return;
        }
    };
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let ready = wait_until(Duration::from_secs(30), || async {
        get(&client, &format!("{url}/-/ready"))
            .await
            .is_some_and(|(status, _)| status == 200)
    })
    .await;
    if !ready {
        say(&format!(
            "SKIPPED the real-Prometheus test: {} did not become ready within 30 s; its log \
             ends:\n{}",
            binary.display(),
            log_tail(&dir.0)
        ));
        return;
    }

    // Both histograms scraped at zero before any latency is recorded.
    let scraped = |metric: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move { query(&client, &url, &format!("count_over_time({metric}[1h])")).await }
    };
    let zero_seen = wait_until(Duration::from_secs(30), || async {
        scraped("known_latency_seconds_count").await >= 1.0
            && scraped("stormguard_proxy_upstream_latency_seconds_count").await >= 1.0
    })
    .await;
    assert!(
        zero_seen,
        "no scrape within 30 s; log:\n{}",
        log_tail(&dir.0)
    );
    fed.store(true, Ordering::SeqCst);

    // The load: 10,000 requests through the proxy, 64 at a time, bounded in time.
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (client, sent, failed) = (client.clone(), sent.clone(), failed.clone());
            let target = format!("http://{listen}/");
            tokio::spawn(async move {
                while sent.fetch_add(1, Ordering::SeqCst) < SAMPLES {
                    if get(&client, &target).await.is_none_or(|(s, _)| s != 200) {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    let load = async {
        for worker in workers {
            worker.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("the load finishes within 120 s");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "every request answered 200"
    );
    assert_eq!(
        next.load(Ordering::SeqCst),
        SAMPLES,
        "one attempt per request"
    );

    // Two more scrapes of each after the load, so the window holds all of it.
    let before = (
        scraped("known_latency_seconds_count").await,
        scraped("stormguard_proxy_upstream_latency_seconds_count").await,
    );
    let settled = wait_until(Duration::from_secs(30), || async {
        scraped("known_latency_seconds_count").await >= before.0 + 2.0
            && scraped("stormguard_proxy_upstream_latency_seconds_count").await >= before.1 + 2.0
    })
    .await;
    assert!(settled, "two scrapes after the load within 30 s");

    let (api, direct) = tokio::task::spawn_blocking({
        let (url, admin) = (url.clone(), admin.clone());
        move || {
            let api = stormguard(&[
                "recommend",
                "--prometheus",
                &url,
                "--window",
                "10m",
                "--format",
                "json",
            ]);
            let direct = stormguard(&[
                "recommend",
                "--metrics",
                &format!("http://{admin}/metrics"),
                "--format",
                "json",
            ]);
            (api, direct)
        }
    })
    .await
    .unwrap();
    assert_eq!(api.0, 0, "{}", api.2);
    assert_eq!(direct.0, 0, "{}", direct.2);
    let api: Value = serde_json::from_str(&api.1).unwrap();
    let direct: Value = serde_json::from_str(&direct.1).unwrap();

    // The page: the estimate lies in the 5 ms bucket of the fine ladder holding the truth.
    let page = series(&api, "known_latency_seconds", "known");
    let (lower, upper) = bucket(&fine_ladder(), truth);
    let estimate = ms(&page["estimate_ms"]);
    assert!(
        estimate.as_secs_f64() > lower - 1e-9 && estimate.as_secs_f64() <= upper + 1e-9,
        "the page's p99.9 {estimate:?} is outside ({lower}, {upper}] around the truth {truth:?}"
    );
    assert_eq!(
        page["warnings"],
        Value::Array(vec![]),
        "a 5 ms ladder is fine enough"
    );

    // The proxy: its ladder's bucket around the truth holds the estimate too, and the
    // suggestion says the bucket is too coarse to trust.
    let proxy = series(&api, "stormguard_proxy_upstream_latency_seconds", "proxy");
    assert_eq!(proxy["labels"]["route"], "api");
    let ladder = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let (lower, upper) = bucket(&ladder, truth);
    let proxy_estimate = ms(&proxy["estimate_ms"]);
    assert!(
        proxy_estimate.as_secs_f64() > lower && proxy_estimate.as_secs_f64() <= upper,
        "the proxy's p99.9 {proxy_estimate:?} is outside ({lower}, {upper}] around the truth \
         {truth:?}"
    );
    let timeout = ms(&proxy["suggested_timeout_ms"]);
    assert!(timeout >= proxy_estimate && timeout.as_secs_f64() <= upper + 1e-9);
    let warning = proxy["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("add a bucket at"), "{proxy:#}");

    // The proxy's own page says the same as Prometheus's increase over the window.
    let own = direct["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metric"] == "stormguard_proxy_upstream_latency_seconds")
        .unwrap();
    assert_eq!(own["requests"], SAMPLES as f64);
    let own_estimate = ms(&own["estimate_ms"]);
    let gap = own_estimate.abs_diff(proxy_estimate);
    assert!(
        gap < Duration::from_millis(1),
        "{own_estimate:?} vs {proxy_estimate:?}"
    );
    say(&format!(
        "real Prometheus: true p99.9 {truth:?}; page estimate {estimate:?} (5 ms buckets), \
         proxy estimate {proxy_estimate:?} -> timeout {timeout:?}; {warning}"
    ));
}
