//! [`DeadlineLayer::retry_below`] on paused time: the deadline layer leaves its timer and its
//! budget headers to the retry layer right below, and the request ends as it did with them.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::Full;
use tower::ServiceExt;
use tower_layer::Layer;

use super::*;
use crate::backoff::Backoff;
use crate::deadline::{BUDGET_HEADER, ENVOY_EXPECTED_TIMEOUT_HEADER, GRPC_TIMEOUT_HEADER};
use crate::layer::{ReplayBody, RetryLayer};
use crate::policy::{Limiter, RetryPolicy};

type Body = Full<Bytes>;

/// The request heads an upstream received, in order.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// An upstream that never answers in time, recording the head of every attempt.
fn hanging(
    seen: Seen,
) -> impl Service<
    Request<ReplayBody<Body>>,
    Response = Response<()>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response<()>, std::convert::Infallible>> + Send,
> + Clone {
    tower::service_fn(move |req: Request<ReplayBody<Body>>| {
        seen.lock().unwrap().push(req.headers().clone());
        async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(Response::new(()))
        }
    })
}

/// Five attempts of at most 100 ms each, no backoff, and no reserve of its own: the proxy's
/// retry layer, whose deadline layer above already kept the reserve back.
fn retry() -> RetryLayer {
    let mut policy = RetryPolicy::recommended()
        .with_limiter(Limiter::Unlimited)
        .with_max_attempts(5)
        .with_backoff(Backoff::None)
        .with_per_try_timeout(Duration::from_millis(100));
    policy.deadline.reserve = Duration::ZERO;
    RetryLayer::new(policy).seed(1)
}

/// A GET that arrives with a stale budget header of the kind the retry layer does not write.
fn get() -> Request<Body> {
    Request::get("http://api.test/items")
        .header(ENVOY_EXPECTED_TIMEOUT_HEADER, "1000")
        .body(Body::default())
        .unwrap()
}

/// What a request through `deadline` over [`retry`] over a hanging upstream came to: the error,
/// the time it took, and the budget headers of each attempt.
async fn through(deadline: DeadlineLayer) -> (Error, Duration, Vec<Vec<(String, String)>>) {
    let seen = Seen::default();
    let svc = deadline.layer(retry().layer(hanging(seen.clone())));
    let start = tokio::time::Instant::now();
    let err = svc.oneshot(get()).await.unwrap_err();
    let err = *err.downcast::<Error>().unwrap();
    let budgets = seen
        .lock()
        .unwrap()
        .iter()
        .map(|headers| {
            headers
                .iter()
                .filter(|(name, _)| {
                    [
                        BUDGET_HEADER,
                        GRPC_TIMEOUT_HEADER,
                        ENVOY_EXPECTED_TIMEOUT_HEADER,
                    ]
                    .contains(&name.as_str())
                })
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
                .collect()
        })
        .collect();
    (err, start.elapsed(), budgets)
}

fn budget(ms: &str) -> Vec<(String, String)> {
    vec![(BUDGET_HEADER.to_string(), ms.to_string())]
}

#[tokio::test(start_paused = true)]
async fn with_retry_below_the_deadline_ends_the_request_through_the_retry_layer() {
    let layer = DeadlineLayer::new(Duration::from_millis(300)).retry_below();
    let (err, took, budgets) = through(layer).await;
    // 300 ms less the 5 ms reserve: attempts at 0, 100 and 200 ms, the last cut to 95 ms.
    assert_eq!(err.kind(), ErrorKind::Deadline);
    assert_eq!(err.attempts(), 3);
    assert_eq!(took, Duration::from_millis(295));
    // One budget header per attempt, the retry layer's, decremented; the stale one is gone.
    assert_eq!(budgets, vec![budget("100"), budget("100"), budget("95")]);
}

#[tokio::test(start_paused = true)]
async fn the_same_stack_ends_alike_without_retry_below() {
    // The default: this layer's own timer and budget header, which the retry layer's replace.
    let timed = through(DeadlineLayer::new(Duration::from_millis(300))).await;
    let untimed = through(DeadlineLayer::new(Duration::from_millis(300)).retry_below()).await;
    assert_eq!(timed.0.kind(), untimed.0.kind());
    assert_eq!(timed.0.attempts(), untimed.0.attempts());
    assert_eq!(timed.1, untimed.1);
    assert_eq!(timed.2, untimed.2);
}

#[tokio::test(start_paused = true)]
async fn retry_below_sets_no_timer_and_writes_no_budget_header() {
    // With nothing below to keep the deadline, nothing does: what the option relies on.
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let slow = tower::service_fn(move |req: Request<()>| {
        *record.lock().unwrap() = Some((
            req.headers().contains_key(BUDGET_HEADER),
            req.extensions().get::<Deadline>().copied(),
        ));
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, std::convert::Infallible>(Response::new(()))
        }
    });
    let mut svc = DeadlineLayer::new(Duration::from_millis(300))
        .retry_below()
        .layer(slow);
    let start = clock::now();
    svc.call(Request::new(())).await.unwrap();
    let (header, deadline) = seen.lock().unwrap().take().unwrap();
    assert!(!header, "the retry layer below writes the budget");
    assert_eq!(
        deadline,
        Some(Deadline::after(start, Duration::from_millis(295))),
        "handed down, less the reserve"
    );
}

#[tokio::test(start_paused = true)]
async fn with_retry_below_a_spent_budget_is_answered_at_once() {
    let seen = Seen::default();
    let svc = DeadlineLayer::new(Duration::from_secs(2))
        .retry_below()
        .layer(retry().layer(hanging(seen.clone())));
    let mut req = get();
    req.headers_mut()
        .insert(BUDGET_HEADER, "3".parse().unwrap());
    let start = tokio::time::Instant::now();
    let err = svc.oneshot(req).await.unwrap_err();
    let err = err.downcast::<Error>().unwrap();
    assert_eq!(err.kind(), ErrorKind::Deadline);
    assert_eq!(err.attempts(), 0);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn with_retry_below_and_no_propagation_no_budget_reaches_the_upstream() {
    let seen = Seen::default();
    let mut policy = retry().policy().clone();
    policy.propagate_deadline = false;
    let svc = DeadlineLayer::new(Duration::from_millis(300))
        .retry_below()
        .propagate(false)
        .layer(RetryLayer::new(policy).layer(hanging(seen.clone())));
    let mut req = get();
    req.headers_mut()
        .insert(BUDGET_HEADER, "250".parse().unwrap());
    let err = svc.oneshot(req).await.unwrap_err();
    let err = err.downcast::<Error>().unwrap();
    // The incoming 250 ms, less the reserve: attempts at 0, 100 and 200 ms, the last cut short.
    assert_eq!(err.kind(), ErrorKind::Deadline);
    assert_eq!(err.attempts(), 3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for headers in seen.iter() {
        assert!(
            !headers.contains_key(BUDGET_HEADER)
                && !headers.contains_key(ENVOY_EXPECTED_TIMEOUT_HEADER),
            "{headers:?}"
        );
    }
}
