//! Answers written by hand, with the figures worked out by hand: rates, calls per request,
//! endpoints and own latencies, and the result parsed by the graph's own parser.

use std::time::Duration;

use super::shape::{layout, split_for_tests as split};
use super::*;

/// Istio's default bucket ladder (ms), as its sidecars expose it.
const ISTIO_LADDER: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

fn labels_json(labels: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("\"{k}\":\"{v}\""))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

fn answer(results: &[String]) -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        results.join(",")
    )
}

/// One rate sample.
fn rate(labels: &[(&str, &str)], value: f64) -> String {
    format!(
        r#"{{"metric":{},"value":[1712345678.9,"{value}"]}}"#,
        labels_json(labels)
    )
}

/// The bucket samples of `rate` requests a second whose cumulative shares at the given bounds
/// are `shares` (the share is 1 from the last one up).
fn histogram(labels: &[(&str, &str)], rate: f64, shares: &[(f64, f64)]) -> Vec<String> {
    let mut out = Vec::new();
    for bound in ISTIO_LADDER {
        let share = shares
            .iter()
            .rev()
            .find(|(b, _)| *b <= bound)
            .map_or(0.0, |(_, s)| *s);
        let mut l = labels.to_vec();
        let le = bound.to_string();
        l.push(("le", &le));
        out.push(self::rate(&l, rate * share));
    }
    let mut l = labels.to_vec();
    l.push(("le", "+Inf"));
    out.push(self::rate(&l, rate));
    out
}

/// Cumulative shares of each service's received latency (ms), chosen so the quantiles are
/// round: db p50 7.5, p99 45; catalog 22, 95; orders 40, 175; gateway 50, 235.
const DB: &[(f64, f64)] = &[(5.0, 0.25), (10.0, 0.75), (25.0, 0.95), (50.0, 1.0)];
const CATALOG: &[(f64, f64)] = &[(10.0, 0.1), (25.0, 0.6), (50.0, 0.9), (100.0, 1.0)];
const ORDERS: &[(f64, f64)] = &[(25.0, 0.2), (50.0, 0.7), (100.0, 0.98), (250.0, 1.0)];
const GATEWAY: &[(f64, f64)] = &[(25.0, 0.1), (50.0, 0.5), (100.0, 0.9), (250.0, 1.0)];

fn answers(window: Duration, jsons: &[(&str, String)]) -> Vec<(Query, String)> {
    queries(window)
        .into_iter()
        .map(|q| {
            let json = jsons
                .iter()
                .find(|(name, _)| *name == q.name)
                .map_or_else(|| answer(&[]), |(_, j)| j.clone());
            (q, json)
        })
        .collect()
}

fn istio_labels<'a>(
    reporter: &'a str,
    src: &'a str,
    dst: &'a str,
    svc: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("reporter", reporter),
        ("source_workload", src),
        ("destination_workload", dst),
        ("destination_service_name", svc),
    ]
}

/// Users → gateway (100/s from outside), gateway → catalog 60/s and → orders 40/s, orders → db
/// 80/s (2 per request). db has no sidecar: only the source reports its calls.
fn istio_shop() -> Vec<(Query, String)> {
    let outside = istio_labels("destination", "unknown", "gateway", "gateway");
    let gc_dst = istio_labels("destination", "gateway", "catalog-v1", "catalog");
    let gc_src = istio_labels("source", "gateway", "catalog-v1", "catalog");
    let go_dst = istio_labels("destination", "gateway", "orders-v1", "orders");
    let od_src = istio_labels("source", "orders-v1", "unknown", "db");
    let rates = answer(&[
        rate(&outside, 100.0),
        rate(&gc_dst, 60.0),
        // The caller's report of the same calls differs a little: the destination's is read.
        rate(&gc_src, 61.0),
        rate(&go_dst, 40.0),
        rate(&od_src, 80.0),
    ]);
    let mut buckets = Vec::new();
    buckets.extend(histogram(&outside, 100.0, GATEWAY));
    buckets.extend(histogram(&gc_dst, 60.0, CATALOG));
    buckets.extend(histogram(&gc_src, 61.0, GATEWAY));
    buckets.extend(histogram(&go_dst, 40.0, ORDERS));
    buckets.extend(histogram(&od_src, 80.0, DB));
    answers(
        Duration::from_secs(600),
        &[
            ("istio-requests", rates),
            ("istio-latency", answer(&buckets)),
        ],
    )
}

/// The graph of an Istio rate answer alone, over a minute: its text and what it parses to.
fn istio_rates_graph(rates: String) -> (String, stormguard_graph::Graph) {
    let window = Duration::from_secs(60);
    let text = base_graph("p", window, &answers(window, &[("istio-requests", rates)])).unwrap();
    let graph =
        stormguard_graph::parse("base.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, graph)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn istio_edges_rates_and_latencies_become_a_graph() {
    let text = base_graph("http://prom:9090", Duration::from_secs(600), &istio_shop()).unwrap();
    let graph =
        stormguard_graph::parse("base.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(graph.entry.service, "gateway", "{text}");
    assert_eq!(graph.entry.rate, 100.0);

    // Each gateway request goes to one backend: endpoints of 6 and 4 in 10.
    let gateway = &graph.services["gateway"];
    assert!(gateway.calls.is_empty());
    let shares: Vec<(&str, f64, &str)> = gateway
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.weight, e.calls[0].to.as_str()))
        .collect();
    assert_eq!(
        shares,
        vec![("to-catalog", 0.6, "catalog"), ("to-orders", 0.4, "orders")]
    );
    // Its own work: received 50/235 less 0.6 x catalog (22/95) and 0.4 x orders (40/175).
    assert!(close(ms(gateway.latency.p50), 20.8), "{text}");
    assert!(close(ms(gateway.latency.p99), 108.0), "{text}");

    let orders = &graph.services["orders"];
    assert_eq!(orders.calls.len(), 1);
    assert_eq!(
        (orders.calls[0].to.as_str(), orders.calls[0].count),
        ("db", 2)
    );
    // 40 - 2 x 7.5 and 175 - 2 x 45.
    assert!(close(ms(orders.latency.p50), 25.0), "{text}");
    assert!(close(ms(orders.latency.p99), 85.0), "{text}");
    let catalog = &graph.services["catalog"];
    assert!(close(ms(catalog.latency.p50), 22.0) && close(ms(catalog.latency.p99), 95.0));
    // db's only report is its callers'.
    let db = &graph.services["db"];
    assert!(close(ms(db.latency.p50), 7.5) && close(ms(db.latency.p99), 45.0));
    assert!(
        text.contains(
            "latency = { p50 = \"7.5ms\", p99 = \"45ms\" } # prometheus: istio-latency over 10m \
         (received p50 7.5ms, p99 45ms as its callers measured it)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "count = 2 # prometheus: istio-requests over 10m (80.0 calls a second over 40.0 \
         requests a second: 2.0 per request)"
        ),
        "{text}"
    );
    // Every value line names its query and window.
    for line in text.lines().filter(|l| l.contains(" = ")) {
        assert!(
            line.contains("# prometheus: istio-") && line.contains(" over 10m ("),
            "{line}"
        );
    }
}

#[test]
fn an_ingress_gateway_no_one_calls_is_the_entry() {
    // Istio's ingress gateway reports as source only: nothing says what it received.
    let a = istio_labels("source", "istio-ingressgateway", "web-v1", "web");
    let b = istio_labels("destination", "istio-ingressgateway", "web-v1", "web");
    let rates = answer(&[rate(&a, 30.0), rate(&b, 30.0)]);
    let (text, graph) = istio_rates_graph(rates);
    assert_eq!(graph.entry.service, "istio-ingressgateway");
    assert_eq!(graph.entry.rate, 30.0);
    let calls = &graph.services["istio-ingressgateway"].calls;
    assert_eq!((calls[0].to.as_str(), calls[0].count), ("web", 1));
    assert!(
        text.contains("# latency: no histogram measured it"),
        "{text}"
    );
}

#[test]
fn several_entries_get_a_placeholder_of_users() {
    let a = istio_labels("destination", "unknown", "web-v1", "web");
    let b = istio_labels("destination", "unknown", "api-v1", "api");
    let rates = answer(&[rate(&a, 75.0), rate(&b, 25.0)]);
    let (text, graph) = istio_rates_graph(rates);
    assert_eq!(graph.entry.service, "users", "{text}");
    assert_eq!(graph.entry.rate, 100.0);
    let weights: Vec<(String, f64)> = graph.services["users"]
        .endpoints
        .iter()
        .map(|e| (e.calls[0].to.clone(), e.weight))
        .collect();
    assert_eq!(weights, vec![("api".into(), 0.25), ("web".into(), 0.75)]);
}

#[test]
fn linkerd_outbound_calls_and_inbound_latency_become_a_graph() {
    let out = |from: &'static str, to: &'static str| {
        vec![
            ("deployment", from),
            ("dst_deployment", to),
            ("dst_service", to),
        ]
    };
    let outbound = answer(&[
        rate(&out("gateway", "catalog"), 60.0),
        rate(&out("gateway", "orders"), 40.0),
        rate(&out("orders", "db"), 80.0),
    ]);
    let inbound = answer(&[
        rate(&[("deployment", "gateway")], 100.0),
        rate(&[("deployment", "catalog")], 60.0),
        rate(&[("deployment", "orders")], 40.0),
        rate(&[("deployment", "db")], 80.0),
    ]);
    let mut buckets = Vec::new();
    for (name, rate, shares) in [
        ("gateway", 100.0, GATEWAY),
        ("catalog", 60.0, CATALOG),
        ("orders", 40.0, ORDERS),
        ("db", 80.0, DB),
    ] {
        buckets.extend(histogram(
            &[("direction", "inbound"), ("deployment", name)],
            rate,
            shares,
        ));
    }
    let mut l = out("orders", "db");
    l.push(("direction", "outbound"));
    buckets.extend(histogram(&l, 80.0, DB));
    let text = base_graph(
        "p",
        Duration::from_secs(300),
        &answers(
            Duration::from_secs(300),
            &[
                ("linkerd-outbound", outbound),
                ("linkerd-inbound", inbound),
                ("linkerd-latency", answer(&buckets)),
            ],
        ),
    )
    .unwrap();
    let graph =
        stormguard_graph::parse("base.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(graph.entry.service, "gateway", "{text}");
    assert_eq!(graph.entry.rate, 100.0);
    assert!(
        text.contains("rate = 100.0 # prometheus: linkerd-inbound over 5m"),
        "{text}"
    );
    assert_eq!(graph.services["orders"].calls[0].count, 2);
    assert!(
        close(ms(graph.services["orders"].latency.p50), 25.0),
        "{text}"
    );
    assert!(
        close(ms(graph.services["gateway"].latency.p99), 108.0),
        "{text}"
    );
    assert_eq!(graph.services["gateway"].endpoints.len(), 2);
}

#[test]
fn calls_per_request_are_whole_numbers_and_shares() {
    assert_eq!(split(1.0), (1, 0.0));
    assert_eq!(split(0.97), (1, 0.0), "counting noise below a whole number");
    assert_eq!(split(2.04), (2, 0.0), "and above it");
    let (whole, share) = split(2.5);
    assert_eq!(whole, 2);
    assert!(close(share, 0.5));
    let (whole, share) = split(0.01);
    assert_eq!(whole, 0, "a rare call is kept");
    assert!(close(share, 0.01));
    assert_eq!(split(5000.0), (1000, 0.0));
}

#[test]
fn shares_are_laid_out_with_exact_marginals() {
    // Adding up to at most 1: never together.
    let arcs = layout(&[0.6, 0.3]);
    assert_eq!(arcs.len(), 3);
    assert!(close(arcs[0].0, 0.6) && arcs[0].1 == vec![true, false]);
    assert!(close(arcs[1].0, 0.3) && arcs[1].1 == vec![false, true]);
    assert!(close(arcs[2].0, 0.1) && arcs[2].1 == vec![false, false]);
    // Above 1: each still covered by exactly its share.
    for shares in [vec![0.6, 0.7], vec![0.9, 0.8, 0.5, 0.0, 0.3], vec![0.25; 7]] {
        let arcs = layout(&shares);
        assert!(close(arcs.iter().map(|a| a.0).sum::<f64>(), 1.0));
        for (i, share) in shares.iter().enumerate() {
            let covered: f64 = arcs.iter().filter(|a| a.1[i]).map(|a| a.0).sum();
            assert!(close(covered, *share), "{shares:?} {i}: {covered}");
        }
        assert!(arcs.len() <= shares.len() + 1);
    }
}

#[test]
fn refusals_and_silence_are_errors_that_say_so() {
    let refused = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
    let mut a = answers(Duration::from_secs(60), &[]);
    a[0].1 = refused.to_string();
    let e = base_graph("p", Duration::from_secs(60), &a)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("querying istio-requests (sum by (reporter")
            && e.ends_with("Prometheus answered bad_data: parse error"),
        "{e}"
    );
    let e = base_graph(
        "p",
        Duration::from_secs(60),
        &answers(Duration::from_secs(60), &[]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("no request between workloads in the last 1m"),
        "{e}"
    );
}

#[test]
fn envoy_passthrough_is_no_service_and_a_statefulset_is_a_workload() {
    // Istio: calls to hosts outside the registry are lumped in PassthroughCluster: not read.
    let web = istio_labels("destination", "unknown", "web-v1", "web");
    let out = istio_labels("source", "web-v1", "unknown", "PassthroughCluster");
    let rates = answer(&[rate(&web, 10.0), rate(&out, 5.0)]);
    let (text, graph) = istio_rates_graph(rates);
    assert_eq!(
        graph.services.keys().collect::<Vec<_>>(),
        vec!["web"],
        "{text}"
    );

    // Linkerd: a StatefulSet callee, and a StatefulSet's own inbound.
    let outbound = answer(&[rate(
        &[
            ("deployment", "api"),
            ("dst_statefulset", "pg"),
            ("dst_service", "postgres"),
        ],
        20.0,
    )]);
    let inbound = answer(&[
        rate(&[("deployment", "api")], 10.0),
        rate(&[("statefulset", "pg")], 20.0),
    ]);
    let buckets = answer(&histogram(
        &[("direction", "inbound"), ("statefulset", "pg")],
        20.0,
        DB,
    ));
    let text = base_graph(
        "p",
        Duration::from_secs(60),
        &answers(
            Duration::from_secs(60),
            &[
                ("linkerd-outbound", outbound),
                ("linkerd-inbound", inbound),
                ("linkerd-latency", buckets),
            ],
        ),
    )
    .unwrap();
    let graph = stormguard_graph::parse("base.toml", &text).unwrap();
    assert_eq!(graph.entry.service, "api", "{text}");
    let calls = &graph.services["api"].calls;
    assert_eq!((calls[0].to.as_str(), calls[0].count), ("postgres", 2));
    assert!(
        close(ms(graph.services["postgres"].latency.p99), 45.0),
        "{text}"
    );
}

#[test]
fn endpoints_keep_every_call_rate_and_a_cycle_still_has_an_entry() {
    // web: 100/s from outside; x 0.6 per request, y 0.7, z 2.5.
    let web = istio_labels("destination", "unknown", "web", "web");
    let call = |to: &'static str| istio_labels("destination", "web", to, to);
    let rates = answer(&[
        rate(&web, 100.0),
        rate(&call("x"), 60.0),
        rate(&call("y"), 70.0),
        rate(&call("z"), 250.0),
    ]);
    let (text, graph) = istio_rates_graph(rates);
    let endpoints = &graph.services["web"].endpoints;
    assert_eq!(endpoints.len(), 4, "{text}");
    assert!(text.contains(
        "[services.web.endpoints.to-y]\nweight = 0.2 # prometheus: istio-requests over 1m (the \
         share of requests that call y once, z 2 times)"
    ), "{text}");
    let total: f64 = endpoints.iter().map(|e| e.weight).sum();
    for (to, per_request) in [("x", 0.6), ("y", 0.7), ("z", 2.5)] {
        let made: f64 = endpoints
            .iter()
            .flat_map(|e| e.calls.iter().map(move |c| (e.weight, c)))
            .filter(|(_, c)| c.to == to)
            .map(|(w, c)| w * f64::from(c.count))
            .sum();
        assert!(close(made / total, per_request), "{to}: {made}\n{text}");
    }

    // a and b call each other and nothing comes from outside: the busiest is the entry.
    let ab = istio_labels("destination", "a", "b", "b");
    let ba = istio_labels("destination", "b", "a", "a");
    let rates = answer(&[rate(&ab, 10.0), rate(&ba, 20.0)]);
    let (text, graph) = istio_rates_graph(rates);
    assert_eq!(
        (graph.entry.service.as_str(), graph.entry.rate),
        ("a", 20.0)
    );
    assert!(
        text.contains("every service is called by another"),
        "{text}"
    );
}
