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

use super::balance::{HeldList, TriedInstances};
use super::body::{Recording, ReplayBody};
use super::clock;
use super::error::BoxError;
use super::retry::{incoming_deadline, is_grpc, AttemptNumber, Attempts};
use crate::classify::is_idempotent;
use crate::deadline::{budget_of, write_budget};
use crate::estimate::LatencyEstimator;
use crate::hedge::{CopyAnswer, HedgePolicy, HedgeRace, Leg, RaceStart, Step, Won};
use crate::metrics::{Event, Observer};

/// The state a [`HedgeLayer`] shares with every service it makes.
pub(crate) struct Shared<O> {
    pub(crate) policy: Arc<HedgePolicy>,
    pub(crate) estimator: Arc<LatencyEstimator>,
    /// Whether this layer records latencies in `estimator`: only in one it made itself, for a
    /// shared one is recorded in by the retry layer above (see [`HedgeLayer::estimator`]).
    pub(crate) records: bool,
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
/// Made by [`HedgeLayer`]. Every decision is the policy core's [`HedgeRace`]: a caller's request
/// earns the hedge budget its share, a retry (an [`AttemptNumber`] above 1) earns nothing. A
/// request that is idempotent and whose deadline (if any) outlasts the hedge delay is sent, its
/// body streamed as it arrives with a copy kept up to the body limit; if no answer came within
/// the hedge delay of the body's end (a body larger than the limit is never hedged), and the
/// hedge budget allows,
/// a second copy is sent with the same [`TriedInstances`], so a balancer sends it to another
/// instance, carrying the budget left at that moment. The first response below 500 wins and the
/// other copy is dropped (cancelled); an error or a 5xx from one copy waits for the other.
/// Errors pass through unchanged, so an outer retry layer classifies them.
///
/// Latencies: with an estimator of its own ([`HedgeLayer::new`]) the layer records each
/// request's latency, responses only, from the first copy's send to the answer, hedge included;
/// an estimator shared with [`HedgeLayer::estimator`] is the retry layer's to record in, which
/// records the same figure for every attempt it sends, so each request counts once.
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

/// An answer of the layer as the race reads it: a response and its status, or an error.
impl<RB> CopyAnswer for Result<Response<RB>, BoxError> {
    fn status(&self) -> Option<u16> {
        self.as_ref()
            .ok()
            .map(|response| response.status().as_u16())
    }
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
    // Only into an estimator of its own: a shared one is the retry layer's to record in.
    // Responses only, as the retry layer records: an error's time says nothing of latency.
    let record = |started: Instant, outcome: &Result<Response<RB>, BoxError>| {
        if shared.records && outcome.is_ok() {
            let now = clock::now();
            estimator.record(now, now.saturating_duration_since(started));
        }
    };
    let start = clock::now();
    let (mut parts, body) = req.into_parts();
    let idempotent = shared
        .idempotent
        .unwrap_or_else(|| is_idempotent(&parts.method, &parts.headers));
    let grpc = is_grpc(&parts.headers);
    let deadline = incoming_deadline(&parts.extensions, &parts.headers, start);
    let mut race = HedgeRace::start(
        &shared.policy,
        RaceStart {
            now: start,
            // A request that is never hedged spares the quantile's scan of the histogram.
            delay: idempotent
                .then(|| shared.policy.delay(Some(estimator), start))
                .flatten(),
            idempotent,
            deadline,
            retry: parts
                .extensions
                .get::<AttemptNumber>()
                .is_some_and(|n| n.0 > 1),
        },
    );
    let Some(delay) = race.hedge_delay() else {
        // Not hedged: sent as it is, with no copy.
        let outcome = send(inner, Request::from_parts(parts, ReplayBody::once(body))).await;
        record(start, &outcome);
        return outcome;
    };
    if body.size_hint().lower() > shared.body_limit as u64 {
        // Too large to copy: sent once, as it is.
        let outcome = send(inner, Request::from_parts(parts, ReplayBody::once(body))).await;
        record(start, &outcome);
        return outcome;
    }
    // The original streams the body as it arrives; a copy is kept for the hedge.
    let (first_body, recording) = Recording::start(body, shared.body_limit);
    // A request that came without a list gets the hedge's own, so that the copies go to
    // different instances; it goes up with the answer, or to a watching list if the race is
    // dropped (`HeldList`).
    let mut own = HeldList(None);
    if parts.extensions.get::<TriedInstances>().is_none() {
        let list = TriedInstances::pooled();
        parts.extensions.insert(list.clone());
        own.0 = Some(list);
    }
    let carries_budget = parts
        .headers
        .iter()
        .any(|(name, value)| budget_of(name, value).is_some());

    let mut original = pin!(send(
        inner.clone(),
        Request::from_parts(parts.clone(), first_body)
    ));
    // A hedge is sent only with the whole body: its delay runs from when the client's body has
    // ended (at once for a body already there), since a body still arriving is the client's
    // slowness, which a hedge cannot help, and a hedge reading the client's body beside the
    // original could pass the limit first and cut the original's body short.
    let complete = poll_fn(|cx| {
        if let Poll::Ready(outcome) = original.as_mut().poll(cx) {
            return Poll::Ready(First::Left(outcome));
        }
        recording.poll_complete(cx).map(First::Right)
    })
    .await;
    let step = match complete {
        First::Left(outcome) => race.on_answer(Leg::Primary, outcome),
        // The body passed the limit: no hedge can have it whole.
        First::Right(false) => Step::Wait,
        First::Right(true) => {
            let mut timer = pin!(tokio::time::sleep(delay));
            let first = poll_fn(|cx| {
                if let Poll::Ready(outcome) = original.as_mut().poll(cx) {
                    return Poll::Ready(First::Left(outcome));
                }
                timer.as_mut().poll(cx).map(First::Right)
            })
            .await;
            match first {
                First::Left(outcome) => race.on_answer(Leg::Primary, outcome),
                First::Right(()) => race.on_timer(&shared.policy, clock::now()),
            }
        }
    };
    let won = match step {
        Step::Return(won) => won,
        Step::SendHedge => {
            if let (true, Some(deadline)) = (carries_budget, deadline) {
                // The hedge leaves later than the original: it carries what is left now.
                write_budget(&mut parts.headers, deadline.remaining(clock::now()), grpc);
            }
            shared.observer.observe(&shared.target, Event::HedgeSent);
            shared.observer.observe(&shared.target, Event::Attempt);
            let body = recording
                .replay_complete()
                .expect("complete before the timer started");
            let hedge = send(inner, Request::from_parts(parts, body));
            race_both(&mut race, original, pin!(hedge)).await
        }
        // No hedge after all (no budget, no time left): the original alone.
        Step::Wait | Step::Late => match race.on_answer(Leg::Primary, original.await) {
            Step::Return(won) => won,
            _ => unreachable!("before a hedge, the original's answer ends the race"),
        },
    };
    // The loser, if any, is cancelled when its future is dropped at the end of this function.
    if won.from == Leg::Hedge {
        shared.observer.observe(&shared.target, Event::HedgeWon);
    }
    record(start, &won.answer);
    let answer = hand_up(own, won.answer);
    if won.hedged {
        two_attempts(answer)
    } else {
        answer
    }
}

/// The answer of a request that came without a list carries the hedge's own list of the
/// instances its copies went to and of the copies sent: a balancer marks no response of a
/// request with a list, so this is how a retry layer above learns where the answer (a 503 it
/// retries) came from, both copies' instances included. An error names one instance (an
/// [`InstanceError`](crate::layer::InstanceError)), so with an error the list is reported to
/// the list watching (the retry layer above polls a first attempt that waited under one) as
/// `own` is dropped: both copies' instances and their count.
fn hand_up<RB>(
    mut own: HeldList,
    answer: Result<Response<RB>, BoxError>,
) -> Result<Response<RB>, BoxError> {
    match answer {
        Ok(mut response) => {
            if let Some(list) = own.0.take() {
                response.extensions_mut().insert(list);
            }
            Ok(response)
        }
        Err(e) => Err(e),
    }
}

/// Polls both copies, telling `race` of each answer, until it says which answer to return.
async fn race_both<RB, F1, F2>(
    race: &mut HedgeRace<Result<Response<RB>, BoxError>>,
    mut original: Pin<&mut F1>,
    mut hedge: Pin<&mut F2>,
) -> Won<Result<Response<RB>, BoxError>>
where
    F1: Future<Output = Result<Response<RB>, BoxError>>,
    F2: Future<Output = Result<Response<RB>, BoxError>>,
{
    // A copy that answered is not polled again; the race holds its answer while it waits.
    let mut answered = [false, false];
    poll_fn(|cx| {
        for (leg, done) in [Leg::Primary, Leg::Hedge].into_iter().zip(&mut answered) {
            if *done {
                continue;
            }
            let polled = match leg {
                Leg::Primary => original.as_mut().poll(cx),
                Leg::Hedge => hedge.as_mut().poll(cx),
            };
            if let Poll::Ready(outcome) = polled {
                *done = true;
                if let Step::Return(won) = race.on_answer(leg, outcome) {
                    return Poll::Ready(won);
                }
            }
        }
        Poll::Pending
    })
    .await
}

/// The answer of a hedged request says that two attempts were sent, so that a caller with no
/// [`TriedInstances`] to count them (or no retry layer above) still learns it; a
/// [`TriedInstances`] passed down counts the same two. (A request that may be hedged and came
/// without a list gets the hedge's own on its response as well: [`hand_up`].)
fn two_attempts<RB>(outcome: Result<Response<RB>, BoxError>) -> Result<Response<RB>, BoxError> {
    outcome.map(|mut response| {
        response.extensions_mut().insert(Attempts(2));
        response
    })
}

#[cfg(test)]
mod body_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod under_retry_tests;
