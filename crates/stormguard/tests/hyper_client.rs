//! The layers over hyper-util's real client, against servers on 127.0.0.1.
//!
//! What only real sockets show: hyper-util's connect errors are classified as "not sent" (so a
//! POST is retried after a refused connection), and a real timeout after the request was written
//! is not retried for a POST.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use stormguard::layer::{
    Attempts, Balance, ErrorKind, Instance, ReplayBody, RetryLayer, SetAuthority, TriedInstances,
};
use stormguard::policy::{Limiter, RetryPolicy};
use tower::{Layer, ServiceExt};

mod support;
use support::{refusing_address, server};

type Body = ReplayBody<Full<Bytes>>;

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn post(body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::post("/orders")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

fn policy() -> RetryPolicy {
    RetryPolicy::recommended()
        .with_limiter(Limiter::Unlimited)
        .with_per_try_timeout(Duration::from_millis(300))
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_the_other_instance_even_for_a_post() {
    let refusing = refusing_address().await;
    let (healthy, hits) = server(|_| (201, Duration::ZERO)).await;
    let instances = vec![
        SetAuthority::new(client(), refusing.to_string().parse().unwrap()),
        SetAuthority::new(client(), healthy.to_string().parse().unwrap()),
    ];
    for seed in 0..10 {
        let service = RetryLayer::new(policy())
            .seed(seed)
            .layer(Balance::new(instances.clone()).seed(seed));
        // The caller's list says where the attempts went: the balancer records its choices
        // there (and marks no response with an `Instance`).
        let tried = TriedInstances::default();
        let mut request = post(b"order-1");
        request.extensions_mut().insert(tried.clone());
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            tried.to_vec().last(),
            Some(&1),
            "answered by the healthy one"
        );
        assert!(response.extensions().get::<Instance>().is_none());
        let attempts = Attempts::of(&response);
        assert!(attempts <= 2, "at most one refused attempt first");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"order-1", "the replayed body arrived whole");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        10,
        "each order reached the server once"
    );
}

#[tokio::test]
async fn a_post_that_timed_out_after_it_was_sent_is_not_sent_again() {
    let (slow, hits) = server(|_| (200, Duration::from_secs(2))).await;
    let service = RetryLayer::new(policy()).layer(SetAuthority::new(
        client(),
        slow.to_string().parse().unwrap(),
    ));
    let error = service.oneshot(post(b"pay")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(error.attempts(), 1);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_503_is_retried_and_the_second_attempt_succeeds() {
    let (flaky, hits) = server(|n| (if n == 0 { 503 } else { 200 }, Duration::ZERO)).await;
    let service = RetryLayer::new(policy()).seed(1).layer(SetAuthority::new(
        client(),
        flaky.to_string().parse().unwrap(),
    ));
    let request = Request::get("/items")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(Attempts::of(&response), 2);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn all_instances_refusing_ends_with_connect_refused() {
    let a = refusing_address().await;
    let b = refusing_address().await;
    let instances = vec![
        SetAuthority::new(client(), a.to_string().parse().unwrap()),
        SetAuthority::new(client(), b.to_string().parse().unwrap()),
    ];
    let service = RetryLayer::new(policy().with_max_attempts(3)).layer(Balance::new(instances));
    let error = service.oneshot(post(b"x")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectRefused);
    assert_eq!(error.attempts(), 3);
    assert_eq!(error.kind().reason(), "connect-refused");
}
