//! The variants compared on the no-failure path, shared by the criterion bench and the
//! instruction-count harness.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use stormguard::layer::RetryLayer;
use stormguard::policy::RetryPolicy;
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::BoxCloneService;
use tower::{Layer, Service};

/// The inner service: always ready, always 200.
#[derive(Clone)]
pub struct Ok200;

impl<B> Service<Request<B>> for Ok200 {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// The inner service for a request with a body: reads the body to its end, as a client sending
/// it upstream would, then answers 200. The bodies here are in memory, so every frame is ready.
#[derive(Clone)]
pub struct ReadsBody;

impl<B: http_body::Body> Service<Request<B>> for ReadsBody {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut body = std::pin::pin!(req.into_body());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        while let std::task::Poll::Ready(Some(_)) = body.as_mut().poll_frame(&mut cx) {}
        ready(Ok(Response::new(())))
    }
}

/// A 1 KiB body in place of the request's own: a small POST or PUT.
fn with_body(req: Req) -> Req {
    static KIB: [u8; 1024] = [b'x'; 1024];
    req.map(|_| Full::new(Bytes::from_static(&KIB)))
}

/// A fair tower policy: retries 5xx once within a `TpsBudget` (20%, 10/s, 10 s: the same budget
/// as stormguard's recommended one), clones the request (as a retry needs), and deposits on every
/// request, as tower's docs show.
#[derive(Clone)]
pub struct TowerPolicy {
    budget: Arc<TpsBudget>,
    attempts: u32,
}

impl<B: Clone> tower::retry::Policy<Request<B>, Response<()>, Infallible> for TowerPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Request<B>,
        result: &mut Result<Response<()>, Infallible>,
    ) -> Option<Self::Future> {
        match result {
            Ok(response) if response.status().is_server_error() && self.attempts < 2 => {
                if self.budget.withdraw() {
                    self.attempts += 1;
                    Some(tokio::time::sleep(Duration::from_millis(25)))
                } else {
                    None
                }
            }
            _ => {
                self.budget.deposit();
                None
            }
        }
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        Some(req.clone())
    }
}

/// A typical GET: a URI with a query and two headers.
pub fn request() -> Request<Full<Bytes>> {
    Request::get("http://api.internal/items?page=2")
        .header("accept", "application/json")
        .header("user-agent", "bench")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

type Req = Request<Full<Bytes>>;

/// A service under test: the same request and response types for every variant.
pub type Variant =
    BoxCloneService<Request<Full<Bytes>>, Response<()>, Box<dyn std::error::Error + Send + Sync>>;

/// The variants, by name, in the order the tables print them.
pub fn variants() -> Vec<(&'static str, Variant)> {
    let bare = Variant::new(tower::ServiceExt::<Req>::map_err(
        Ok200,
        |e: Infallible| match e {},
    ));
    let tower_retry = tower::retry::RetryLayer::new(TowerPolicy {
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        attempts: 1,
    })
    .layer(Ok200);
    let tower_retry_timeout =
        tower::timeout::TimeoutLayer::new(Duration::from_secs(10)).layer(tower_retry.clone());
    let recommended = RetryLayer::new(RetryPolicy::recommended())
        .seed(1)
        .layer(Ok200);
    let mut plain = RetryPolicy::recommended();
    plain.propagate_deadline = false;
    let plain = RetryLayer::new(plain).seed(1).layer(Ok200);
    let bare_body = tower::ServiceExt::<Req>::map_err(ReadsBody, |e: Infallible| match e {});
    let bare_body = tower::ServiceExt::<Req>::map_request(bare_body, with_body);
    let with_body_retry = RetryLayer::new(RetryPolicy::recommended())
        .seed(1)
        .layer(ReadsBody);
    let with_body_retry = tower::ServiceExt::<Req>::map_err(with_body_retry, Into::into);
    let with_body_retry = tower::ServiceExt::<Req>::map_request(with_body_retry, with_body);
    vec![
        ("bare service", bare),
        (
            "tower::retry + TpsBudget",
            Variant::new(tower::ServiceExt::<Req>::map_err(
                tower_retry,
                |e: Infallible| match e {},
            )),
        ),
        (
            "tower::retry + TpsBudget + Timeout",
            Variant::new(tower_retry_timeout),
        ),
        (
            "stormguard RetryLayer (recommended)",
            Variant::new(tower::ServiceExt::<Req>::map_err(recommended, Into::into)),
        ),
        (
            "stormguard RetryLayer (no deadline header)",
            Variant::new(tower::ServiceExt::<Req>::map_err(plain, Into::into)),
        ),
        ("bare service, 1 KiB body read", Variant::new(bare_body)),
        (
            "stormguard RetryLayer, 1 KiB body read",
            Variant::new(with_body_retry),
        ),
    ]
}
