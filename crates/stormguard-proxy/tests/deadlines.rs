//! Deadlines across the proxy: the caller's budget is kept, capped by the route timeout, and
//! passed on decremented; too little of it is answered at once.

mod support;

use std::time::Duration;

use http::Request;
use http_body_util::Full;
use support::*;

fn budget_seen(instance: &Instance) -> Vec<u64> {
    instance
        .heads()
        .iter()
        .filter_map(|h| h.get("stormguard-budget-ms"))
        .map(|v| v.to_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_300ms_budget_against_a_1s_upstream_is_answered_504_deadline_in_time() {
    let slow = slow_upstream(Duration::from_secs(1)).await;
    let proxy = start(single(&[slow.addr])).await;
    let client = client();
    let req = Request::get(proxy.url("/report"))
        .header("stormguard-budget-ms", "300")
        .body(Full::default())
        .unwrap();
    let started = tokio::time::Instant::now();
    let reply = send(&client, req).await.unwrap();
    let elapsed = started.elapsed();
    println!("answered {} in {elapsed:?}", reply.status);
    assert_eq!(reply.status, 504);
    assert_eq!(reply.header("stormguard-reason"), Some("deadline"));
    assert!(elapsed < ms(450), "answered after {elapsed:?}");
    let seen = budget_seen(&slow);
    assert_eq!(seen.len(), 1);
    assert!(seen[0] < 300, "the upstream saw {} ms", seen[0]);
}

#[tokio::test]
async fn the_reserve_is_kept_back_once() {
    let up = ok_upstream().await;
    let mut settings = single(&[up.addr]);
    settings.routes[0].deadline_reserve = ms(100);
    let proxy = start(settings).await;
    let req = Request::get(proxy.url("/"))
        .header("stormguard-budget-ms", "1000")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client(), req).await.unwrap().status, 200);
    let seen = budget_seen(&up);
    // 1000 - 100, less the moment it took to get there; twice the reserve would be 800.
    assert!(
        seen.len() == 1 && seen[0] <= 900 && seen[0] > 850,
        "{seen:?}"
    );
}

#[tokio::test]
async fn grpc_and_envoy_budgets_are_read_too() {
    let up = ok_upstream().await;
    let proxy = start(single(&[up.addr])).await;
    let client = client();
    for (name, value) in [
        ("grpc-timeout", "250m"),
        ("x-envoy-expected-rq-timeout-ms", "250"),
    ] {
        let req = Request::get(proxy.url("/"))
            .header(name, value)
            .body(Full::default())
            .unwrap();
        assert_eq!(send(&client, req).await.unwrap().status, 200);
    }
    let seen = budget_seen(&up);
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|b| *b < 250 && *b > 200), "{seen:?}");
}

#[tokio::test]
async fn the_request_timeout_caps_a_longer_budget() {
    let slow = slow_upstream(Duration::from_secs(1)).await;
    let mut config = single(&[slow.addr]);
    config.routes[0].call.request_timeout = Some(ms(300));
    let proxy = start(config).await;
    let client = client();
    let req = Request::get(proxy.url("/"))
        .header("stormguard-budget-ms", "5000")
        .body(Full::default())
        .unwrap();
    let started = tokio::time::Instant::now();
    let reply = send(&client, req).await.unwrap();
    assert_eq!(reply.status, 504);
    assert!(started.elapsed() < ms(600));
    assert!(budget_seen(&slow)[0] <= 300);
}

#[tokio::test]
async fn a_spent_budget_is_answered_at_once_without_an_attempt() {
    let up = ok_upstream().await;
    let proxy = start(single(&[up.addr])).await;
    let client = client();
    let req = Request::get(proxy.url("/"))
        .header("stormguard-budget-ms", "3")
        .body(Full::default())
        .unwrap();
    let reply = send(&client, req).await.unwrap();
    assert_eq!(reply.status, 504);
    assert_eq!(reply.header("stormguard-reason"), Some("deadline"));
    assert_eq!(reply.header("stormguard-attempts"), Some("0"));
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn without_propagation_no_budget_is_passed_on() {
    let up = ok_upstream().await;
    let mut config = single(&[up.addr]);
    config.routes[0].call.propagate_deadline = false;
    let proxy = start(config).await;
    let client = client();
    let req = Request::get(proxy.url("/"))
        .header("stormguard-budget-ms", "300")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client, req).await.unwrap().status, 200);
    assert!(budget_seen(&up).is_empty());
}

/// Every route measures its upstream, hedged or not: after a warm-up against a 100 ms upstream,
/// a 30 ms budget cannot cover an attempt and is answered at once, without sending it.
#[tokio::test]
async fn a_budget_below_the_measured_latency_is_answered_at_once_without_an_attempt() {
    let slow = slow_upstream(ms(100)).await;
    let proxy = start(single(&[slow.addr])).await;
    let url = proxy.url("/");
    // The estimator answers from 100 samples on.
    let outcomes = drive(110, 20, Duration::from_secs(30), move |_| {
        Request::get(&url).body(Full::default()).unwrap()
    })
    .await;
    assert_all_ok(&outcomes);
    let before = slow.hits();
    let req = Request::get(proxy.url("/"))
        .header("stormguard-budget-ms", "30")
        .body(Full::default())
        .unwrap();
    let started = tokio::time::Instant::now();
    let reply = send(&client(), req).await.unwrap();
    let took = started.elapsed();
    assert_eq!(reply.status, 504);
    assert_eq!(reply.header("stormguard-reason"), Some("deadline"));
    assert_eq!(reply.header("stormguard-attempts"), Some("0"));
    assert!(
        took < ms(25),
        "answered at once, not after the budget: {took:?}"
    );
    assert_eq!(slow.hits(), before, "the upstream did not receive it");
}
