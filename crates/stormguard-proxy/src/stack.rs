//! A route's tower stack, built from the library's layers over pooled connections to each instance.
//!
//! ## Why this shape
//! Every decision a route takes is the library's: the stack is, outermost first, `RetryLayer`
//! (the route's policy, with the request's deadline: the inbound budget capped by the route's
//! `request_timeout`, the reserve kept back, the decremented budget downstream), `HedgeLayer`
//! when the route hedges, and a `Balance` over the instances. What this module adds is plumbing only: [`Timed`] measures
//! each attempt for the latency histogram and hands it to its instance's [`InstancePool`]
//! (HTTP/1.1) or [`H2Instance`] (HTTP/2), and [`RouteService`] gives a hedged and a plain
//! stack one type, so that routes of both kinds share each instance's connections.
//!
//! ## Which protocol
//! A gRPC request (`content-type: application/grpc`, `application/grpc+proto`, ...) goes over
//! HTTP/2, which gRPC needs for its trailers; every request of an upstream with `protocol =
//! "http2"` does too; the rest go over HTTP/1.1. Both are one instance's services under one
//! balancer, so a gRPC retry goes to another instance, and a retry budget, estimator and
//! in-flight counts are shared, whichever protocol each request took. gRPC-Web
//! (`application/grpc-web`) is made for HTTP/1.1 and carries its status in the body: it
//! follows the upstream's protocol. The HTTP/1.1 path pays one header lookup for the choice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use prometheus_client::metrics::histogram::Histogram;
use stormguard::layer::{Balance, BoxError, Hedge, ReplayBody, Retry};
use tower_service::Service;

use crate::config::Protocol;
use crate::h1::{DirectBody, Exchange};
use crate::h2_pool::{H2Instance, H2Sending};
use crate::metrics::{InstanceMetrics, RouteObserver};
use crate::pool::{InstancePool, Sending};

/// A client's request body as the stack takes it: what was read before forwarding, then the
/// rest as it arrives, size-limited and watched ([`crate::request_body`]). Not boxed: a box
/// for every request, nearly all of them with an empty body, bought nothing (the retry layer
/// boxes a body it streams once anyway).
pub(crate) type RequestBody = crate::request_body::RequestBody;

/// The body an attempt sends: as the retry layer replays it, or as the hedge layer (under the
/// retry layer) replays that. One type, so one pool serves hedged and plain routes alike.
pub(crate) type UpstreamBody = Either<ReplayBody<RequestBody>, ReplayBody<ReplayBody<RequestBody>>>;

/// A body the layers hand down, made into the one body type the client sends.
pub(crate) trait IntoUpstream: Send + 'static {
    /// The same bytes as an [`UpstreamBody`].
    fn into_upstream(self) -> UpstreamBody;
}

impl IntoUpstream for ReplayBody<RequestBody> {
    fn into_upstream(self) -> UpstreamBody {
        Either::Left(self)
    }
}

impl IntoUpstream for ReplayBody<ReplayBody<RequestBody>> {
    fn into_upstream(self) -> UpstreamBody {
        Either::Right(self)
    }
}

/// A response body from an instance: hyper's (HTTP/2, and HTTP/1.1 with `http1_client =
/// "hyper"`) or the direct client's ([`crate::h1`], the default for HTTP/1.1).
pub(crate) type UpstreamResponse = Either<Incoming, DirectBody>;

/// Sends attempts to one instance through its HTTP/1.1 pool or its HTTP/2 connection (see
/// the module docs) and records each one's latency in its route's histogram: a response at
/// its arrival, an attempt abandoned at the route's timeout at that moment (in the bucket past
/// the timeout, where it belongs). An attempt abandoned earlier (a hedge's losing copy, one a
/// shorter deadline or an adaptive timeout cut) is not recorded: all that is known is that it
/// would have taken longer, and the moment it was dropped, recorded as its latency, pulled the
/// quantiles `recommend` reads down (a review: half of a hedged route's observations were its
/// losers', under the upstream's least latency). Errors are not recorded: a refused
/// connection's microseconds say nothing of the upstream's latency. Every attempt's outcome is
/// counted on its instance's series.
#[derive(Clone)]
pub(crate) struct Timed {
    pool: Arc<InstancePool>,
    h2: Arc<H2Instance>,
    /// Every request over HTTP/2 (`protocol = "http2"`), not only gRPC.
    all_h2: bool,
    /// HTTP/1.1 by the direct client (`http1_client = "direct"`), not hyper's.
    direct: bool,
    latency: Histogram,
    /// The route's timeout: an attempt abandoned before it is not recorded.
    timeout: Duration,
    /// The instance's address, as the access log names it.
    address: Arc<str>,
    instance: InstanceMetrics,
}

impl Timed {
    pub(crate) fn new(
        pool: Arc<InstancePool>,
        h2: Arc<H2Instance>,
        protocol: Protocol,
        direct: bool,
        (latency, timeout): (Histogram, Duration),
        address: Arc<str>,
        instance: InstanceMetrics,
    ) -> Self {
        Timed {
            pool,
            h2,
            all_h2: protocol == Protocol::Http2,
            direct,
            latency,
            timeout,
            address,
            instance,
        }
    }
}

/// Whether a request is gRPC, which needs HTTP/2: `application/grpc` and its `+proto`,
/// `+json`, `;charset` forms, not gRPC-Web.
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| {
            let value = value.as_bytes();
            value.starts_with(b"application/grpc") && !value[16..].starts_with(b"-web")
        })
}

/// Records an attempt's latency and outcome once: on its response, or on drop if it never
/// finished (abandoned).
struct Timing {
    latency: Histogram,
    timeout: Duration,
    instance: InstanceMetrics,
    start: tokio::time::Instant,
    armed: bool,
}

impl Timing {
    fn record(&mut self) -> bool {
        let armed = std::mem::take(&mut self.armed);
        if armed {
            self.latency.observe(self.start.elapsed().as_secs_f64());
        }
        armed
    }

    /// On drop, unanswered: recorded only if it ran to the route's timeout (see [`Timed`]),
    /// less a slack ([`ABANDON_SLACK`]).
    fn abandoned(&mut self) -> bool {
        let armed = std::mem::take(&mut self.armed);
        if armed {
            let elapsed = self.start.elapsed();
            if elapsed + (self.timeout / 20).max(ABANDON_SLACK) >= self.timeout {
                self.latency.observe(elapsed.as_secs_f64());
            }
        }
        armed
    }

    fn answered(&mut self, status: u16) {
        if self.record() {
            self.instance.answered(status);
        }
    }

    fn failed(&mut self, error: &BoxError) {
        if std::mem::take(&mut self.armed) {
            self.instance.failed(&**error);
        }
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        if self.abandoned() {
            self.instance.abandoned();
        }
    }
}

/// How much earlier than the route's timeout an abandoned attempt may have been dropped and
/// still count as cut by it (or a twentieth of the timeout, if more): the retry layer's timer
/// starts before the attempt's clock here, by more on a loaded machine.
const ABANDON_SLACK: Duration = Duration::from_millis(1);

/// An attempt in flight: the pool's or the HTTP/2 connection's future, and its timing.
pub(crate) struct TimedFuture {
    sent: Sent,
    timing: Timing,
}

enum Sent {
    Http1(Sending),
    Direct(Exchange),
    Http2(H2Sending),
}

impl Future for TimedFuture {
    type Output = Result<Response<UpstreamResponse>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = match &mut self.sent {
            Sent::Http1(sent) => Pin::new(sent)
                .poll(cx)
                .map_ok(|response| response.map(Either::Left)),
            Sent::Direct(sent) => Pin::new(sent)
                .poll(cx)
                .map_ok(|response| response.map(Either::Right)),
            Sent::Http2(sent) => sent
                .as_mut()
                .poll(cx)
                .map_ok(|response| response.map(Either::Left)),
        };
        let result = std::task::ready!(polled);
        match &result {
            Ok(response) => self.timing.answered(response.status().as_u16()),
            Err(error) => self.timing.failed(error),
        }
        Poll::Ready(result)
    }
}

impl<B: IntoUpstream> Service<Request<B>> for Timed {
    type Response = Response<UpstreamResponse>;
    // A connect failure is the library's `NotSent`, so the classifier knows it was not sent.
    type Error = BoxError;
    type Future = TimedFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A connection is taken or made in the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        crate::access_log::attempt_to(&self.address);
        let req = req.map(IntoUpstream::into_upstream);
        let sent = if self.all_h2 || is_grpc(req.headers()) {
            Sent::Http2(self.h2.clone().send(req))
        } else if self.direct {
            Sent::Direct(self.pool.clone().send_direct(req))
        } else {
            Sent::Http1(self.pool.clone().send(req))
        };
        TimedFuture {
            sent,
            timing: Timing {
                latency: self.latency.clone(),
                timeout: self.timeout,
                instance: self.instance.clone(),
                start: tokio::time::Instant::now(),
                armed: true,
            },
        }
    }
}

/// The instances of a route's upstream, spread by the library's balancer.
/// No `SetAuthority` per instance: each instance's [`Timed`] sends through that instance's own
/// pool, which sends the origin-form target, so an absolute URI made per attempt would only be
/// taken apart again.
pub(crate) type Instances = Balance<Timed>;

// Each layer reports to the route's own counters, found when the stack is built: no lookup by
// name per event (`PrometheusMetrics::for_target`).
type Plain = Retry<Instances, RouteObserver>;
type Hedged = Retry<Hedge<Instances, RouteObserver>, RouteObserver>;

/// What a route's stack answers: the upstream's response, or the library's error.
pub(crate) type RouteFuture =
    Pin<Box<dyn Future<Output = Result<Response<UpstreamResponse>, BoxError>> + Send>>;

/// A route's stack, hedged or not. Cheap to clone: every layer holds its shared state (budget,
/// estimator, hedge budget, balancer counts) behind an `Arc`.
#[derive(Clone)]
pub(crate) enum RouteService {
    /// Retry (with the request's deadline), balance.
    Plain(Plain),
    /// Retry (with the request's deadline), hedge, balance. The retry layer counts a hedge's
    /// copies from the answer, or, when its per-try timeout drops them, from the balancer
    /// below, which reports the attempts dropped unanswered to the list watching the drop.
    Hedged(Hedged),
}

impl RouteService {
    /// Sends `req` through the stack.
    pub(crate) fn call(&self, req: Request<RequestBody>) -> RouteFuture {
        match self.clone() {
            RouteService::Plain(service) => ready_and_call(service, req),
            RouteService::Hedged(service) => ready_and_call(service, req),
        }
    }
}

fn ready_and_call<S>(mut service: S, req: Request<RequestBody>) -> RouteFuture
where
    S: Service<Request<RequestBody>, Response = Response<UpstreamResponse>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    // The library's layers are always ready (a balancer picks per request, in the call): ask
    // once without a waker and call at once; only a layer that is not ready costs a future.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match service.poll_ready(&mut cx) {
        // The one box of the stack's future: its layers name their futures' types. The error
        // is boxed only when there is one.
        Poll::Ready(Ok(())) => {
            let call = service.call(req);
            Box::pin(async move { call.await.map_err(Into::into) })
        }
        Poll::Ready(Err(error)) => Box::pin(std::future::ready(Err(error.into()))),
        Poll::Pending => Box::pin(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            service.call(req).await.map_err(Into::into)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_is_told_by_its_content_type_grpc_web_is_not() {
        let headers = |content_type: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            headers
        };
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_grpc(&headers(grpc)), "{grpc}");
        }
        for other in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/json",
            "text/plain",
        ] {
            assert!(!is_grpc(&headers(other)), "{other}");
        }
        assert!(!is_grpc(&http::HeaderMap::new()));
    }
}
