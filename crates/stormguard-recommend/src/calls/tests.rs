//! Calls tied to series by key, by name, added together, or refused, on a page written by hand.

use super::*;
use crate::exposition::parse;
use crate::rewrite::GraphFile;

const GRAPH: &str = r#"
[entry]
service = "web"

[[services.web.calls]]
to = "api"
timeout = "1s"
metrics = { job = "api", route = "/users" }

[[services.web.calls]]
to = "cart"
timeout = "100ms"

[[services.web.calls]]
to = "mixed"
timeout = "1s"

[[services.api.calls]]
to = "db"
timeout = "1s"

[[services.api.calls]]
to = "search"

[[services.api.calls]]
to = "uneven"
timeout = "1s"

[services.cart]
[services.db]
[services.search]
[services.mixed]
[services.uneven]
"#;

const PAGE: &str = r#"
http_seconds_bucket{job="api",route="/users",le="0.1"} 9000
http_seconds_bucket{job="api",route="/users",le="0.2"} 10000
http_seconds_bucket{job="api",route="/users",le="+Inf"} 10000
http_seconds_bucket{job="api",route="/orders",le="0.1"} 10
http_seconds_bucket{job="api",route="/orders",le="+Inf"} 10
rpc_seconds_bucket{upstream="cart",le="0.05"} 5000
rpc_seconds_bucket{upstream="cart",le="0.15"} 10000
rpc_seconds_bucket{upstream="cart",le="+Inf"} 10000
rpc_seconds_bucket{job="cart",le="9"} 1
rpc_seconds_bucket{job="cart",le="+Inf"} 1
db_ms_bucket{job="db",instance="a",le="10"} 4000
db_ms_bucket{job="db",instance="a",le="20"} 5000
db_ms_bucket{job="db",instance="a",le="+Inf"} 5000
db_ms_bucket{job="db",instance="b",le="10"} 4000
db_ms_bucket{job="db",instance="b",le="20"} 5000
db_ms_bucket{job="db",instance="b",le="+Inf"} 5000
http_seconds_bucket{job="mixed",le="1"} 1
http_seconds_bucket{job="mixed",le="+Inf"} 1
rpc_seconds_bucket{job="mixed",le="1"} 1
rpc_seconds_bucket{job="mixed",le="+Inf"} 1
rpc_seconds_bucket{job="uneven",instance="a",le="1"} 1
rpc_seconds_bucket{job="uneven",instance="a",le="+Inf"} 1
rpc_seconds_bucket{job="uneven",instance="b",le="2"} 1
rpc_seconds_bucket{job="uneven",instance="b",le="+Inf"} 1
size_bytes_bucket{upstream="search",le="1"} 1
size_bytes_bucket{upstream="search",le="+Inf"} 1
"#;

fn plans() -> (Vec<Series>, Vec<CallPlan>) {
    let graph = stormguard_graph::parse("g.toml", GRAPH).unwrap();
    let keys = GraphFile::parse(GRAPH).unwrap().metrics_keys();
    let series = parse(PAGE).unwrap();
    let plans = plan(&graph, &keys, &series, None, 0.001);
    (series, plans)
}

fn find<'a>(plans: &'a [CallPlan], from: &str, to: &str) -> &'a CallPlan {
    plans
        .iter()
        .find(|p| p.from == from && p.to == to)
        .unwrap_or_else(|| panic!("{from} -> {to}"))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_metrics_key_picks_its_series_by_every_pair() {
    let (series, plans) = plans();
    let users = find(&plans, "web", "api");
    assert_eq!(users.series.len(), 1);
    assert_eq!(series[users.series[0]].labels["route"], "/users");
    let Some(MatchedBy::MetricsKey(key)) = &users.matched_by else {
        panic!("{:?}", users.matched_by);
    };
    assert_eq!(key["job"], "api");
    // rank 9,990 in (100, 200] ms holding 1,000: 100 + 100 * 990/1000.
    let s = users.suggestion.as_ref().unwrap();
    assert!((s.estimate.as_secs_f64() - 0.199).abs() < 1e-9);
    assert_eq!(s.timeout, ms(200));
    assert_eq!(users.share_within_current, Some(Share::Exact(1.0)));
}

#[test]
fn without_a_key_the_upstream_label_comes_first() {
    let (series, plans) = plans();
    let cart = find(&plans, "web", "cart");
    assert_eq!(cart.matched_by, Some(MatchedBy::Label("upstream")));
    assert_eq!(series[cart.series[0]].labels["upstream"], "cart");
    // The current 100 ms: 5,000 + 5,000 * 50/100 of 10,000.
    assert_eq!(cart.share_within_current, Some(Share::Interpolated(0.75)));
    assert_eq!(cart.suggestion.as_ref().unwrap().timeout, ms(150));
}

#[test]
fn instances_of_one_metric_are_added_together() {
    let (_, plans) = plans();
    let db = find(&plans, "api", "db");
    assert_eq!(db.matched_by, Some(MatchedBy::Label("job")));
    assert_eq!(db.series.len(), 2);
    let s = db.suggestion.as_ref().unwrap();
    assert_eq!(s.requests, 10_000.0);
    // rank 9,990 in (10, 20] ms holding 2,000 of the 10,000: 10 + 10 * 1990/2000.
    assert!((s.estimate.as_secs_f64() * 1000.0 - 19.95).abs() < 1e-9);
    assert_eq!(s.timeout, ms(20));
}

#[test]
fn what_cannot_be_matched_says_how_to_fix_it() {
    let (_, plans) = plans();
    let search = find(&plans, "api", "search");
    assert_eq!(
        search.suggestion,
        Err(Unmatched::NoSeries),
        "bytes are no latency"
    );
    assert_eq!(search.current, None);
    assert_eq!(search.share_within_current, None);
    assert_eq!(
        find(&plans, "web", "mixed").suggestion,
        Err(Unmatched::SeveralMetrics(
            "http_seconds, rpc_seconds".to_string()
        ))
    );
    assert_eq!(
        find(&plans, "api", "uneven").suggestion,
        Err(Unmatched::BucketsDiffer)
    );
    assert_eq!(plans.len(), 6, "every call is reported");
}

#[test]
fn a_stated_unit_lets_unitless_series_match() {
    let graph = stormguard_graph::parse("g.toml", GRAPH).unwrap();
    let series = parse(PAGE).unwrap();
    let plans = plan(
        &graph,
        &MetricsKeys::new(),
        &series,
        Some(Unit::Seconds),
        0.001,
    );
    let search = find(&plans, "api", "search");
    assert_eq!(search.matched_by, Some(MatchedBy::Label("upstream")));
}

/// The proxy's page has two histograms by route: what each attempt took and what the caller
/// waited. A timeout bounds an attempt, so a call matched by name takes the first only.
#[test]
fn by_name_the_proxys_attempts_are_taken_not_what_callers_waited() {
    let graph = stormguard_graph::parse(
        "g.toml",
        "[entry]\nservice = \"web\"\n\n[[services.web.calls]]\nto = \"db\"\ntimeout = \"1s\"\n\n[services.db]\n",
    )
    .unwrap();
    let page = "\
        stormguard_proxy_upstream_latency_seconds_bucket{route=\"db\",le=\"0.1\"} 10\n\
        stormguard_proxy_upstream_latency_seconds_bucket{route=\"db\",le=\"+Inf\"} 10\n\
        stormguard_proxy_request_duration_seconds_bucket{route=\"db\",le=\"0.1\"} 9\n\
        stormguard_proxy_request_duration_seconds_bucket{route=\"db\",le=\"+Inf\"} 10\n";
    let series = parse(page).unwrap();
    let plans = plan(&graph, &MetricsKeys::new(), &series, None, 0.001);
    let db = find(&plans, "web", "db");
    assert_eq!(db.matched_by, Some(MatchedBy::Label("route")));
    assert_eq!(db.series.len(), 1);
    assert_eq!(
        series[db.series[0]].metric,
        "stormguard_proxy_upstream_latency_seconds"
    );
    assert!(db.suggestion.is_ok(), "{:?}", db.suggestion);
}
