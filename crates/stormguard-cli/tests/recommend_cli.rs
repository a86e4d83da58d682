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

#[path = "support/prometheus.rs"]
mod prometheus;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use prometheus::{
    get, log_tail, prometheus_binary, query, serve, start_prometheus, wait_until, HttpClient,
    Running, TempDir,
};
use rand::{Rng, SeedableRng};
use serde_json::Value;

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
    prometheus::say("recommend_cli", text);
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
    let client: HttpClient = prometheus::client();
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
