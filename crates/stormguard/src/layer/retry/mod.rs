//! [`Retry`]: sends a request, and again when the policy says so, within its deadline.

mod attempting;
mod facts;
mod future;
mod layer;
mod retry_loop;

pub use self::future::ResponseFuture;
pub use self::layer::RetryLayer;

use self::attempting::{attempt, Attempting, Outcome};
pub(crate) use self::attempting::{settle, settle_response};
use self::facts::RequestFacts;
pub(crate) use self::facts::{incoming_deadline, is_grpc, response_result, until};
pub(crate) use self::retry_loop::{retry_loop, Resend, Tried};

use std::future::poll_fn;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use rand::SeedableRng;
use tower_service::Service;

use super::balance::{instance_of, HeldList, Instance, TriedInstances};
use super::body::{Recording, ReplayBody};
use super::clock;
use super::error::{classify_error, BoxError, Error, ErrorKind, NotSent};
use crate::backoff::JitterRng;
use crate::classify::{
    is_idempotency_key, is_idempotent_method, parse_grpc_pushback, parse_retry_after,
    AttemptResult, Class, IDEMPOTENCY_KEY,
};
use crate::deadline::{
    budget_of, budget_value, insert_budget_value, Deadline, BUDGET_HEADER,
    ENVOY_EXPECTED_TIMEOUT_HEADER, GRPC_TIMEOUT_HEADER,
};
use crate::estimate::{LatencyEstimator, LatencyQuantiles};
use crate::metrics::{Event, Observer, TimeoutKind};
use crate::policy::{Decision, GiveUp, RetryPolicy, RetryState};

/// Response extension: how many attempts were sent for the request, when more than one; a
/// hedge's copy is an attempt.
///
/// Absent when the first attempt answered, so that the path nearly every request takes pays for
/// no extension; read it with [`Attempts::of`]. Set by the retry layer (its attempts, and those
/// a [`TriedInstances`] counted) and by the hedge layer on the answer of a hedged request.
///
/// ```
/// use stormguard::layer::Attempts;
///
/// let mut response = http::Response::new(());
/// assert_eq!(Attempts::of(&response), 1);
/// response.extensions_mut().insert(Attempts(3));
/// assert_eq!(Attempts::of(&response), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempts(pub u32);

impl Attempts {
    /// Attempts the request behind `response` took: 1 unless the extension says more.
    pub fn of<B>(response: &Response<B>) -> u32 {
        response.extensions().get::<Attempts>().map_or(1, |a| a.0)
    }
}

/// Request extension: which attempt of a caller's request this is, set by the retry layer on
/// each retry (2 for the first retry) and absent on a first attempt, so that the path nearly
/// every request takes pays for no extension; read it with [`AttemptNumber::of`].
///
/// Why: a layer below the retry layer sees each attempt as a request of its own. One that
/// counts caller requests must not count retries: the [`HedgeLayer`](super::HedgeLayer) earns
/// hedge budget only from a request without it, or retries would earn hedges exactly when a
/// dependency fails.
///
/// ```
/// use stormguard::layer::AttemptNumber;
///
/// let mut request = http::Request::new(());
/// assert_eq!(AttemptNumber::of(&request), 1);
/// request.extensions_mut().insert(AttemptNumber(2));
/// assert_eq!(AttemptNumber::of(&request), 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptNumber(pub u32);

impl AttemptNumber {
    /// The attempt `request` is: 1 unless the extension says more.
    pub fn of<B>(request: &Request<B>) -> u32 {
        request
            .extensions()
            .get::<AttemptNumber>()
            .map_or(1, |n| n.0)
    }
}

/// The state a [`RetryLayer`] shares with every service it makes.
#[derive(Clone)]
pub(crate) struct Shared<O> {
    pub(crate) policy: RetryPolicy,
    pub(crate) observer: O,
    pub(crate) target: Arc<str>,
    pub(crate) estimator: Option<Arc<LatencyEstimator>>,
    pub(crate) body_limit: usize,
    pub(crate) seed: u64,
    /// Shared by every layer derived from one another, so they draw different jitter.
    pub(crate) counter: Arc<AtomicU64>,
    /// The budget header value of the per-try timeout, made once.
    pub(crate) per_try_budget: http::HeaderValue,
}

impl<O> Shared<O> {
    /// A jitter generator for one request: seeded from the layer's seed and a counter, so a run
    /// is reproducible from its seed and no lock is taken on the request path.
    fn rng(&self) -> JitterRng {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        JitterRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

/// A service that retries requests to its inner service as a [`RetryPolicy`] says.
///
/// Made by [`RetryLayer`]. For each request it:
/// 1. works out the deadline (a [`Deadline`] request extension, else the incoming budget headers,
///    capped by the policy's overall timeout) and answers at once with [`ErrorKind::Deadline`]
///    when too little is left to expect an answer;
/// 2. streams the body to the first attempt as it arrives, keeping a copy (up to the body limit)
///    so that it can be sent again, unless the policy allows one attempt only;
/// 3. sends each attempt with a per-try timeout cut to the deadline, the decremented budget in
///    `stormguard-budget-ms` when propagation is on, and, from the first retry on, a
///    [`TriedInstances`] extension with the instances the earlier attempts went to (the
///    request's own list on every attempt, if it came with one), so a balancer sends a retry to
///    another instance, even after an attempt the per-try timeout dropped unanswered;
/// 4. asks [`RetryPolicy::decide`] what to do with the outcome, sleeps the backoff, and goes on.
///
/// The final response (success, or the last failure status) carries an [`Attempts`] extension.
#[derive(Clone)]
pub struct Retry<S, O> {
    inner: S,
    shared: Arc<Shared<O>>,
}

impl<S, B, RB, O> Service<Request<B>> for Retry<S, O>
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
    type Error = Error;
    type Future = ResponseFuture<S::Future, S, B, RB, O>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::new(ErrorKind::Overloaded, 0, Some(e.into())))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service goes with this request; `self` keeps a fresh clone (tower's rule).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        // One count on the shared state, for the request's context; a count taken for the
        // duration of this call as well cost two more atomic operations on a line every request
        // through the layer writes.
        let shared = &*self.shared;
        // The first attempt is sent from here, and its future is polled without a generator.
        // Nearly every request ends with it. The request head is moved once, into the boxed
        // retry context, and everything else is filled in place: moving that context (some 300
        // bytes) through a few functions, or holding it in the future, which is moved on its way
        // to the caller, cost more than the box.
        let start = clock::now();
        let (parts, body) = req.into_parts();
        let mut rest = Box::new(future::Rest {
            inner,
            at: Attempting::new(self.shared.clone(), parts),
            tried: None,
            resend: Resend::Empty,
            watch: HeldList(None),
        });
        let timeout = match prologue(&mut rest.at, start) {
            Ok(timeout) => timeout,
            Err(e) => return ResponseFuture::ready(Err(e)),
        };
        rest.tried = rest.at.take_tried_instances();
        // No body (nearly every request), or the client's body streamed to this attempt as it
        // arrives, copied only if another attempt may follow.
        let body = if body.is_end_stream() {
            ReplayBody::empty()
        } else {
            with_body(body, shared, &mut rest.resend)
        };
        let request = rest
            .at
            .first_request(body, timeout, start, rest.tried.as_ref());
        shared.observer.observe(&shared.target, Event::Attempt);
        let call = rest.inner.call(request);
        ResponseFuture::first(call, until(start, timeout), rest, start)
    }
}

/// The first attempt's body, and where a later attempt's comes from, for a request with a body:
/// streamed as it arrives, and copied only if another attempt may follow. Out of line, so that
/// the path nearly every request takes (no body) carries none of it.
#[inline(never)]
fn with_body<B, O>(body: B, shared: &Shared<O>, resend: &mut Resend<B>) -> ReplayBody<B>
where
    B: Body,
{
    if shared.policy.max_attempts > 1 {
        let (body, recording) = Recording::start(body, shared.body_limit);
        *resend = Resend::Recorded(recording);
        body
    } else {
        *resend = Resend::Never;
        ReplayBody::once(body)
    }
}

/// The start of a request, before any body is read: the deadline, idempotency, whether there is
/// time for an attempt at all (if not: [`ErrorKind::Deadline`] at once), and the limiter's
/// count (the budget header is written into the first attempt's head, by `first_request`).
/// Fills `at` in place (moving it out and back cost more than the rest of the work here);
/// returns the first attempt's timeout.
fn prologue<O: Observer>(at: &mut Attempting<O>, start: Instant) -> Result<Duration, Error> {
    let shared = &*at.shared;
    let policy = &shared.policy;
    shared.observer.observe(&shared.target, Event::Request);
    let facts = RequestFacts::read(&at.parts, start);
    at.deadline = policy.request_deadline(facts.deadline, start);
    at.idempotent = policy.idempotent.unwrap_or(facts.idempotent);
    at.grpc = facts.grpc;
    at.deadline_headers = facts.budget_headers;
    if policy.propagate_deadline {
        // Each attempt carries its own budget in the headers; an outer deadline left in the
        // extensions would tell inner layers the whole request's time instead.
        if at.deadline.is_some() {
            at.parts.extensions.remove::<Deadline>();
        }
    } else if facts.budget_headers {
        // Not propagating: a budget that arrived would reach the callee unchanged, and stale.
        for name in [
            BUDGET_HEADER,
            GRPC_TIMEOUT_HEADER,
            ENVOY_EXPECTED_TIMEOUT_HEADER,
        ] {
            at.parts.headers.remove(name);
        }
    }
    match at.timeout(start) {
        // Without a deadline any expected latency fits (`should_start_estimated` says so too):
        // the request nearly every caller sends skips the call.
        Some(timeout)
            if at.deadline.is_none()
                || policy.should_start_estimated(
                    at.deadline,
                    start,
                    shared.estimator.as_deref().map(as_quantiles),
                ) =>
        {
            // The request is counted now; its retry state is made only if the first attempt
            // fails (`RetryPolicy::begin` split in two).
            policy.limiter.on_request(start);
            Ok(timeout)
        }
        _ => {
            shared
                .observer
                .observe(&shared.target, Event::DeadlineGiveUp);
            shared
                .observer
                .observe(&shared.target, Event::Failed(GiveUp::Deadline));
            Err(Error::new(ErrorKind::Deadline, 0, None))
        }
    }
}

/// Whether the first attempt, which came back with a response classified as `result`, simply
/// succeeded; if so, the limiter and observer are told.
pub(crate) fn first_succeeded<O: Observer>(
    shared: &Shared<O>,
    result: AttemptResult,
    idempotent: bool,
) -> bool {
    let policy = &shared.policy;
    if policy.classifier.is_success(result, idempotent) {
        policy.limiter.on_success(None);
        shared.observer.observe(&shared.target, Event::Succeeded);
        true
    } else {
        false
    }
}

/// The route's estimator as the policy core reads it.
pub(crate) fn as_quantiles(estimator: &LatencyEstimator) -> &dyn LatencyQuantiles {
    estimator
}

#[cfg(test)]
mod tests;
