//! [`Hedge`]: one extra copy of a slow idempotent request, to another instance; first answer wins.

mod layer;

pub use self::layer::HedgeLayer;

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::balance::TriedInstances;
use super::body::{prepare, Prepared, ReplayBody};
use super::clock;
use super::error::BoxError;
use crate::classify::is_idempotent;
use crate::estimate::LatencyEstimator;
use crate::hedge::HedgePolicy;
use crate::metrics::{Event, Observer};

/// The state a [`HedgeLayer`] shares with every service it makes.
pub(crate) struct Shared<O> {
    pub(crate) policy: Arc<HedgePolicy>,
    pub(crate) estimator: Arc<LatencyEstimator>,
    pub(crate) observer: O,
    pub(crate) target: Arc<str>,
    pub(crate) body_limit: usize,
}

/// A service that hedges slow idempotent requests, as a [`HedgePolicy`] says.
///
/// Made by [`HedgeLayer`]. Every request's latency is recorded in the estimator (a quantile
/// delay needs it). A request that is idempotent and whose body fits the buffer is sent; if no
/// answer came after the hedge delay and the hedge budget allows, a second copy is sent with the
/// same [`TriedInstances`], so a balancer sends it to another instance. The first successful
/// response wins and the other attempt is dropped (cancelled); an error from one copy waits for
/// the other. Errors pass through unchanged, so an outer retry layer classifies them.
#[derive(Clone)]
pub struct Hedge<S, O> {
    inner: S,
    shared: Arc<Shared<O>>,
}

impl<S, B, RB, O> Service<Request<B>> for Hedge<S, O>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Send + 'static,
    O: Observer,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(run(inner, self.shared.clone(), req))
    }
}

async fn send<S, B, RB>(
    mut service: S,
    req: Request<ReplayBody<B>>,
) -> Result<Response<RB>, BoxError>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    poll_fn(|cx| service.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    service.call(req).await.map_err(Into::into)
}

/// Which of two things finished first.
enum First<A, B> {
    Left(A),
    Right(B),
}

async fn run<S, B, RB, O>(
    inner: S,
    shared: Arc<Shared<O>>,
    req: Request<B>,
) -> Result<Response<RB>, BoxError>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    O: Observer,
{
    let estimator = &*shared.estimator;
    let record = |started: Instant| {
        let now = clock::now();
        estimator.record(now, now.saturating_duration_since(started));
    };
    let start = clock::now();
    shared.policy.on_request(start);
    let (mut parts, body) = req.into_parts();
    let idempotent = is_idempotent(&parts.method, &parts.headers);
    let delay = shared.policy.delay(Some(estimator), start);
    let buffered = match prepare(body, shared.body_limit).await? {
        Prepared::Replayable(buffered) if idempotent && delay.is_some() => buffered,
        Prepared::Replayable(buffered) => {
            let result = send(inner, Request::from_parts(parts, buffered.replay())).await;
            record(start);
            return result;
        }
        Prepared::Once(body) => {
            let result = send(inner, Request::from_parts(parts, body)).await;
            record(start);
            return result;
        }
    };
    let delay = delay.expect("checked above");
    if parts.extensions.get::<TriedInstances>().is_none() {
        parts.extensions.insert(TriedInstances::default());
    }

    let mut original = pin!(send(
        inner.clone(),
        Request::from_parts(parts.clone(), buffered.replay())
    ));
    let mut timer = pin!(tokio::time::sleep(delay));
    let first = poll_fn(|cx| {
        if let Poll::Ready(result) = original.as_mut().poll(cx) {
            return Poll::Ready(First::Left(result));
        }
        timer.as_mut().poll(cx).map(First::Right)
    })
    .await;
    if let First::Left(result) = first {
        record(start);
        return result;
    }
    let hedge_start = clock::now();
    if !shared.policy.try_hedge(hedge_start, idempotent) {
        let result = original.await;
        record(start);
        return result;
    }
    shared.observer.observe(&shared.target, Event::HedgeSent);
    shared.observer.observe(&shared.target, Event::Attempt);
    let mut hedge = pin!(send(inner, Request::from_parts(parts, buffered.replay())));

    // Race the two. A success wins at once; an error waits for the other copy.
    let mut original_error: Option<BoxError> = None;
    let mut hedge_error: Option<BoxError> = None;
    let winner = poll_fn(|cx| {
        if original_error.is_none() {
            if let Poll::Ready(result) = original.as_mut().poll(cx) {
                match result {
                    Ok(response) => return Poll::Ready(Ok(First::Left(response))),
                    Err(e) => original_error = Some(e),
                }
            }
        }
        if hedge_error.is_none() {
            if let Poll::Ready(result) = hedge.as_mut().poll(cx) {
                match result {
                    Ok(response) => return Poll::Ready(Ok(First::Right(response))),
                    Err(e) => hedge_error = Some(e),
                }
            }
        }
        if original_error.is_some() && hedge_error.is_some() {
            return Poll::Ready(Err(original_error.take().expect("both failed")));
        }
        Poll::Pending
    })
    .await;
    // The loser is cancelled when its future is dropped at the end of this function. Its time
    // so far is recorded too: a lower bound on its latency that keeps the tail in the estimate.
    match winner {
        Ok(First::Left(response)) => {
            record(start);
            Ok(response)
        }
        Ok(First::Right(response)) => {
            shared.observer.observe(&shared.target, Event::HedgeWon);
            record(hedge_start);
            record(start);
            Ok(response)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
