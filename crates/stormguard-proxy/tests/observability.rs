//! The dashboard and the alert rules in `deploy/` against the metrics the proxy really exports:
//! `promtool` checks the rules, the dashboard is a Grafana model whose every panel queries, and
//! every dashboard and alert expression returns data from a real Prometheus scraping a real
//! proxy under load (retries, budget denials, hedges, ejections, a reload that applies and one
//! that is refused). Without `prometheus` or `promtool` (Debian's `prometheus` package ships
//! both; `.ci/run` installs it) those tests print SKIPPED.

// The real Prometheus the CLI's tests run, shared rather than copied.
#[path = "../../stormguard-cli/tests/support/prometheus.rs"]
mod prometheus;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::Full;
use prometheus::{binary, encode, say, HttpClient, TempDir};
use prometheus_client::registry::Registry;
use serde_json::Value;
use stormguard_proxy::admin::AdminServer;
use stormguard_proxy::reload::{ReloadMetrics, Reloader, Trigger};
use stormguard_proxy::{serve, Proxy};
use support::{client, ms, ok_upstream, refusing_address, reply, send, upstream};
use tokio::net::TcpListener;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let Some(promtool) = binary("promtool") else {
        say(
            "promtool_accepts_the_alert_rules",
            "SKIPPED: no promtool (Debian's prometheus package ships it)",
        );
        return;
    };
    let rules = deploy("prometheus/alerts.yml");
    let out = Command::new(promtool)
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("SUCCESS: 4 rules found"), "{said}");
}

/// The dashboard's panels that draw (rows only group them).
fn panels(dashboard: &Value) -> Vec<&Value> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .collect()
}

fn dashboard() -> Value {
    let path = deploy("grafana/stormguard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_dashboard_is_a_grafana_model_whose_every_panel_queries() {
    let dashboard = dashboard();
    assert_eq!(dashboard["schemaVersion"], 39);
    let variables: BTreeMap<&str, &Value> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(variables["datasource"]["type"], "datasource");
    assert_eq!(variables["datasource"]["query"], "prometheus");
    for name in ["route", "instance_addr"] {
        assert_eq!(variables[name]["type"], "query", "{name}");
        assert_eq!(variables[name]["allValue"], ".*", "{name}");
    }
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "{title}: id");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert!(
            panel["description"].as_str().is_some_and(|d| d.len() > 40),
            "{title}: say what to do about it"
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}");
        for target in targets {
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "{title}"
            );
        }
    }
    let titles: Vec<&str> = panels(&dashboard)
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Success rate",
        "Attempts per request",
        "Retries by reason",
        "Retry budget denials",
        "Hedges sent and won",
        "Ejections",
        "Caller latency p50 / p99",
        "Attempt latency p50 / p99",
        "Reloads",
    ] {
        assert!(titles.contains(&wanted), "no panel {wanted}: {titles:?}");
    }
}

/// Every expression the dashboard asks Prometheus, Grafana's variables replaced as Grafana
/// would with "All" chosen, and a variable's `label_values(metric, label)` as the PromQL
/// that has the same data.
fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    let mut exprs: Vec<String> = panels(dashboard)
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("a variable's query: {query}"));
            let (metric, label) = inner.rsplit_once(',').unwrap();
            exprs.push(format!("count by ({}) ({metric})", label.trim()));
        }
    }
    exprs.iter().map(|e| grafana_variables(e)).collect()
}

fn grafana_variables(expr: &str) -> String {
    let known = [
        ("$__rate_interval", "1m"),
        ("$instance_addr", ".*"),
        ("$route", ".*"),
    ];
    let mut out = expr.to_string();
    for (name, value) in known {
        out = out.replace(name, value);
    }
    assert!(
        !out.contains('$'),
        "a variable this test does not know: {expr}"
    );
    out
}

/// The settings the proxy runs: `api` to a flaky and a good instance, retried on 5xx under a
/// small budget and hedged; `down` to two addresses where nothing listens.
fn settings(flaky: SocketAddr, good: SocketAddr, down: [SocketAddr; 2], extra: &str) -> String {
    format!(
        r#"[listen]
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[upstreams.api]
instances = ["{flaky}", "{good}"]

[upstreams.down]
instances = ["{}", "{}"]

[[routes]]
name = "down"
match = {{ path_prefix = "/down" }}
upstream = "down"
timeout = "500ms"
request_timeout = "1s"
max_attempts = 2
backoff = "full-jitter(base=1ms, cap=5ms)"
retry_budget = {{ ratio = 0.05, min_per_sec = 1 }}

[[routes]]
name = "api"
upstream = "api"
timeout = "300ms"
request_timeout = "1s"
max_attempts = 3
retry_on = ["default", "5xx"]
backoff = "full-jitter(base=1ms, cap=5ms)"
retry_budget = {{ ratio = 0.1, min_per_sec = 1 }}
hedge = {{ delay = "20ms", max_extra = 0.5 }}
latency_buckets = ["30ms"]
{extra}
"#,
        down[0], down[1]
    )
}

/// Prometheus's answer to `path` as JSON (`Null` when it does not answer within 10 s).
async fn api(client: &HttpClient, prometheus: &str, path: &str) -> Value {
    match prometheus::get(client, &format!("{prometheus}{path}")).await {
        Some((_, body)) => serde_json::from_str(&body).unwrap_or(Value::Null),
        None => Value::Null,
    }
}

/// The samples an instant query returns (empty on an error, which is kept in the second part).
async fn query(client: &HttpClient, prometheus: &str, promql: &str) -> (Vec<Value>, String) {
    let answer = api(
        client,
        prometheus,
        &format!("/api/v1/query?query={}", encode(promql)),
    )
    .await;
    let samples = answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let error = answer["error"].as_str().unwrap_or_default().to_string();
    (samples, error)
}

/// Sends requests to `/` and `/down` from 8 workers for `time` (at most 20 000 in all).
async fn load(proxy: SocketAddr, time: Duration) -> usize {
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = tokio::time::Instant::now() + time;
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (client, sent) = (client(), sent.clone());
            tokio::spawn(async move {
                while tokio::time::Instant::now() < stop && sent.load(Ordering::Relaxed) < 20_000 {
                    let i = sent.fetch_add(1, Ordering::Relaxed);
                    let path = if (i + worker) % 4 == 0 {
                        "/down/x"
                    } else {
                        "/"
                    };
                    let request = Request::get(format!("http://{proxy}{path}"))
                        .body(Full::default())
                        .unwrap();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), send(&client, request)).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    sent.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_alert_expression_has_data_from_a_real_prometheus() {
    let test = "every_dashboard_and_alert_expression_has_data_from_a_real_prometheus";
    let Some(prometheus_binary) = binary("prometheus") else {
        say(
            test,
            "SKIPPED: no prometheus binary (apt-get install prometheus)",
        );
        return;
    };
    // Every fourth request to the flaky instance is a 503 (retried on the other), every fifth
    // slow enough to be hedged.
    let count = Arc::new(AtomicUsize::new(0));
    let flaky = upstream(move |_req| {
        let n = count.fetch_add(1, Ordering::Relaxed);
        async move {
            if n % 5 == 1 {
                tokio::time::sleep(ms(40)).await;
            }
            if n % 4 == 3 {
                reply(503, "busy")
            } else {
                reply(200, "ok")
            }
        }
    })
    .await;
    let good = ok_upstream().await;
    let down = [refusing_address().await, refusing_address().await];

    let dir = TempDir::new("observability");
    let file = dir.0.join("stormguard.toml");
    std::fs::write(&file, settings(flaky.addr, good.addr, down, "")).unwrap();
    let started_from = stormguard_proxy::config::load(&file).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, admin) = (
        listener.local_addr().unwrap(),
        admin_listener.local_addr().unwrap(),
    );
    let mut running = started_from.clone();
    running.listen.address = addr;
    running.admin.address = admin;
    let mut registry = Registry::default();
    let proxy = Proxy::new(running, &mut registry).unwrap();
    let reload_metrics = ReloadMetrics::register(&mut registry);
    let reloader = Arc::new(Reloader::new(
        file.clone(),
        Arc::new(proxy.clone()),
        reload_metrics,
        started_from,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve(
        proxy.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    let admin_server = AdminServer::new(reloader.clone(), Arc::new(registry), Arc::default());
    let admin_served = tokio::spawn(admin_server.serve(admin_listener, std::future::pending()));

    // Prometheus scrapes the admin endpoint twice a second and evaluates the rules as often.
    let rules = deploy("prometheus/alerts.yml").canonicalize().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 500ms\n  evaluation_interval: 500ms\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: stormguard\n    static_configs:\n      - targets: [\"{admin}\"]\n",
        rules.display()
    );
    let (_prometheus, prometheus) =
        prometheus::start_prometheus_with(&prometheus_binary, &dir.0, &config).unwrap();
    let http = prometheus::client();
    prometheus::ready(&http, &prometheus, &dir.0).await.unwrap();
    // Its discovery hands targets to the scrapers up to 5 s after start: load before the first
    // scrape would be one flat sample, and every rate zero.
    let scraped = prometheus::wait_until(Duration::from_secs(30), || async {
        prometheus::query(&http, &prometheus, "up").await == 1.0
    })
    .await;
    let log_tail = || prometheus::log_tail(&dir.0);
    assert!(
        scraped,
        "no scrape of the proxy within 30 s:\n{}",
        log_tail()
    );

    // Load, with a reload that applies halfway and one that is refused at the end.
    let load = tokio::spawn(load(addr, Duration::from_secs(4)));
    tokio::time::sleep(ms(1500)).await;
    std::fs::write(&file, settings(flaky.addr, good.addr, down, "# an edit\n")).unwrap();
    assert_eq!(reloader.reload(Trigger::Admin).await.unwrap(), 2);
    let sent = load.await.unwrap();
    std::fs::write(
        &file,
        settings(flaky.addr, good.addr, down, "adaptive_timeout = \"yes\"\n"),
    )
    .unwrap();
    assert!(reloader.reload(Trigger::Admin).await.is_err());
    assert!(sent > 200, "only {sent} requests in 4 s");

    // Rules loaded and evaluated without error.
    let mut alert_exprs = BTreeMap::new();
    let mut reload_failed_firing = false;
    for _ in 0..60 {
        let rules = api(&http, &prometheus, "/api/v1/rules").await;
        alert_exprs.clear();
        reload_failed_firing = false;
        for group in rules["data"]["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let name = rule["name"].as_str().unwrap().to_string();
                assert_eq!(rule["health"], "ok", "{name}: {rule}");
                alert_exprs.insert(name.clone(), rule["query"].as_str().unwrap().to_string());
                if name == "StormguardReloadFailed" && rule["state"] == "firing" {
                    reload_failed_firing = true;
                }
            }
        }
        if reload_failed_firing && alert_exprs.len() == 4 {
            break;
        }
        tokio::time::sleep(ms(250)).await;
    }
    assert_eq!(alert_exprs.len(), 4, "{alert_exprs:?}\n{}", log_tail());
    assert!(
        reload_failed_firing,
        "the refused reload fires StormguardReloadFailed"
    );

    // Every expression returns data; polled while the last scrapes come in.
    let mut exprs: Vec<(String, String)> = dashboard_expressions(&dashboard())
        .into_iter()
        .map(|e| ("dashboard".to_string(), e))
        .collect();
    exprs.extend(alert_exprs.clone());
    let mut empty = Vec::new();
    for _ in 0..40 {
        empty.clear();
        for (from, expr) in &exprs {
            let (samples, error) = query(&http, &prometheus, expr).await;
            if samples.is_empty() {
                empty.push(format!("{from}: {expr} {error}"));
            }
        }
        if empty.is_empty() {
            break;
        }
        tokio::time::sleep(ms(250)).await;
    }
    assert!(
        empty.is_empty(),
        "{} of {} expressions returned no data:\n{}",
        empty.len(),
        exprs.len(),
        empty.join("\n")
    );

    // The alerts say what happened, and of what happened only.
    let routes = |samples: Vec<Value>, label: &str| -> BTreeSet<String> {
        samples
            .iter()
            .map(|s| s["metric"][label].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let (out, _) = query(
        &http,
        &prometheus,
        &alert_exprs["StormguardAllInstancesOut"],
    )
    .await;
    assert_eq!(
        routes(out, "route"),
        BTreeSet::from(["down".to_string()]),
        "api has an instance that answers"
    );
    let (below, _) = query(
        &http,
        &prometheus,
        &alert_exprs["StormguardSuccessRateBelowObjective"],
    )
    .await;
    assert!(routes(below, "route").contains("down"));
    let (denied, _) = query(
        &http,
        &prometheus,
        &alert_exprs["StormguardRetryBudgetExhausted"],
    )
    .await;
    assert!(!routes(denied, "target").is_empty());

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
    admin_served.abort();
}
