//! The retry layer on paused time against mock services: the behaviours the policy promises.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;
use tower_layer::Layer;

use super::super::test_support::{Calls, Recorder};
use super::super::{Balance, ErrorKind, Instance, ReplayBody, TriedInstances};
use super::{Attempts, RetryLayer};
use crate::backoff::Backoff;
use crate::budget::RetryBudget;
use crate::deadline::BUDGET_HEADER;
use crate::metrics::Event;
use crate::policy::{Denied, Limiter, RetryPolicy};

mod counting;
mod expected;
mod once_body;
mod streamed_body;
mod tried_list;

type Body = Full<Bytes>;

fn request(method: Method) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri("http://api.test/items")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap()
}

fn status(code: u16) -> Response<()> {
    Response::builder().status(code).body(()).unwrap()
}

fn unlimited() -> RetryPolicy {
    RetryPolicy::recommended()
        .with_limiter(Limiter::Unlimited)
        .with_per_try_timeout(Duration::from_millis(100))
}

#[tokio::test(start_paused = true)]
async fn a_flaky_service_succeeds_through_one_retry() {
    let calls = Calls::default();
    let seen = calls.clone();
    let flaky = tower::service_fn(move |req: Request<ReplayBody<Body>>| {
        let n = seen.next();
        async move {
            // Every attempt carries the whole body, the retry included.
            use http_body_util::BodyExt;
            let body = req.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"payload");
            Ok::<_, Infallible>(status(if n == 0 { 503 } else { 200 }))
        }
    });
    let recorder = Recorder::default();
    let svc = RetryLayer::new(unlimited())
        .seed(1)
        .observer(recorder.clone())
        .layer(flaky);
    let response = svc.oneshot(request(Method::POST)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(Attempts::of(&response), 2);
    assert_eq!(calls.get(), 2);
    assert_eq!(recorder.count(|e| matches!(e, Event::Retry(_))), 1);
    assert_eq!(recorder.count(|e| *e == Event::Attempt), 2);
    assert_eq!(recorder.count(|e| *e == Event::Succeeded), 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_error_is_not_retried() {
    let calls = Calls::default();
    let seen = calls.clone();
    let not_found = tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
        seen.next();
        async { Ok::<_, Infallible>(status(404)) }
    });
    let svc = RetryLayer::new(unlimited().with_max_attempts(3)).layer(not_found);
    let response = svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(Attempts::of(&response), 1);
    assert_eq!(calls.get(), 1);
}

fn hanging(
    calls: Calls,
) -> impl tower::Service<
    Request<ReplayBody<Body>>,
    Response = Response<()>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<()>, Infallible>> + Send,
> + Clone {
    tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
        calls.next();
        async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, Infallible>(status(200))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_written_post_is_not_retried_after_a_timeout() {
    let calls = Calls::default();
    let svc = RetryLayer::new(unlimited()).layer(hanging(calls.clone()));
    let err = svc.oneshot(request(Method::POST)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.attempts(), 1);
    assert_eq!(
        calls.get(),
        1,
        "the POST may have been applied: never send it twice"
    );
}

#[tokio::test(start_paused = true)]
async fn a_post_with_an_idempotency_key_is_retried_and_with_an_empty_one_is_not() {
    for (key, sent) in [("8e03978e", 2), ("", 1), ("  ", 1), ("\"\"", 1)] {
        let calls = Calls::default();
        let svc = RetryLayer::new(unlimited()).layer(hanging(calls.clone()));
        let mut req = request(Method::POST);
        req.headers_mut()
            .insert("idempotency-key", http::HeaderValue::from_static(key));
        let err = svc.oneshot(req).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        // An empty key gives the server nothing to deduplicate on (a review: it let a POST
        // be sent twice).
        assert_eq!(calls.get(), sent, "key {key:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_get_is_retried_after_a_timeout() {
    let calls = Calls::default();
    let svc = RetryLayer::new(unlimited()).layer(hanging(calls.clone()));
    let err = svc.oneshot(request(Method::GET)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(calls.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_retried_after_a_refused_connection() {
    let calls = Calls::default();
    let seen = calls.clone();
    let refusing_once = tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
        let n = seen.next();
        async move {
            if n == 0 {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            } else {
                Ok(status(201))
            }
        }
    });
    let svc = RetryLayer::new(unlimited()).layer(refusing_once);
    let response = svc.oneshot(request(Method::POST)).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(calls.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_lands_on_a_different_instance() {
    for seed in 0..20 {
        let hits: Vec<Calls> = (0..3).map(|_| Calls::default()).collect();
        // Whichever instance the first attempt reaches is broken: it answers 503 every time.
        let broken = Arc::new(std::sync::OnceLock::<usize>::new());
        let instances: Vec<_> = hits
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, calls)| {
                let broken = broken.clone();
                tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
                    calls.next();
                    let code = if *broken.get_or_init(|| i) == i {
                        503
                    } else {
                        200
                    };
                    async move { Ok::<_, Infallible>(status(code)) }
                })
            })
            .collect();
        let balance = Balance::new(instances).seed(seed);
        let svc = RetryLayer::new(unlimited()).seed(seed).layer(balance);
        // The caller's list, to read where the attempts went: the balancer records its choices
        // there, and marks no response with an `Instance`.
        let tried = TriedInstances::default();
        let mut req = request(Method::GET);
        req.extensions_mut().insert(tried.clone());
        let response = svc.oneshot(req).await.unwrap();
        // The broken instance failed; the retry went to another one, which succeeded.
        assert_eq!(response.status(), StatusCode::OK, "seed {seed}");
        let counts: Vec<u32> = hits.iter().map(Calls::get).collect();
        assert_eq!(counts.iter().sum::<u32>(), 2, "seed {seed}");
        assert!(counts.iter().all(|&c| c <= 1), "seed {seed}: {counts:?}");
        let went = tried.to_vec();
        assert_eq!(went, vec![*broken.get().unwrap(), went[1]], "seed {seed}");
        assert_eq!(counts[went[1]], 1);
        assert!(response.extensions().get::<Instance>().is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn with_the_budget_spent_no_retry_is_sent() {
    let budget = Arc::new(RetryBudget::new(Duration::from_secs(10), 0, 0.0).unwrap());
    let policy = unlimited().with_limiter(Limiter::Budget(budget));
    let calls = Calls::default();
    let seen = calls.clone();
    let failing = tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
        seen.next();
        async { Ok::<_, Infallible>(status(503)) }
    });
    let recorder = Recorder::default();
    let svc = RetryLayer::new(policy)
        .observer(recorder.clone())
        .layer(failing);
    let response = svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.get(), 1);
    assert_eq!(
        recorder.count(|e| *e == Event::RetryDenied(Denied::Budget)),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_300ms_deadline_stops_three_attempts_after_the_first() {
    let calls = Calls::default();
    let seen = calls.clone();
    let slow_failure = tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
        seen.next();
        async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok::<_, Infallible>(status(503))
        }
    });
    let policy = RetryPolicy::recommended()
        .with_limiter(Limiter::Unlimited)
        .with_max_attempts(3)
        .with_backoff(Backoff::None)
        .with_expected_latency(Duration::from_millis(250));
    let recorder = Recorder::default();
    let svc = RetryLayer::new(policy)
        .observer(recorder.clone())
        .layer(slow_failure);
    let mut req = request(Method::GET);
    req.headers_mut()
        .insert(BUDGET_HEADER, "300".parse().unwrap());
    let start = tokio::time::Instant::now();
    let response = svc.oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.get(), 1);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(250),
        "gave up at once, in time to report"
    );
    assert_eq!(recorder.count(|e| *e == Event::DeadlineGiveUp), 1);
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_when_the_budget_cannot_cover_it() {
    let calls = Calls::default();
    let svc = RetryLayer::new(unlimited().with_expected_latency(Duration::from_millis(250)))
        .layer(hanging(calls.clone()));
    let mut req = request(Method::GET);
    req.headers_mut()
        .insert(BUDGET_HEADER, "100".parse().unwrap());
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Deadline);
    assert_eq!(err.attempts(), 0);
    assert_eq!(calls.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_carries_its_decremented_budget() {
    let budgets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = budgets.clone();
    let calls = Calls::default();
    let svc = tower::service_fn(move |req: Request<ReplayBody<Body>>| {
        let n = calls.next();
        seen.lock()
            .unwrap()
            .push(req.headers()[BUDGET_HEADER].to_str().unwrap().to_string());
        async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            Ok::<_, Infallible>(status(if n == 0 { 502 } else { 200 }))
        }
    });
    let policy = unlimited().with_backoff(Backoff::Constant(Duration::from_millis(10)));
    let svc = RetryLayer::new(policy).layer(svc);
    let mut req = request(Method::GET);
    req.headers_mut()
        .insert(BUDGET_HEADER, "1000".parse().unwrap());
    svc.oneshot(req).await.unwrap();
    // The per-try timeout (100 ms) is below what is left of the budget, so each attempt gets it.
    assert_eq!(*budgets.lock().unwrap(), vec!["100", "100"]);
}

#[tokio::test(start_paused = true)]
async fn backoff_sleeps_between_attempts() {
    let calls = Calls::default();
    let seen = calls.clone();
    let failing = tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
        seen.next();
        async { Ok::<_, Infallible>(status(503)) }
    });
    let policy = unlimited()
        .with_max_attempts(3)
        .with_backoff(Backoff::Exponential {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        });
    let svc = RetryLayer::new(policy).layer(failing);
    let start = tokio::time::Instant::now();
    let response = svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.get(), 3);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(300),
        "100 ms then 200 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_a_timeout_goes_to_another_instance() {
    for seed in 0..20 {
        let hits: Vec<Calls> = (0..2).map(|_| Calls::default()).collect();
        // A first request answers wherever it lands (the layer learns a balancer is below);
        // then whichever instance the next request's first attempt reaches hangs.
        let hanging = Arc::new(std::sync::OnceLock::<usize>::new());
        let total = Calls::default();
        let instances: Vec<_> = hits
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, calls)| {
                let (hanging, total) = (hanging.clone(), total.clone());
                tower::service_fn(move |_req: Request<ReplayBody<Body>>| {
                    let warm_up = total.next() == 0;
                    if !warm_up {
                        calls.next();
                    }
                    let hangs = !warm_up && *hanging.get_or_init(|| i) == i;
                    async move {
                        if hangs {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                        Ok::<_, Infallible>(status(200))
                    }
                })
            })
            .collect();
        let svc = RetryLayer::new(unlimited())
            .seed(seed)
            .layer(Balance::new(instances).seed(seed));
        svc.clone().oneshot(request(Method::GET)).await.unwrap();
        let response = svc.oneshot(request(Method::GET)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "seed {seed}");
        let counts: Vec<u32> = hits.iter().map(Calls::get).collect();
        assert_eq!(
            counts,
            vec![1, 1],
            "seed {seed}: the retry avoided the hanging instance"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_per_try_timeout_of_duration_max_means_none() {
    let ok = tower::service_fn(|_req: Request<ReplayBody<Body>>| async {
        Ok::<_, Infallible>(status(200))
    });
    let svc = RetryLayer::new(unlimited().with_per_try_timeout(Duration::MAX)).layer(ok);
    let response = svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn without_propagation_a_stale_incoming_budget_is_not_forwarded() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let svc = tower::service_fn(move |req: Request<ReplayBody<Body>>| {
        *record.lock().unwrap() = Some(req.headers().contains_key(BUDGET_HEADER));
        async { Ok::<_, Infallible>(status(200)) }
    });
    let mut policy = unlimited();
    policy.propagate_deadline = false;
    let svc = RetryLayer::new(policy).layer(svc);
    let mut req = request(Method::GET);
    req.headers_mut()
        .insert(BUDGET_HEADER, "900".parse().unwrap());
    svc.oneshot(req).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(false));
}

/// A body that never ends: a client that stalls mid-upload.
struct Stalled;

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Pending
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_is_sent_at_once_and_bounded_by_the_deadline() {
    let calls = Calls::default();
    let seen = calls.clone();
    // The upstream reads the body, which never comes.
    let svc = tower::service_fn(move |req: Request<ReplayBody<Stalled>>| {
        seen.next();
        async move {
            let _ = http_body_util::BodyExt::collect(req.into_body()).await;
            Ok::<_, Infallible>(status(200))
        }
    });
    let recorder = Recorder::default();
    let svc = RetryLayer::new(unlimited())
        .observer(recorder.clone())
        .layer(svc);
    let req = Request::post("/upload")
        .header(BUDGET_HEADER, "100")
        .body(Stalled)
        .unwrap();
    let start = tokio::time::Instant::now();
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(95),
        "the reserve is kept to report"
    );
    assert_eq!(calls.get(), 1, "sent at once, not held until the body came");
    assert_eq!(recorder.count(|e| matches!(e, Event::Failed(_))), 1);
}

#[tokio::test(start_paused = true)]
async fn a_grpc_stream_is_not_waited_for_and_stays_replayable() {
    let svc = tower::service_fn(|req: Request<ReplayBody<Stalled>>| {
        assert!(
            req.body().is_replayable(),
            "within the limit so far: a retry could replay it and go on"
        );
        async { Ok::<_, Infallible>(status(200)) }
    });
    let svc = RetryLayer::new(unlimited()).layer(svc);
    let req = Request::post("/chat.Chat/Talk")
        .header("content-type", "application/grpc")
        .body(Stalled)
        .unwrap();
    let start = tokio::time::Instant::now();
    let response = svc.oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::ZERO, "no grace, no wait");
}

/// The budget written downstream replaces stale deadline headers that came with the request
/// (the prologue's reading of the headers decides whether to look for them), in the retry as
/// in the first attempt, and a request that came without any gets the budget alone.
#[tokio::test(start_paused = true)]
async fn propagation_removes_stale_deadline_headers_and_only_them() {
    use crate::deadline::{ENVOY_EXPECTED_TIMEOUT_HEADER, GRPC_TIMEOUT_HEADER};
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let svc = tower::service_fn(move |req: Request<ReplayBody<Body>>| {
        let mut names: Vec<String> = req.headers().keys().map(|k| k.to_string()).collect();
        names.sort();
        let mut seen = record.lock().unwrap();
        seen.push(names);
        // The first attempt fails, so that the stale request is sent again.
        let code = if seen.len() == 1 { 503 } else { 200 };
        async move { Ok::<_, Infallible>(status(code)) }
    });
    let svc = RetryLayer::new(unlimited()).layer(svc);
    let mut stale = request(Method::GET);
    stale
        .headers_mut()
        .insert(ENVOY_EXPECTED_TIMEOUT_HEADER, "15000".parse().unwrap());
    stale
        .headers_mut()
        .insert(GRPC_TIMEOUT_HEADER, "20S".parse().unwrap());
    stale
        .headers_mut()
        .insert("accept", "text/plain".parse().unwrap());
    svc.clone().oneshot(stale).await.unwrap();
    let mut plain = request(Method::GET);
    plain
        .headers_mut()
        .insert("accept", "text/plain".parse().unwrap());
    svc.oneshot(plain).await.unwrap();
    let expected = vec!["accept".to_string(), BUDGET_HEADER.to_string()];
    assert_eq!(*seen.lock().unwrap(), vec![expected.clone(); 3]);
}

/// Without a deadline (and no adaptive timeout) an attempt gets the per-try timeout whole: the
/// prologue's shortcut for that case answers as the policy does, in the budget written and in
/// the time the attempt is given.
#[tokio::test(start_paused = true)]
async fn without_a_deadline_an_attempt_gets_the_per_try_timeout() {
    let calls = Calls::default();
    let svc = RetryLayer::new(unlimited()).layer(hanging(calls.clone()));
    let start = tokio::time::Instant::now();
    let err = svc.oneshot(request(Method::POST)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    let budgets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = budgets.clone();
    let svc = tower::service_fn(move |req: Request<ReplayBody<Body>>| {
        record
            .lock()
            .unwrap()
            .push(req.headers()[BUDGET_HEADER].to_str().unwrap().to_string());
        async { Ok::<_, Infallible>(status(200)) }
    });
    RetryLayer::new(unlimited())
        .layer(svc)
        .oneshot(request(Method::GET))
        .await
        .unwrap();
    assert_eq!(*budgets.lock().unwrap(), vec!["100".to_string()]);
}

/// An attempt that spends the task's whole coop budget on every poll (a fast upload, say) and
/// so never answers: its per-try timeout still fires, as under tokio's `Timeout`, because the
/// timer is then polled unconstrained. The attempt gives up after many polls, so that a timer
/// starved of budget fails the test instead of hanging it.
#[tokio::test(start_paused = true)]
async fn a_first_attempt_that_spends_the_coop_budget_still_times_out() {
    struct Spending(u32);
    impl std::future::Future for Spending {
        type Output = Result<Response<()>, Infallible>;
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Self::Output> {
            self.0 += 1;
            assert!(self.0 < 100_000, "the per-try timeout never fired");
            // Spends the budget until tokio says it is gone (and wakes the task to go on).
            while let std::task::Poll::Ready(restore) = tokio::task::coop::poll_proceed(cx) {
                restore.made_progress();
            }
            std::task::Poll::Pending
        }
    }
    let svc = tower::service_fn(|_req: Request<ReplayBody<Body>>| Spending(0));
    let svc = RetryLayer::new(unlimited().with_max_attempts(1)).layer(svc);
    tokio::spawn(async {
        loop {
            tokio::time::advance(Duration::from_millis(10)).await;
            tokio::task::yield_now().await;
        }
    });
    let err = svc.oneshot(request(Method::GET)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}
