//! The retry layer over reqwest, through a thin adapter: reqwest's `Client` is a tower service
//! over its own request type, so the adapter converts the request and marks connect errors as
//! "not sent" (reqwest's `is_connect`), which is what makes a POST safe to retry after a refused
//! connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use stormguard::layer::{
    Attempts, Balance, BoxError, ErrorKind, NotSent, ReplayBody, RetryLayer, SetAuthority,
};
use stormguard::policy::{Limiter, RetryPolicy};
use tower::{Layer, Service, ServiceExt};

mod support;
use support::{body, refusing_address, server};

/// reqwest as a tower service over `http::Request`, for the retry layer.
#[derive(Clone)]
struct Reqwest(reqwest::Client);

impl<B> Service<Request<ReplayBody<B>>> for Reqwest
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<reqwest::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReplayBody<B>>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move {
            let req = reqwest::Request::try_from(req.map(reqwest::Body::wrap))?;
            match client.execute(req).await {
                Ok(response) => Ok(Response::from(response)),
                Err(e) if e.is_connect() => Err(Box::new(NotSent::new(e)) as BoxError),
                Err(e) => Err(e.into()),
            }
        })
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy::recommended()
        .with_limiter(Limiter::Unlimited)
        .with_per_try_timeout(Duration::from_millis(500))
}

#[tokio::test]
async fn a_post_is_retried_on_another_instance_after_a_refused_connection() {
    let refusing = refusing_address().await;
    let (healthy, hits) = server(|_| (201, Duration::ZERO)).await;
    let client = Reqwest(reqwest::Client::new());
    let instances = vec![
        SetAuthority::new(client.clone(), refusing.to_string().parse().unwrap()),
        SetAuthority::new(client, healthy.to_string().parse().unwrap()),
    ];
    for seed in 0..6 {
        let service = RetryLayer::new(policy())
            .seed(seed)
            .layer(Balance::new(instances.clone()).seed(seed));
        let request = Request::post("/orders").body(body(b"order")).unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(Attempts::of(&response) <= 2);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        6,
        "each order reached the server once"
    );
}

#[tokio::test]
async fn a_503_is_retried_through_reqwest() {
    let (flaky, hits) = server(|n| (if n == 0 { 503 } else { 200 }, Duration::ZERO)).await;
    let service = RetryLayer::new(policy()).seed(2).layer(SetAuthority::new(
        Reqwest(reqwest::Client::new()),
        flaky.to_string().parse().unwrap(),
    ));
    let request = Request::get("/items").body(body(b"")).unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(Attempts::of(&response), 2);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_post_that_timed_out_is_not_sent_again_through_reqwest() {
    let (slow, hits) = server(|_| (200, Duration::from_secs(2))).await;
    let service = RetryLayer::new(policy()).layer(SetAuthority::new(
        Reqwest(reqwest::Client::new()),
        slow.to_string().parse().unwrap(),
    ));
    let request = Request::post("/pay").body(body(b"42")).unwrap();
    let error = service.oneshot(request).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
