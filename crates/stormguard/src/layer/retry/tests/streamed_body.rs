//! A body streamed to the first attempt as the client sends it: a retry replays the copy and
//! goes on from the client; past the limit, or with one attempt allowed, nothing is kept.

use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::*;
use crate::layer::test_support::{trickle, Trickle};
use crate::layer::BoxError;

type Attempt = Request<ReplayBody<Trickle>>;

/// What each attempt's upstream did: when it was called, and the body it read.
type Seen = mpsc::UnboundedSender<(Duration, Result<Bytes, String>)>;

/// An upstream that reads `read` data frames of the body (all when `None`), then answers
/// `code`; every later call reads the whole body and answers 200.
fn upstream(
    read: Option<usize>,
    code: u16,
    seen: Seen,
) -> impl tower::Service<Attempt, Response = Response<()>, Error = BoxError, Future = impl Send> + Clone
{
    let calls = Calls::default();
    let start = tokio::time::Instant::now();
    tower::service_fn(move |req: Attempt| {
        let n = calls.next();
        let seen = seen.clone();
        async move {
            let at = start.elapsed();
            let mut body = req.into_body();
            if n == 0 {
                let mut got = Vec::new();
                while read.is_none_or(|read| got.len() < read) {
                    match body.frame().await {
                        Some(Ok(frame)) => got.extend_from_slice(&frame.into_data().unwrap()),
                        Some(Err(e)) => return Err(e),
                        None => break,
                    }
                }
                seen.send((at, Ok(Bytes::from(got)))).unwrap();
                return Ok(status(code));
            }
            let got = body.collect().await.map(|c| c.to_bytes());
            seen.send((at, got.map_err(|e| e.to_string()))).unwrap();
            Ok(status(200))
        }
    })
}

fn post(body: Trickle) -> Request<Trickle> {
    Request::put("http://api.test/items").body(body).unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_is_sent_before_the_body_is_there_and_a_retry_replays_then_continues() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    // The first attempt reads one chunk (of three, 10 ms apart) and fails with a 503.
    let svc =
        RetryLayer::new(unlimited().with_backoff(Backoff::None)).layer(upstream(Some(1), 503, tx));
    let response = svc
        .oneshot(post(trickle(&["ab", "cd", "ef"], ms(10))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (at, first) = rx.recv().await.unwrap();
    assert_eq!(at, Duration::ZERO, "sent at once, not after the body");
    assert_eq!(first.unwrap(), "ab");
    // The retry leaves at 10 ms: the copy ("ab") at once, the rest as the client sends it.
    let (at, second) = rx.recv().await.unwrap();
    assert_eq!(at, ms(10));
    assert_eq!(second.unwrap(), "abcdef");
}

#[tokio::test(start_paused = true)]
async fn a_body_past_the_limit_is_sent_once_and_its_failure_answered() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let recorder = Recorder::default();
    let svc = RetryLayer::new(unlimited().with_backoff(Backoff::None))
        .body_limit(3)
        .observer(recorder.clone())
        .layer(upstream(None, 503, tx));
    let response = svc
        .oneshot(post(trickle(&["ab", "cd", "ef"], ms(10))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rx.recv().await.unwrap().1.unwrap(), "abcdef");
    assert!(rx.try_recv().is_err(), "one attempt: the copy was dropped");
    assert_eq!(recorder.count(|e| matches!(e, Event::Retry(_))), 0);
}

#[tokio::test(start_paused = true)]
async fn with_one_attempt_allowed_the_body_passes_straight_through() {
    let svc = RetryLayer::new(unlimited().with_max_attempts(1)).layer(tower::service_fn(
        |req: Attempt| async move {
            assert!(!req.body().is_replayable(), "nothing copied");
            let body = req.into_body().collect().await?.to_bytes();
            assert_eq!(body, "abcd");
            Ok::<_, BoxError>(status(200))
        },
    ));
    let response = svc
        .oneshot(post(trickle(&["ab", "cd"], ms(10))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
