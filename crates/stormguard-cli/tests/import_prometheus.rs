//! `stormguard import --prometheus` as a user runs it: the built binary against a real
//! Prometheus server (Debian's `prometheus`, started here on 127.0.0.1 with a generated config)
//! that scrapes a `/metrics` page this test serves in a mesh's own metric names, counters rising
//! in real time at known rates and latencies in known buckets.
//!
//! The shop: users → gateway 100 requests a second; each gateway request goes to catalog (6 in
//! 10) or orders (4 in 10); each orders request calls db twice. The latencies are shares of
//! requests per bucket of Istio's ladder chosen so that the quantiles are round (db p50 7.5 ms,
//! p99 45 ms; catalog 22, 95; orders 40, 175; gateway 50, 235 as received), so each service's
//! own latency is known: orders 40 − 2 × 7.5 = 25 ms and 175 − 2 × 45 = 85 ms; gateway
//! 50 − (0.6 × 22 + 0.4 × 40) = 20.8 ms and 235 − (0.6 × 95 + 0.4 × 175) = 108 ms. The base
//! graph must give back the edges, the rates within 10% and these latencies within 1%.
//! Without a `prometheus` binary, or when it does not start, a test says on standard error that
//! it was skipped and why.

#[path = "support/bounded.rs"]
mod bounded;
#[path = "support/prometheus.rs"]
mod prometheus;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use prometheus::{say, TempDir};

/// Istio's default bucket ladder (ms) up to 30 s, for both pages: the import reads whatever
/// bounds a histogram has.
const LADDER: [f64; 14] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

/// Cumulative shares of each service's received latency at bounds of the ladder.
const DB: &[(f64, f64)] = &[(5.0, 0.25), (10.0, 0.75), (25.0, 0.95), (50.0, 1.0)];
const CATALOG: &[(f64, f64)] = &[(10.0, 0.1), (25.0, 0.6), (50.0, 0.9), (100.0, 1.0)];
const ORDERS: &[(f64, f64)] = &[(25.0, 0.2), (50.0, 0.7), (100.0, 0.98), (250.0, 1.0)];
const GATEWAY: &[(f64, f64)] = &[(25.0, 0.1), (50.0, 0.5), (100.0, 0.9), (250.0, 1.0)];

/// The window asked for: every series is scraped for longer than this before the import runs.
const WINDOW: &str = "10s";

/// One series of a page: its labels, requests a second, and its latency's cumulative shares.
struct Series {
    labels: String,
    rate: f64,
    shares: &'static [(f64, f64)],
}

/// The page after `elapsed` seconds: each counter at its rate times the time, each bucket at its
/// share of it, so every scrape is higher than the last and `rate()` gives the rates back.
fn page(counter: &str, histogram: &str, series: &[Series], elapsed: f64) -> String {
    let mut text = format!("# TYPE {counter} counter\n");
    for s in series {
        let _ = writeln!(text, "{counter}{{{}}} {}", s.labels, s.rate * elapsed);
    }
    let _ = writeln!(text, "# TYPE {histogram} histogram");
    for s in series {
        let total = s.rate * elapsed;
        for bound in LADDER {
            let share = s
                .shares
                .iter()
                .rev()
                .find(|(b, _)| *b <= bound)
                .map_or(0.0, |(_, share)| *share);
            let _ = writeln!(
                text,
                "{histogram}_bucket{{{},le=\"{bound}\"}} {}",
                s.labels,
                total * share
            );
        }
        let _ = writeln!(
            text,
            "{histogram}_bucket{{{},le=\"+Inf\"}} {total}",
            s.labels
        );
        let _ = writeln!(text, "{histogram}_count{{{}}} {total}", s.labels);
    }
    text
}

/// Istio's labels of one reporter's series of a call (`src` "unknown" for outside the mesh).
fn istio(reporter: &str, src: &str, workload: &str, service: &str, code: &str) -> String {
    format!(
        "reporter=\"{reporter}\",source_workload=\"{src}\",source_workload_namespace=\"shop\",\
         destination_workload=\"{workload}\",destination_workload_namespace=\"shop\",\
         destination_service=\"{service}.shop.svc.cluster.local\",\
         destination_service_name=\"{service}\",destination_service_namespace=\"shop\",\
         request_protocol=\"http\",response_code=\"{code}\",\
         connection_security_policy=\"mutual_tls\""
    )
}

fn s(labels: String, rate: f64, shares: &'static [(f64, f64)]) -> Series {
    Series {
        labels,
        rate,
        shares,
    }
}

fn istio_shop() -> Vec<Series> {
    vec![
        s(
            istio("destination", "unknown", "gateway", "gateway", "200"),
            100.0,
            GATEWAY,
        ),
        // One call's series by response code: the query adds them.
        s(
            istio("destination", "gateway", "catalog-v1", "catalog", "200"),
            57.0,
            CATALOG,
        ),
        s(
            istio("destination", "gateway", "catalog-v1", "catalog", "503"),
            3.0,
            CATALOG,
        ),
        s(
            istio("source", "gateway", "catalog-v1", "catalog", "200"),
            60.0,
            CATALOG,
        ),
        s(
            istio("destination", "gateway", "orders-v1", "orders", "200"),
            40.0,
            ORDERS,
        ),
        s(
            istio("source", "gateway", "orders-v1", "orders", "200"),
            40.0,
            ORDERS,
        ),
        s(
            istio("destination", "orders-v1", "db-v1", "db", "200"),
            80.0,
            DB,
        ),
        s(istio("source", "orders-v1", "db-v1", "db", "200"), 80.0, DB),
    ]
}

fn linkerd_shop() -> Vec<Series> {
    let outbound = |from: &str, to: &str| {
        format!(
            "direction=\"outbound\",deployment=\"{from}\",namespace=\"shop\",\
             authority=\"{to}.shop.svc.cluster.local:8080\",dst_deployment=\"{to}\",\
             dst_namespace=\"shop\",dst_service=\"{to}\",tls=\"true\""
        )
    };
    let inbound = |name: &str| {
        format!("direction=\"inbound\",deployment=\"{name}\",namespace=\"shop\",tls=\"true\"")
    };
    vec![
        s(inbound("gateway"), 100.0, GATEWAY),
        s(inbound("catalog"), 60.0, CATALOG),
        s(inbound("orders"), 40.0, ORDERS),
        s(inbound("db"), 80.0, DB),
        s(outbound("gateway", "catalog"), 60.0, CATALOG),
        s(outbound("gateway", "orders"), 40.0, ORDERS),
        s(outbound("orders", "db"), 80.0, DB),
    ]
}

/// Serves the page, has a real Prometheus scrape it for longer than [`WINDOW`], runs
/// `stormguard import EMPTY_DIR --prometheus URL --window 10s`: the graph file it writes, or
/// `None` when there is no Prometheus to run (said on standard error).
async fn import_from_real_prometheus(
    test: &str,
    counter: &'static str,
    histogram: &'static str,
    series: Vec<Series>,
) -> Option<String> {
    let Some(binary) = prometheus::prometheus_binary() else {
        say(
            test,
            "SKIPPED: no `prometheus` binary on the PATH or at /usr/bin/prometheus (Debian: \
             apt-get install prometheus; .ci/run installs it)",
        );
        return None;
    };
    let dir = TempDir::new(test);
    let series = Arc::new(series);
    let start = tokio::time::Instant::now();
    let metrics = prometheus::serve(move |_req| {
        let text = page(counter, histogram, &series, start.elapsed().as_secs_f64());
        async move { Response::new(Full::new(Bytes::from(text))) }
    })
    .await
    .to_string();
    let (_prometheus, url) =
        match prometheus::start_prometheus(&binary, &dir.0, &[("mesh", metrics.as_str())]) {
            Ok(started) => started,
            Err(why) => {
                say(test, &format!("SKIPPED: {why}"));
                return None;
            }
        };
    let client = prometheus::client();
    if let Err(why) = prometheus::ready(&client, &url, &dir.0).await {
        say(test, &format!("SKIPPED: {why}"));
        return None;
    }
    // 13 scrapes a second apart: the 10 s window lies within what was scraped.
    let scrapes = format!("count_over_time({counter}[1h])");
    let scraped = prometheus::wait_until(Duration::from_secs(60), || async {
        prometheus::query(&client, &url, &scrapes).await >= 13.0
    })
    .await;
    assert!(
        scraped,
        "13 scrapes within 60 s; log:\n{}",
        prometheus::log_tail(&dir.0)
    );

    let manifests = dir.0.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let manifests = manifests.display().to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        bounded::within(
            &[
                "import",
                &manifests,
                "--prometheus",
                &url,
                "--window",
                WINDOW,
            ],
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    Some(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Within 1%: the quantiles come from buckets that all rose in step.
fn about(measured: Duration, expected_ms: f64) -> bool {
    (ms(measured) - expected_ms).abs() <= expected_ms * 0.01
}

/// The shop's edges, rates and latencies, whichever mesh's names measured them.
fn assert_the_shop(text: &str, query_names: &[&str]) {
    let graph =
        stormguard_graph::parse("base.toml", text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(graph.entry.service, "gateway", "{text}");
    let rate = graph.entry.rate;
    assert!((90.0..=110.0).contains(&rate), "entry rate {rate}:\n{text}");

    // gateway: one backend per request, 6 and 4 in 10.
    let gateway = &graph.services["gateway"];
    let routes: Vec<(&str, f64)> = gateway
        .endpoints
        .iter()
        .map(|e| {
            assert_eq!(e.calls.len(), 1, "{text}");
            (e.calls[0].to.as_str(), e.weight)
        })
        .collect();
    assert_eq!(routes.len(), 2, "{text}");
    assert_eq!((routes[0].0, routes[1].0), ("catalog", "orders"), "{text}");
    assert!(
        (routes[0].1 - 0.6).abs() < 0.06 && (routes[1].1 - 0.4).abs() < 0.04,
        "{text}"
    );

    let orders = &graph.services["orders"];
    assert_eq!(orders.calls.len(), 1, "{text}");
    assert_eq!(
        (orders.calls[0].to.as_str(), orders.calls[0].count),
        ("db", 2),
        "{text}"
    );
    for (service, p50, p99) in [
        ("db", 7.5, 45.0),
        ("catalog", 22.0, 95.0),
        ("orders", 25.0, 85.0),
        ("gateway", 20.8, 108.0),
    ] {
        let latency = graph.services[service].latency;
        assert!(
            about(latency.p50, p50) && about(latency.p99, p99),
            "{service}: {latency:?}, expected {p50} ms and {p99} ms:\n{text}"
        );
    }
    assert!(graph.services["catalog"].calls.is_empty() && graph.services["db"].calls.is_empty());
    assert_eq!(graph.services.len(), 4, "{text}");
    // Every value names the query it came from and the window.
    for line in text.lines().filter(|l| l.contains(" = ")) {
        assert!(
            query_names
                .iter()
                .any(|q| line.contains(&format!("# prometheus: {q} over {WINDOW} ("))),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_metrics_in_a_real_prometheus_give_the_base_graph() {
    let test = "import-prometheus-istio";
    let Some(text) = import_from_real_prometheus(
        test,
        "istio_requests_total",
        "istio_request_duration_milliseconds",
        istio_shop(),
    )
    .await
    else {
        return;
    };
    assert_the_shop(&text, &["istio-requests", "istio-latency"]);
    say(test, &format!("the base graph:\n{text}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkerd_metrics_in_a_real_prometheus_give_the_base_graph() {
    let Some(text) = import_from_real_prometheus(
        "import-prometheus-linkerd",
        "request_total",
        "response_latency_ms",
        linkerd_shop(),
    )
    .await
    else {
        return;
    };
    assert_the_shop(
        &text,
        &["linkerd-outbound", "linkerd-inbound", "linkerd-latency"],
    );
}

#[test]
fn a_server_that_is_not_there_or_not_http_is_said_so() {
    let dir = TempDir::new("import-prometheus-errors");
    let empty = dir.0.display().to_string();
    let (code, _, err) = bounded::within(
        &["import", &empty, "--prometheus", "http://127.0.0.1:1"],
        Duration::from_secs(60),
    );
    assert_eq!(code, 3, "nothing listens there: {err}");
    assert!(
        err.contains("asking http://127.0.0.1:1 for istio-requests"),
        "{err}"
    );
    let (code, _, err) = bounded::within(
        &["import", &empty, "--prometheus", "https://prom.example"],
        Duration::from_secs(60),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("give the server's http:// address"), "{err}");
}
