//! The hedge layer under the retry layer, stacked as the proxy stacks a hedged route
//! (`RetryLayer`, `HedgeLayer`, `Balance`, one estimator shared by both layers): each caller
//! request records one latency and earns the hedge budget once, retries or hedges sent or not.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::ServiceExt;
use tower_layer::Layer;

use super::super::test_support::{Calls, Recorder};
use super::super::{Balance, ReplayBody, Retry, RetryLayer};
use super::{Hedge, HedgeLayer};
use crate::backoff::Backoff;
use crate::estimate::LatencyEstimator;
use crate::hedge::{HedgeDelay, HedgePolicy};
use crate::metrics::Event;
use crate::policy::{Limiter, RetryPolicy};

type Body = Full<Bytes>;

/// What the balancer's instances take: the hedge layer's replay of the retry layer's replay.
type Attempt = Request<ReplayBody<ReplayBody<Body>>>;

/// A mock instance of the shared `Calls` counter.
type Mock = tower::util::BoxCloneSyncService<Attempt, Response<()>, Infallible>;

fn get() -> Request<Body> {
    Request::get("http://catalog.test/items")
        .body(Body::default())
        .unwrap()
}

/// Two instances answering as `answer` says for the `n`th call anywhere: (status, milliseconds).
fn instances(answer: fn(u32) -> (u16, u64)) -> (Balance<Mock>, Calls) {
    let calls = Calls::default();
    let instances = (0..2)
        .map(|_| {
            let calls = calls.clone();
            Mock::new(tower::service_fn(move |_req: Attempt| {
                let (status, took) = answer(calls.next());
                async move {
                    tokio::time::sleep(Duration::from_millis(took)).await;
                    Ok::<_, Infallible>(Response::builder().status(status).body(()).unwrap())
                }
            }))
        })
        .collect();
    let balance = Balance::new(instances).seed(3);
    (balance, calls)
}

/// The proxy's stack for a hedged route, below its deadline layer.
type Stack = Retry<Hedge<Balance<Mock>, Recorder>, Recorder>;

/// Sends ten GETs, one after the other, through the proxy's stack for a hedged route over
/// instances answering as `answer` says: the retry layer over the hedge layer
/// (hedges after 50 ms within `max_extra`), one estimator for both. Each gets a 200. Returns
/// the hedge layer, for its budget.
async fn ten_requests(
    answer: fn(u32) -> (u16, u64),
    estimator: &Arc<LatencyEstimator>,
    max_extra: f64,
    recorder: &Recorder,
) -> (HedgeLayer<Recorder>, Calls) {
    let (balance, calls) = instances(answer);
    let policy = RetryPolicy::recommended()
        .with_limiter(Limiter::Unlimited)
        .with_backoff(Backoff::None)
        .with_per_try_timeout(Duration::from_secs(2));
    let retry = RetryLayer::new(policy)
        .seed(1)
        .observer(recorder.clone())
        .estimator(estimator.clone());
    let delay = HedgeDelay::Fixed(Duration::from_millis(50));
    let hedge = HedgeLayer::new(HedgePolicy::new(delay, max_extra).unwrap())
        .observer(recorder.clone())
        .estimator(estimator.clone());
    let svc: Stack = retry.layer(hedge.layer(balance));
    for _ in 0..10 {
        let response = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    (hedge, calls)
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

#[tokio::test(start_paused = true)]
async fn ten_requests_record_ten_latencies_hedged_or_not() {
    // The first call anywhere takes 1 s and is hedged; every other takes 10 ms.
    let answer = |n| (200, if n == 0 { 1000 } else { 10 });
    let estimator = Arc::new(LatencyEstimator::new(Duration::from_secs(60)).with_min_samples(1));
    let recorder = Recorder::default();
    let (_, calls) = ten_requests(answer, &estimator, 1.0, &recorder).await;
    assert_eq!(recorder.count(|e| *e == Event::HedgeWon), 1);
    assert_eq!(calls.get(), 11, "ten requests and one hedge");
    assert_eq!(estimator.count(now()), 10);
    // The hedged request counts once, as what its caller waited: the 50 ms delay and the
    // hedge's 10 ms, a lower bound of the first copy's latency.
    let longest = estimator.max(now()).unwrap();
    assert!(
        longest >= Duration::from_millis(60) && longest <= Duration::from_micros(60_600),
        "{longest:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_earn_no_hedge_budget() {
    // Every caller request fails once with a 503 and succeeds on its retry, all in 5 ms: no
    // hedge is sent, and each retry passes through the hedge layer as a request of its own.
    let answer = |n| (if n % 2 == 0 { 503 } else { 200 }, 5);
    let estimator = Arc::new(LatencyEstimator::new(Duration::from_secs(60)));
    let recorder = Recorder::default();
    let (hedge, calls) = ten_requests(answer, &estimator, 0.1, &recorder).await;
    assert_eq!(recorder.count(|e| matches!(e, Event::Retry(_))), 10);
    assert_eq!(calls.get(), 20);
    assert_eq!(recorder.count(|e| *e == Event::HedgeSent), 0);
    // Ten caller requests at 0.1 each: one hedge earned; the ten retries earned nothing.
    assert_eq!(hedge.policy().balance(now()), 1.0);
    // And twenty attempts answered, each recorded once.
    assert_eq!(estimator.count(now()), 20);
}
