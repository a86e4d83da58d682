//! The expected latency comes from the estimator: a request with less budget than an attempt
//! takes is answered at once, and one with enough is sent, however long the slowest sample.

use super::*;
use crate::estimate::LatencyEstimator;

/// A service whose calls take what `took(n)` says for the n-th call.
fn taking(
    calls: Calls,
    took: fn(u32) -> u64,
) -> impl tower::Service<
    Request<ReplayBody<Body>>,
    Response = Response<()>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
        let n = calls.next();
        async move {
            tokio::time::sleep(Duration::from_millis(took(n))).await;
            Ok::<_, Infallible>(status(200))
        }
    })
}

fn with_budget(ms: u64) -> Request<Body> {
    let mut req = request(Method::GET);
    req.headers_mut()
        .insert(BUDGET_HEADER, ms.to_string().parse().unwrap());
    req
}

#[tokio::test(start_paused = true)]
async fn a_budget_below_the_measured_latency_is_answered_at_once_and_not_sent() {
    let calls = Calls::default();
    let estimator = Arc::new(LatencyEstimator::new(Duration::from_secs(60)));
    let policy = unlimited().with_per_try_timeout(Duration::from_secs(1));
    let svc = RetryLayer::new(policy)
        .estimator(estimator.clone())
        .layer(taking(calls.clone(), |_| 100));
    for _ in 0..100 {
        svc.clone().oneshot(request(Method::GET)).await.unwrap();
    }
    let start = tokio::time::Instant::now();
    let err = svc.clone().oneshot(with_budget(30)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Deadline);
    assert_eq!(err.attempts(), 0);
    assert_eq!(start.elapsed(), Duration::ZERO, "at once");
    assert_eq!(calls.get(), 100, "not sent");
    // A budget the p50 fits in is sent.
    svc.oneshot(with_budget(150)).await.unwrap();
    assert_eq!(calls.get(), 101);
}

#[tokio::test(start_paused = true)]
async fn a_slow_outlier_above_the_budget_does_not_refuse_a_request_the_p50_fits() {
    let calls = Calls::default();
    let estimator = Arc::new(LatencyEstimator::new(Duration::from_secs(60)));
    let policy = unlimited().with_per_try_timeout(Duration::from_secs(2));
    // One call of 1 s among a hundred of 10 ms: the longest measured is above the budget below,
    // the p50 far under it.
    let svc = RetryLayer::new(policy)
        .estimator(estimator.clone())
        .layer(taking(calls.clone(), |n| if n == 0 { 1000 } else { 10 }));
    for _ in 0..100 {
        svc.clone().oneshot(request(Method::GET)).await.unwrap();
    }
    let now = tokio::time::Instant::now().into_std();
    assert!(estimator.max(now).unwrap() > Duration::from_millis(500));
    svc.oneshot(with_budget(500)).await.unwrap();
    assert_eq!(calls.get(), 101);
}
