//! The hedge layer and a body still arriving: a hedge is sent only with the whole body, its
//! delay counted from the body's end, and never for a body past the limit.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tower::ServiceExt;
use tower_layer::Layer;

use super::super::test_support::{trickle, Calls, Recorder, Trickle};
use super::super::{BoxError, ReplayBody};
use super::HedgeLayer;
use crate::hedge::{HedgeDelay, HedgePolicy};
use crate::metrics::Event;

type Attempt = Request<ReplayBody<Trickle>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An upstream whose first call takes 1 s (reading the body first if `first_reads`), and
/// whose later calls answer at once; each reports when it was called and what body it read.
fn upstream(
    first_reads: bool,
    seen: mpsc::UnboundedSender<(u32, Duration, Bytes)>,
) -> impl tower::Service<Attempt, Response = Response<()>, Error = BoxError, Future = impl Send> + Clone
{
    let calls = Calls::default();
    let start = tokio::time::Instant::now();
    tower::service_fn(move |req: Attempt| {
        let n = calls.next();
        let seen = seen.clone();
        async move {
            let at = start.elapsed();
            if n == 0 && !first_reads {
                tokio::time::sleep(ms(1000)).await;
                return Ok(Response::new(()));
            }
            let body = req.into_body().collect().await?.to_bytes();
            seen.send((n, at, body)).unwrap();
            if n == 0 {
                tokio::time::sleep(ms(1000)).await;
            }
            Ok(Response::new(()))
        }
    })
}

fn hedge_after_50ms(recorder: &Recorder) -> HedgeLayer<Recorder> {
    let policy = HedgePolicy::new(HedgeDelay::Fixed(ms(50)), 1.0).unwrap();
    HedgeLayer::new(policy).observer(recorder.clone())
}

fn put(body: Trickle) -> Request<Trickle> {
    Request::put("http://catalog.test/items/1")
        .body(body)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_hedge_delay_runs_from_the_end_of_the_body() {
    for first_reads in [true, false] {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let recorder = Recorder::default();
        let svc = hedge_after_50ms(&recorder).layer(upstream(first_reads, tx));
        let start = tokio::time::Instant::now();
        // Three chunks 10 ms apart: the body is whole at 30 ms.
        let response = svc.oneshot(put(trickle(&["ab", "cd", "ef"], ms(10))));
        let response = response.await.unwrap();
        assert_eq!(Response::status(&response), 200);
        assert_eq!(start.elapsed(), ms(80), "first reads: {first_reads}");
        assert_eq!(recorder.count(|e| matches!(e, Event::HedgeSent)), 1);
        let mut bodies = Vec::new();
        while let Ok((n, at, body)) = rx.try_recv() {
            bodies.push((n, at, body));
        }
        let hedge = bodies
            .iter()
            .find(|(n, ..)| *n == 1)
            .expect("the hedge read");
        assert_eq!((hedge.1, &hedge.2[..]), (ms(80), &b"abcdef"[..]));
        if first_reads {
            // The original read the whole body too, though the hedge layer read ahead of it.
            let original = bodies.iter().find(|(n, ..)| *n == 0).unwrap();
            assert_eq!(
                (original.1, &original.2[..]),
                (Duration::ZERO, &b"abcdef"[..])
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_past_the_limit_is_sent_once_and_not_hedged() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let recorder = Recorder::default();
    let svc = hedge_after_50ms(&recorder)
        .body_limit(3)
        .layer(upstream(true, tx));
    let start = tokio::time::Instant::now();
    svc.oneshot(put(trickle(&["ab", "cd", "ef"], ms(10))))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), ms(1030), "the original alone");
    assert_eq!(recorder.count(|e| matches!(e, Event::HedgeSent)), 0);
    let (n, _, body) = rx.try_recv().unwrap();
    assert_eq!(
        (n, &body[..]),
        (0, &b"abcdef"[..]),
        "whole, though read ahead"
    );
    assert!(rx.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn an_original_that_answers_while_the_body_arrives_is_not_hedged() {
    let recorder = Recorder::default();
    let svc = hedge_after_50ms(&recorder).layer(tower::service_fn(|_req: Attempt| async {
        tokio::time::sleep(ms(20)).await;
        Ok::<_, BoxError>(Response::new(()))
    }));
    let start = tokio::time::Instant::now();
    svc.oneshot(put(trickle(&["x"; 10], ms(10)))).await.unwrap();
    assert_eq!(start.elapsed(), ms(20));
    assert_eq!(recorder.count(|e| matches!(e, Event::HedgeSent)), 0);
}
