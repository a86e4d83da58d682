//! The hedge layer on paused time.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use tower::ServiceExt;
use tower_layer::Layer;

use super::super::test_support::{Calls, Recorder};
use super::super::{Balance, ReplayBody, TriedInstances};
use super::HedgeLayer;
use crate::hedge::{HedgeDelay, HedgePolicy};
use crate::metrics::Event;

type Body = Full<Bytes>;

fn get() -> Request<Body> {
    Request::builder()
        .method(Method::GET)
        .uri("http://catalog.test/")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A mock instance: answers `()` after a delay.
type Mock = tower::util::BoxCloneSyncService<Request<ReplayBody<Body>>, Response<()>, Infallible>;

/// Two instances: the first request anywhere takes 1 s (the tail), every other 10 ms.
fn tail_once() -> (Balance<Mock>, Calls) {
    let calls = Calls::default();
    let instances = (0..2)
        .map(|_| {
            let calls = calls.clone();
            Mock::new(tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
                let n = calls.next();
                async move {
                    let took = if n == 0 { 1000 } else { 10 };
                    tokio::time::sleep(Duration::from_millis(took)).await;
                    Ok::<_, Infallible>(Response::new(()))
                }
            }))
        })
        .collect();
    (Balance::new(instances).seed(4), calls)
}

#[tokio::test(start_paused = true)]
async fn hedging_cuts_a_one_second_tail_to_the_hedge_delay() {
    let (balance, calls) = tail_once();
    let policy = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)), 1.0).unwrap();
    let recorder = Recorder::default();
    let svc = HedgeLayer::new(policy)
        .observer(recorder.clone())
        .layer(balance);
    let start = tokio::time::Instant::now();
    // The caller's list, to read where the copies went.
    let tried = TriedInstances::default();
    let mut req = get();
    req.extensions_mut().insert(tried.clone());
    svc.oneshot(req).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(60),
        "50 ms delay + 10 ms hedge"
    );
    assert_eq!(calls.get(), 2);
    assert_eq!(recorder.count(|e| *e == Event::HedgeSent), 1);
    assert_eq!(recorder.count(|e| *e == Event::HedgeWon), 1);
    // The hedge went to the other instance.
    let went = tried.to_vec();
    assert_eq!(went.len(), 2);
    assert_ne!(went[0], went[1]);
    assert_eq!(tried.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_never_hedged() {
    let (balance, calls) = tail_once();
    let policy = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)), 1.0).unwrap();
    let svc = HedgeLayer::new(policy).layer(balance);
    let mut req = get();
    *req.method_mut() = Method::POST;
    let start = tokio::time::Instant::now();
    svc.oneshot(req).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_without_budget() {
    let (balance, calls) = tail_once();
    // 5%: the first request has earned only a twentieth of a hedge.
    let policy = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)), 0.05).unwrap();
    let svc = HedgeLayer::new(policy).layer(balance);
    let start = tokio::time::Instant::now();
    svc.oneshot(get()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(calls.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fast_answer_sends_no_hedge() {
    let calls = Calls::default();
    let seen = calls.clone();
    let fast = tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
        seen.next();
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, Infallible>(Response::new(()))
        }
    });
    let policy = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)), 1.0).unwrap();
    let layer = HedgeLayer::new(policy);
    let estimator = layer.latency_estimator();
    let svc = layer.layer(fast);
    svc.oneshot(get()).await.unwrap();
    assert_eq!(calls.get(), 1);
    let now = tokio::time::Instant::now().into_std();
    assert_eq!(estimator.count(now), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_original_waits_for_the_hedge() {
    // The original takes 100 ms and fails with 503; the hedge answers 200.
    let calls = Calls::default();
    let instances = (0..2)
        .map(|_| {
            let calls = calls.clone();
            Mock::new(tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
                let n = calls.next();
                async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let status = if n == 0 { 503 } else { 200 };
                    Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
                }
            }))
        })
        .collect();
    let policy = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)), 1.0).unwrap();
    let svc = HedgeLayer::new(policy).layer(Balance::new(instances).seed(1));
    let start = tokio::time::Instant::now();
    let response = svc.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_millis(150));
}

#[tokio::test(start_paused = true)]
async fn the_hedge_carries_the_budget_left_when_it_leaves() {
    let budgets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = budgets.clone();
    let calls = Calls::default();
    let svc = tower::service_fn(move |req: Request<ReplayBody<Body>>| {
        let n = calls.next();
        seen.lock().unwrap().push(
            req.headers()["stormguard-budget-ms"]
                .to_str()
                .unwrap()
                .to_string(),
        );
        async move {
            let took = if n == 0 { 1000 } else { 10 };
            tokio::time::sleep(Duration::from_millis(took)).await;
            Ok::<_, Infallible>(Response::new(()))
        }
    });
    let policy = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)), 1.0).unwrap();
    let svc = HedgeLayer::new(policy).layer(svc);
    let mut req = get();
    req.headers_mut()
        .insert("stormguard-budget-ms", "500".parse().unwrap());
    svc.oneshot(req).await.unwrap();
    assert_eq!(*budgets.lock().unwrap(), vec!["500", "450"]);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_when_the_deadline_ends_before_the_delay() {
    let (balance, calls) = tail_once();
    let policy = HedgePolicy::new(HedgeDelay::Fixed(Duration::from_millis(50)), 1.0).unwrap();
    let svc = HedgeLayer::new(policy).layer(balance);
    let mut req = get();
    req.headers_mut()
        .insert("stormguard-budget-ms", "40".parse().unwrap());
    svc.oneshot(req).await.unwrap();
    assert_eq!(calls.get(), 1);
}
