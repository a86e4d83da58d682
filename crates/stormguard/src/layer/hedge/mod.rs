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
use super::body::{prepare, Prepared, ReplayBody, Wait};
use super::clock;
use super::error::BoxError;
use super::retry::{incoming_deadline, is_grpc, Attempts};
use crate::classify::is_idempotent;
use crate::deadline::{budget_of, write_budget};
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
    /// Whether every request may be hedged (`Some(true)`), none (`Some(false)`), or each by
    /// its method and `Idempotency-Key` (`None`, the default), as the retry policy's
    /// `idempotent` says.
    pub(crate) idempotent: Option<bool>,
}

/// A service that hedges slow idempotent requests, as a [`HedgePolicy`] says.
///
/// Made by [`HedgeLayer`]. Every response's latency is recorded in the estimator (a quantile
/// delay needs it). A request that is idempotent, whose body fits the buffer and whose deadline
/// (if any) outlasts the hedge delay is sent; if no answer came after the hedge delay and the
/// hedge budget allows, a second copy is sent with the same [`TriedInstances`], so a balancer
/// sends it to another instance, carrying the budget left at that moment. The first response
/// below 500 wins and the other copy is dropped (cancelled); an error or a 5xx from one copy
/// waits for the other. Errors pass through unchanged, so an outer retry layer classifies them.
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

/// Whether an outcome is one to return at once: a response below 500. An error or a 5xx from
/// one copy waits for the other, which may still succeed.
fn is_good<RB>(outcome: &Result<Response<RB>, BoxError>) -> bool {
    matches!(outcome, Ok(response) if !response.status().is_server_error())
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
    // Responses only, as the retry layer records: an error's time says nothing of latency.
    let record = |started: Instant, outcome: &Result<Response<RB>, BoxError>| {
        if outcome.is_ok() {
            let now = clock::now();
            estimator.record(now, now.saturating_duration_since(started));
        }
    };
    let start = clock::now();
    shared.policy.on_request(start);
    let (mut parts, body) = req.into_parts();
    let idempotent = shared
        .idempotent
        .unwrap_or_else(|| is_idempotent(&parts.method, &parts.headers));
    let grpc = is_grpc(&parts.headers);
    let deadline = incoming_deadline(&parts.extensions, &parts.headers, start);
    let delay = shared
        .policy
        .delay(Some(estimator), start)
        .filter(|delay| deadline.is_none_or(|d| d.remaining(start) > *delay));
    let Some(delay) = delay.filter(|_| idempotent) else {
        // Not hedged: sent as it is, with no buffering.
        let outcome = send(inner, Request::from_parts(parts, ReplayBody::once(body))).await;
        record(start, &outcome);
        return outcome;
    };
    let wait = if grpc {
        Wait::WhileReady
    } else {
        Wait::UntilEnd
    };
    let buffered = match prepare(body, shared.body_limit, wait).await? {
        Prepared::Replayable(buffered) => buffered,
        Prepared::Once(body) => {
            let outcome = send(inner, Request::from_parts(parts, body)).await;
            record(start, &outcome);
            return outcome;
        }
    };
    if parts.extensions.get::<TriedInstances>().is_none() {
        parts.extensions.insert(TriedInstances::default());
    }
    let carries_budget = parts
        .headers
        .iter()
        .any(|(name, value)| budget_of(name, value).is_some());

    let mut original = pin!(send(
        inner.clone(),
        Request::from_parts(parts.clone(), buffered.replay())
    ));
    let mut timer = pin!(tokio::time::sleep(delay));
    let first = poll_fn(|cx| {
        if let Poll::Ready(outcome) = original.as_mut().poll(cx) {
            return Poll::Ready(First::Left(outcome));
        }
        timer.as_mut().poll(cx).map(First::Right)
    })
    .await;
    if let First::Left(outcome) = first {
        record(start, &outcome);
        return outcome;
    }
    let hedge_start = clock::now();
    let remaining = deadline.map(|d| d.remaining(hedge_start));
    if remaining.is_some_and(|r| r.is_zero()) || !shared.policy.try_hedge(hedge_start, idempotent) {
        let outcome = original.await;
        record(start, &outcome);
        return outcome;
    }
    if let (true, Some(remaining)) = (carries_budget, remaining) {
        // The hedge leaves later than the original: it carries what is left now.
        write_budget(&mut parts.headers, remaining, grpc);
    }
    shared.observer.observe(&shared.target, Event::HedgeSent);
    shared.observer.observe(&shared.target, Event::Attempt);
    let mut hedge = pin!(send(inner, Request::from_parts(parts, buffered.replay())));

    // Race the two. A good answer wins at once; an error or a 5xx waits for the other copy.
    let mut original_done: Option<Result<Response<RB>, BoxError>> = None;
    let mut hedge_done: Option<Result<Response<RB>, BoxError>> = None;
    let winner = poll_fn(|cx| {
        if original_done.is_none() {
            if let Poll::Ready(outcome) = original.as_mut().poll(cx) {
                if is_good(&outcome) {
                    return Poll::Ready(First::Left(outcome));
                }
                original_done = Some(outcome);
            }
        }
        if hedge_done.is_none() {
            if let Poll::Ready(outcome) = hedge.as_mut().poll(cx) {
                if is_good(&outcome) {
                    return Poll::Ready(First::Right(outcome));
                }
                hedge_done = Some(outcome);
            }
        }
        match (original_done.take(), hedge_done.take()) {
            // Both failed: the original's answer, unless only the hedge got a response at all.
            (Some(Err(_)), Some(Ok(response))) => Poll::Ready(First::Right(Ok(response))),
            (Some(outcome), Some(_)) => Poll::Ready(First::Left(outcome)),
            (original, hedge) => {
                original_done = original;
                hedge_done = hedge;
                Poll::Pending
            }
        }
    })
    .await;
    // The loser is cancelled when its future is dropped at the end of this function.
    match winner {
        First::Left(outcome) => {
            record(start, &outcome);
            two_attempts(outcome)
        }
        First::Right(outcome) => {
            shared.observer.observe(&shared.target, Event::HedgeWon);
            record(hedge_start, &outcome);
            // The original took at least this long: a lower bound that keeps the tail in the
            // estimate the hedge delay is taken from.
            let now = clock::now();
            estimator.record(now, now.saturating_duration_since(start));
            two_attempts(outcome)
        }
    }
}

/// The answer of a hedged request says that two attempts were sent, so that a caller with no
/// [`TriedInstances`] to count them (or no retry layer above) still learns it. Only hedged
/// requests pay for the extension; a [`TriedInstances`] passed down counts the same two.
fn two_attempts<RB>(outcome: Result<Response<RB>, BoxError>) -> Result<Response<RB>, BoxError> {
    outcome.map(|mut response| {
        response.extensions_mut().insert(Attempts(2));
        response
    })
}

#[cfg(test)]
mod tests;
