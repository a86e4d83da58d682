//! [`DeadlineService`]: the incoming budget in, a timeout on the call, the decremented budget out.

mod layer;

pub use self::layer::DeadlineLayer;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::balance::TriedInstances;
use super::clock;
use super::error::{BoxError, Error, ErrorKind};
use super::retry::{incoming_deadline, is_grpc, until};
use crate::deadline::{write_budget, Deadline, DeadlinePolicy};
use crate::metrics::{Event, Observer};
use crate::policy::GiveUp;

/// A service that bounds a call by the request's deadline and passes the rest downstream.
///
/// Made by [`DeadlineLayer`]. The deadline is the earliest of a [`Deadline`] request extension,
/// the incoming budget headers (`stormguard-budget-ms`, `grpc-timeout`,
/// `x-envoy-expected-rq-timeout-ms`; the smallest wins) and the layer's own timeout. With less
/// than the reserve left the request is answered at once ([`ErrorKind::Deadline`]); otherwise the
/// call gets `min(timeout, remaining - reserve)`, the request carries the deadline as an
/// extension (so an inner retry layer keeps to it) and, when propagating, the decremented
/// budget in its headers. A call that runs out of time ends with [`ErrorKind::Timeout`], which
/// counts the attempts sent below when the request carries a [`TriedInstances`] (one otherwise).
#[derive(Clone)]
pub struct DeadlineService<S, O> {
    inner: S,
    policy: DeadlinePolicy,
    timeout: Option<Duration>,
    propagate: bool,
    observer: O,
    target: std::sync::Arc<str>,
}

pin_project! {
    /// The response future of [`DeadlineService`].
    ///
    /// A named type rather than a box: the caller boxes the whole stack's future once if it
    /// needs to, instead of this layer boxing an async block around the call on every request.
    pub struct ResponseFuture<F, O> {
        #[pin]
        state: State<F, O>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, O> {
        /// Timed out here at the deadline.
        Timed {
            #[pin]
            call: tokio::time::Timeout<F>,
            observer: O,
            target: std::sync::Arc<str>,
            tried: Option<TriedInstances>,
        },
        /// Answered at once: the deadline was spent.
        Spent { kind: ErrorKind },
    }
}

impl<F, RB, E, O> Future for ResponseFuture<F, O>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    O: Observer,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Timed {
                call,
                observer,
                target,
                tried,
            } => match std::task::ready!(call.poll(cx)) {
                Ok(result) => Poll::Ready(result.map_err(Into::into)),
                Err(_) => {
                    observer.observe(target, Event::Timeout(crate::metrics::TimeoutKind::Request));
                    // Without a list, the one call this layer made is all it knows of.
                    let attempts = tried.as_ref().map_or(1, TriedInstances::attempts);
                    Poll::Ready(Err(Error::new(ErrorKind::Timeout, attempts, None).into()))
                }
            },
            StateProj::Spent { kind } => Poll::Ready(Err(Error::new(*kind, 0, None).into())),
        }
    }
}

impl<S, B, RB, O> Service<Request<B>> for DeadlineService<S, O>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    O: Observer + Clone,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, O>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let now = clock::now();
        let incoming = incoming_deadline(req.extensions(), req.headers(), now);
        let own = self.timeout.map(|t| Deadline::after(now, t));
        let deadline = match (incoming, own) {
            (Some(a), Some(b)) => Some(a.earliest(b)),
            (a, b) => a.or(b),
        };
        let Some(timeout) = self.policy.attempt_timeout(deadline, now) else {
            self.observer.observe(&self.target, Event::DeadlineGiveUp);
            self.observer
                .observe(&self.target, Event::Failed(GiveUp::Deadline));
            return ResponseFuture {
                state: State::Spent {
                    kind: ErrorKind::Deadline,
                },
            };
        };
        let call_deadline = Deadline::after(now, timeout);
        req.extensions_mut().insert(call_deadline);
        if self.propagate {
            let grpc = is_grpc(req.headers());
            write_budget(req.headers_mut(), timeout, grpc);
        }
        // Attempts made below are counted in the request's list, when it carries one: the count
        // outlives the attempts this layer's timeout drops. An `Arc` clone, only when present.
        let tried = req.extensions().get::<TriedInstances>().cloned();
        // Timed from now, not from the first poll of the returned future.
        let call = tokio::time::timeout_at(until(now, timeout), self.inner.call(req));
        ResponseFuture {
            state: State::Timed {
                call,
                observer: self.observer.clone(),
                target: self.target.clone(),
                tried,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadline::BUDGET_HEADER;
    use std::convert::Infallible;
    use tower_layer::Layer;

    fn echo_budget() -> impl Service<
        Request<()>,
        Response = Response<Option<String>>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Option<String>>, Infallible>> + Send,
    > + Clone {
        tower::service_fn(|req: Request<()>| async move {
            let budget = req
                .headers()
                .get(BUDGET_HEADER)
                .map(|v| v.to_str().unwrap().to_string());
            Ok::<_, Infallible>(Response::new(budget))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_decremented_by_the_reserve() {
        let layer = DeadlineLayer::new(Duration::from_secs(10)).reserve(Duration::from_millis(5));
        let mut svc = layer.layer(echo_budget());
        let mut req = Request::new(());
        req.headers_mut()
            .insert(BUDGET_HEADER, "300".parse().unwrap());
        let response = svc.call(req).await.unwrap();
        assert_eq!(response.body().as_deref(), Some("295"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_is_answered_at_once() {
        let layer = DeadlineLayer::new(Duration::from_secs(10)).reserve(Duration::from_millis(5));
        let mut svc = layer.layer(echo_budget());
        let mut req = Request::new(());
        req.headers_mut()
            .insert(BUDGET_HEADER, "3".parse().unwrap());
        let err = svc.call(req).await.unwrap_err();
        let err = err.downcast::<Error>().unwrap();
        assert_eq!(err.kind(), ErrorKind::Deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn one_malformed_header_does_not_drop_the_deadline() {
        let layer = DeadlineLayer::new(Duration::from_secs(2)).reserve(Duration::from_millis(5));
        let mut svc = layer.layer(echo_budget());
        let mut req = Request::new(());
        req.headers_mut()
            .insert(BUDGET_HEADER, "100".parse().unwrap());
        req.headers_mut()
            .insert("grpc-timeout", "100".parse().unwrap());
        let response = svc.call(req).await.unwrap();
        assert_eq!(response.body().as_deref(), Some("95"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_runs_from_the_call_not_the_first_poll() {
        let slow = tower::service_fn(|_req: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Infallible>(Response::new(()))
        });
        let mut svc = DeadlineLayer::new(Duration::from_secs(1)).layer(slow);
        let start = tokio::time::Instant::now();
        let future = svc.call(Request::new(()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let err = future.await.unwrap_err();
        assert_eq!(err.downcast::<Error>().unwrap().kind(), ErrorKind::Timeout);
        assert_eq!(start.elapsed(), Duration::from_millis(995));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_times_out_at_the_deadline() {
        let slow = tower::service_fn(|_req: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Infallible>(Response::new(()))
        });
        let mut svc = DeadlineLayer::new(Duration::from_secs(1)).layer(slow);
        let start = tokio::time::Instant::now();
        let err = svc.call(Request::new(())).await.unwrap_err();
        assert_eq!(err.downcast::<Error>().unwrap().kind(), ErrorKind::Timeout);
        assert_eq!(start.elapsed(), Duration::from_millis(995));
    }
}
