//! [`Retry`]: sends a request, and again when the policy says so, within its deadline.

mod future;
mod layer;

pub use self::future::ResponseFuture;
pub use self::layer::RetryLayer;

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

use super::balance::{instance_of, Instance, TriedInstances};
use super::body::{prepare, Buffered, Prepared, ReplayBody, Wait};
use super::clock;
use super::error::{classify_error, BoxError, Error, ErrorKind, NotSent};
use crate::backoff::JitterRng;
use crate::classify::{
    grpc_status_as_http, is_idempotent_method, parse_grpc_pushback, parse_retry_after,
    AttemptResult, Class, IDEMPOTENCY_KEY,
};
use crate::deadline::{
    budget_of, budget_value, write_budget, write_budget_value, Deadline, BUDGET_HEADER,
    ENVOY_EXPECTED_TIMEOUT_HEADER, GRPC_TIMEOUT_HEADER,
};
use crate::estimate::LatencyEstimator;
use crate::metrics::{Event, Observer, TimeoutKind};
use crate::policy::{Decision, GiveUp, RetryPolicy, RetryState};

/// Response extension: how many attempts the request took, when more than one.
///
/// Absent when the first attempt answered, so that the path nearly every request takes pays for
/// no extension; read it with [`Attempts::of`].
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

/// The state a [`RetryLayer`] shares with every service it makes.
pub(crate) struct Shared<O> {
    pub(crate) policy: RetryPolicy,
    pub(crate) observer: O,
    pub(crate) target: Arc<str>,
    pub(crate) estimator: Option<Arc<LatencyEstimator>>,
    pub(crate) body_limit: usize,
    pub(crate) seed: u64,
    /// Shared by every layer derived from one another, so they draw different jitter.
    pub(crate) counter: Arc<AtomicU64>,
    /// Set once a response or error said which instance it came from (a [`Balance`] is below):
    /// from then on, requests carry [`TriedInstances`] from their first attempt.
    ///
    /// [`Balance`]: super::Balance
    pub(crate) balanced: std::sync::atomic::AtomicBool,
    /// The budget header value of the per-try timeout, made once.
    pub(crate) per_try_budget: http::HeaderValue,
}

impl<O: Clone> Clone for Shared<O> {
    fn clone(&self) -> Self {
        Shared {
            policy: self.policy.clone(),
            observer: self.observer.clone(),
            target: self.target.clone(),
            estimator: self.estimator.clone(),
            body_limit: self.body_limit,
            seed: self.seed,
            counter: self.counter.clone(),
            balanced: std::sync::atomic::AtomicBool::new(self.balanced.load(Ordering::Relaxed)),
            per_try_budget: self.per_try_budget.clone(),
        }
    }
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
/// 2. buffers the body (up to the body limit) so that it can be sent again;
/// 3. sends each attempt with a per-try timeout cut to the deadline, the decremented budget in
///    `stormguard-budget-ms` when propagation is on, and, from the second attempt on, a
///    [`TriedInstances`] extension so a balancer sends it to another instance;
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
        let shared = self.shared.clone();
        if !req.body().is_end_stream() {
            // A body must be read (and buffered) before the first attempt: that takes awaiting.
            return ResponseFuture::boxed(Box::pin(run(inner, shared, req)));
        }
        // No body to read: the first attempt is sent from here, and its future is polled
        // without a generator. Nearly every request ends with it. The request head is moved
        // once, into the boxed retry context, and everything else is filled in place: moving
        // that context (some 500 bytes) through a few functions cost more than the box.
        let start = clock::now();
        let (parts, _empty) = req.into_parts();
        let mut rest = Box::new(future::Rest {
            inner,
            at: Attempting::new(shared.clone(), parts, Some(Buffered::default())),
            state: None,
            tried: None,
        });
        let timeout = match prologue(&mut rest.at, start) {
            Ok((timeout, state)) => {
                rest.state = Some(state);
                timeout
            }
            Err(e) => return ResponseFuture::ready(Err(e)),
        };
        rest.tried = rest.at.tried_instances();
        let request = rest.at.request(
            Buffered::default().replay(),
            timeout,
            start,
            rest.tried.as_ref(),
        );
        shared.observer.observe(&shared.target, Event::Attempt);
        let call = rest.inner.call(request);
        ResponseFuture::first(
            tokio::time::timeout_at(until(start, timeout), call),
            rest,
            start,
        )
    }
}

/// What the retry layer needs to know of a request head, read in one pass over its headers.
struct RequestFacts {
    deadline: Option<Deadline>,
    idempotent: bool,
    grpc: bool,
    /// Whether a deadline header (well-formed or not) came with the request.
    budget_headers: bool,
}

impl RequestFacts {
    fn read(parts: &http::request::Parts, now: Instant) -> Self {
        // A deadline set by an outer layer wins over the headers, whose values then need no
        // parsing (the outer layer wrote them from that deadline).
        let outer = parts.extensions.get::<Deadline>().copied();
        let mut budget: Option<Duration> = None;
        let mut keyed = false;
        let mut grpc = false;
        let mut budget_headers = false;
        for (name, value) in &parts.headers {
            if *name == http::header::CONTENT_TYPE {
                grpc = value.as_bytes().starts_with(b"application/grpc");
            } else if *name == IDEMPOTENCY_KEY {
                keyed = true;
            } else if outer.is_some() {
                budget_headers |= is_budget_header(name);
            } else if let Some(parsed) = budget_of(name, value) {
                budget_headers = true;
                match parsed {
                    Ok(b) => budget = Some(budget.map_or(b, |s| s.min(b))),
                    Err(error) => tracing::debug!(%error, "ignoring a malformed deadline header"),
                }
            }
        }
        let deadline = outer.or_else(|| budget.map(|b| Deadline::after(now, b)));
        RequestFacts {
            deadline,
            idempotent: keyed || is_idempotent_method(&parts.method),
            grpc,
            budget_headers,
        }
    }
}

/// Whether `name` is one of the deadline headers [`budget_of`] reads.
fn is_budget_header(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        BUDGET_HEADER | GRPC_TIMEOUT_HEADER | ENVOY_EXPECTED_TIMEOUT_HEADER
    )
}

/// The deadline a request carries: an extension set by an outer layer, else its budget headers.
pub(crate) fn incoming_deadline(
    extensions: &http::Extensions,
    headers: &HeaderMap,
    now: Instant,
) -> Option<Deadline> {
    if let Some(deadline) = extensions.get::<Deadline>() {
        return Some(*deadline);
    }
    // The smallest of the well-formed budgets: one malformed header must not drop the deadline
    // the others carry, or the callee would work on for a caller that is gone.
    let mut budget: Option<Duration> = None;
    for (name, value) in headers {
        match budget_of(name, value) {
            Some(Ok(b)) => budget = Some(budget.map_or(b, |s| s.min(b))),
            Some(Err(error)) => tracing::debug!(%error, "ignoring a malformed deadline header"),
            None => {}
        }
    }
    budget.map(|b| Deadline::after(now, b))
}

/// `start + timeout` as a tokio instant, saturating instead of overflowing: a per-try timeout
/// of `Duration::MAX` means "none".
pub(crate) fn until(start: Instant, timeout: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(Deadline::after(start, timeout).instant())
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

pub(crate) fn response_result<RB>(response: &Response<RB>) -> AttemptResult {
    let mut status = response.status().as_u16();
    let headers = response.headers();
    if status == 200 {
        // A gRPC failure before any message is a "trailers-only" response: HTTP 200 with the
        // grpc-status in its headers. Classified as the HTTP status it stands for.
        if let Some(code) = headers
            .get(GRPC_STATUS)
            .and_then(|v| v.to_str().ok()?.parse().ok())
        {
            status = grpc_status_as_http(code);
            if status != 200 {
                let pushback = parse_grpc_pushback(headers.get(GRPC_RETRY_PUSHBACK));
                return AttemptResult::Response {
                    status,
                    retry_after: pushback,
                };
            }
        }
    }
    let retry_after = if status == 429 || status == 503 {
        headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::UNIX_EPOCH + wall_offset()))
    } else {
        None
    };
    AttemptResult::Response {
        status,
        retry_after,
    }
}

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
const GRPC_RETRY_PUSHBACK: http::HeaderName =
    http::HeaderName::from_static("grpc-retry-pushback-ms");

/// Wall-clock time for HTTP dates in `Retry-After`. The one place the layers read the wall
/// clock: an HTTP date cannot be read against anything else.
fn wall_offset() -> Duration {
    #[allow(clippy::disallowed_methods)]
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// What every attempt of one request shares.
pub(crate) struct Attempting<O> {
    shared: Arc<Shared<O>>,
    parts: http::request::Parts,
    buffered: Option<Buffered>,
    deadline: Option<Deadline>,
    idempotent: bool,
    grpc: bool,
    /// The budget already in `parts.headers`, if any.
    written_budget: Option<Duration>,
}

impl<O: Observer> Attempting<O> {
    /// A context for `parts`, to be filled in by the prologue.
    fn new(
        shared: Arc<Shared<O>>,
        parts: http::request::Parts,
        buffered: Option<Buffered>,
    ) -> Self {
        Attempting {
            shared,
            parts,
            buffered,
            deadline: None,
            idempotent: false,
            grpc: false,
            written_budget: None,
        }
    }

    /// The instances list the attempts share: the one the request came with, else a new one for
    /// a request whose retry may follow a timeout (the only outcome that does not say which
    /// instance it came from), once a balancer below has shown itself. Other requests learn the
    /// instance from the response or error, for free; without a balancer, nothing is attached.
    fn tried_instances(&self) -> Option<TriedInstances> {
        let carried = self.parts.extensions.get::<TriedInstances>().cloned();
        let shared = &self.shared;
        let needed = self.idempotent
            && shared.policy.max_attempts > 1
            && shared.balanced.load(Ordering::Relaxed);
        carried.or_else(|| needed.then(TriedInstances::default))
    }

    /// The expected latency of an attempt: the estimator's p50 when it has one.
    fn expected(&self, now: Instant) -> Duration {
        let policy = &self.shared.policy;
        self.shared
            .estimator
            .as_ref()
            .and_then(|e| e.quantile(now, 0.5))
            .unwrap_or(policy.expected_latency)
    }

    /// The timeout of an attempt starting at `now`; `None` when no time is left.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        let policy = &self.shared.policy;
        let adaptive = policy
            .adaptive_timeout
            .zip(self.shared.estimator.as_ref())
            .map(|(a, e)| a.timeout(e, now));
        policy.attempt_timeout(self.deadline, now, adaptive)
    }

    /// The request of one attempt: the head again, the body (replayed), the budget downstream.
    /// Writes the budget of an attempt of `timeout` into the head every attempt is cloned from,
    /// so that an attempt with that timeout (nearly always the first) needs no header work.
    fn write_budget(&mut self, timeout: Duration) {
        let shared = &self.shared;
        if !shared.policy.propagate_deadline {
            return;
        }
        let value = if timeout == shared.policy.deadline.per_try_timeout {
            // The common case: the per-try timeout, whose header value is made once.
            shared.per_try_budget.clone()
        } else {
            budget_value(timeout)
        };
        write_budget_value(&mut self.parts.headers, timeout, value, self.grpc);
        self.written_budget = Some(timeout);
    }

    /// The request of one attempt: the head again, the body (replayed), the budget downstream.
    fn request<B>(
        &self,
        body: ReplayBody<B>,
        timeout: Duration,
        now: Instant,
        tried: Option<&TriedInstances>,
    ) -> Request<ReplayBody<B>> {
        let mut attempt = Request::from_parts(self.parts.clone(), body);
        if self.shared.policy.propagate_deadline {
            if self.written_budget != Some(timeout) {
                write_budget(attempt.headers_mut(), timeout, self.grpc);
            }
        } else if self.deadline.is_some() {
            // Without the header, an inner layer learns the deadline from the extension.
            attempt
                .extensions_mut()
                .insert(Deadline::after(now, timeout));
        }
        if let Some(tried) = tried {
            attempt.extensions_mut().insert(tried.clone());
        }
        attempt
    }
}

/// One attempt's outcome: the response, or the error (`None` for our own per-try timeout).
pub(crate) type Outcome<RB> = Result<Response<RB>, Option<BoxError>>;

/// Sends one attempt with its timeout and classifies what came back.
async fn attempt<S, B, RB, O>(
    inner: &mut S,
    at: &Attempting<O>,
    request: Request<ReplayBody<B>>,
    sent: Instant,
    timeout: Duration,
) -> (AttemptResult, Outcome<RB>)
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    O: Observer,
{
    let shared = &*at.shared;
    shared.observer.observe(&shared.target, Event::Attempt);
    // Waiting for the service to be ready counts against the attempt's time, and an error there
    // means the request was never sent.
    let outcome = tokio::time::timeout_at(until(sent, timeout), async {
        poll_fn(|cx| inner.poll_ready(cx))
            .await
            .map_err(|e| Box::new(NotSent::new(e)) as BoxError)?;
        inner.call(request).await.map_err(Into::into)
    })
    .await;
    settle(shared, outcome, sent)
}

/// Classifies what one attempt came to, records its latency, and counts its timeouts.
pub(crate) fn settle<RB, O: Observer>(
    shared: &Shared<O>,
    outcome: Result<Result<Response<RB>, BoxError>, tokio::time::error::Elapsed>,
    sent: Instant,
) -> (AttemptResult, Outcome<RB>) {
    match outcome {
        Ok(Ok(response)) => {
            if response.extensions().get::<Instance>().is_some() {
                shared.balanced.store(true, Ordering::Relaxed);
            }
            if let Some(estimator) = &shared.estimator {
                let now = clock::now();
                estimator.record(now, now.saturating_duration_since(sent));
            }
            (response_result(&response), Ok(response))
        }
        Ok(Err(e)) => {
            if instance_of(&*e).is_some() {
                shared.balanced.store(true, Ordering::Relaxed);
            }
            let result = classify_error(&*e);
            if result == AttemptResult::ConnectTimeout {
                shared
                    .observer
                    .observe(&shared.target, Event::Timeout(TimeoutKind::Connect));
            }
            (result, Err(Some(e)))
        }
        Err(_elapsed) => {
            shared
                .observer
                .observe(&shared.target, Event::Timeout(TimeoutKind::Request));
            (AttemptResult::TimeoutAfterWritten, Err(None))
        }
    }
}

/// The start of a request, before any body is read: the deadline, idempotency, whether there is
/// time for an attempt at all (if not: [`ErrorKind::Deadline`] at once), the budget header, and
/// the limiter's count. Fills `at` in place; returns the first attempt's timeout and the state.
fn prologue<O: Observer>(
    at: &mut Attempting<O>,
    start: Instant,
) -> Result<(Duration, RetryState), Error> {
    let shared = &*at.shared;
    let policy = &shared.policy;
    shared.observer.observe(&shared.target, Event::Request);
    let facts = RequestFacts::read(&at.parts, start);
    at.deadline = policy.request_deadline(facts.deadline, start);
    at.idempotent = policy.idempotent.unwrap_or(facts.idempotent);
    at.grpc = facts.grpc;
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
        Some(timeout) if policy.should_start(at.deadline, start, at.expected(start)) => {
            let state = policy.begin(start);
            at.write_budget(timeout);
            Ok((timeout, state))
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

/// Whether the first attempt simply succeeded; if so, the limiter and observer are told.
pub(crate) fn first_succeeded<RB, O: Observer>(
    shared: &Shared<O>,
    result: AttemptResult,
    outcome: &Outcome<RB>,
    idempotent: bool,
) -> bool {
    let policy = &shared.policy;
    if outcome.is_ok() && policy.classifier.classify(result, idempotent, None) == Class::Success {
        policy.limiter.on_success(None);
        shared.observer.observe(&shared.target, Event::Succeeded);
        true
    } else {
        false
    }
}

async fn run<S, B, RB, O>(
    mut inner: S,
    shared: Arc<Shared<O>>,
    req: Request<B>,
) -> Result<Response<RB>, Error>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Send + 'static,
    O: Observer,
{
    let policy = &shared.policy;
    let start = clock::now();
    let (parts, body) = req.into_parts();
    let mut at = Attempting::new(shared.clone(), parts, None);
    let (_, state) = prologue(&mut at, start)?;
    let tried = at.tried_instances();
    // A gRPC stream may wait for a reply before it sends more: only what is ready is buffered.
    // Any other body is read before the first attempt, within the deadline.
    let wait = if at.grpc {
        Wait::WhileReady
    } else {
        Wait::UntilEnd
    };
    let read = prepare(body, shared.body_limit, wait);
    let read = match at.deadline {
        Some(deadline) => {
            let give_up = deadline
                .instant()
                .checked_sub(policy.deadline.reserve)
                .unwrap_or(start);
            tokio::time::timeout_at(tokio::time::Instant::from_std(give_up), read)
                .await
                .unwrap_or_else(|_| Err(Box::new(Error::new(ErrorKind::Deadline, 0, None))))
        }
        None => read.await,
    };
    let body = match read {
        Ok(Prepared::Replayable(buffered)) => {
            let body = buffered.replay();
            at.buffered = Some(buffered);
            body
        }
        Ok(Prepared::Once(body)) => body,
        Err(e) => {
            let (kind, give_up) = match e.downcast::<Error>() {
                Ok(own) => (own.kind(), GiveUp::Deadline),
                Err(e) => {
                    shared.observer.observe(
                        &shared.target,
                        Event::Failed(GiveUp::Final(crate::classify::FinalReason::Status(400))),
                    );
                    return Err(Error::new(ErrorKind::Body, 0, Some(e)));
                }
            };
            shared
                .observer
                .observe(&shared.target, Event::DeadlineGiveUp);
            shared
                .observer
                .observe(&shared.target, Event::Failed(give_up));
            return Err(Error::new(kind, 0, None));
        }
    };
    // Reading the body took time: the first attempt gets what is left now.
    let start = clock::now();
    let Some(timeout) = at.timeout(start) else {
        shared
            .observer
            .observe(&shared.target, Event::DeadlineGiveUp);
        shared
            .observer
            .observe(&shared.target, Event::Failed(GiveUp::Deadline));
        return Err(Error::new(ErrorKind::Deadline, 0, None));
    };
    at.write_budget(timeout);
    let request = at.request(body, timeout, start, tried.as_ref());
    let (result, outcome) = attempt(&mut inner, &at, request, start, timeout).await;

    if first_succeeded(&shared, result, &outcome, at.idempotent) {
        return outcome.map_err(|_| unreachable!("a success is a response"));
    }
    retry_loop(inner, at, state, tried, result, outcome).await
}

/// Decides on an attempt that did not simply succeed, and goes on attempting as the policy says.
pub(crate) async fn retry_loop<S, B, RB, O>(
    mut inner: S,
    at: Attempting<O>,
    mut state: RetryState,
    mut tried: Option<TriedInstances>,
    mut result: AttemptResult,
    mut outcome: Outcome<RB>,
) -> Result<Response<RB>, Error>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    O: Observer,
{
    let shared = at.shared.clone();
    let policy = &shared.policy;
    let observer = &shared.observer;
    let target = &*shared.target;
    let mut rng = shared.rng();
    loop {
        let now = clock::now();
        let decision = if at.buffered.is_none() {
            // A body that streamed once cannot be sent again: the outcome is final either way.
            match policy.classifier.classify(result, at.idempotent, None) {
                Class::Success => {
                    policy.limiter.on_success(None);
                    Decision::Success
                }
                Class::Final(reason) => Decision::GiveUp(GiveUp::Final(reason)),
                Class::Retryable { kind, .. } => Decision::GiveUp(GiveUp::AttemptsExhausted(kind)),
            }
        } else {
            policy.decide_expecting(
                &mut state,
                result,
                at.idempotent,
                at.deadline,
                now,
                at.expected(now),
                &mut rng,
            )
        };
        match decision {
            Decision::Success => {
                observer.observe(target, Event::Succeeded);
                return finish(outcome, state.attempts(), result, None);
            }
            Decision::GiveUp(give_up) => {
                match give_up {
                    GiveUp::Denied(by, _) => observer.observe(target, Event::RetryDenied(by)),
                    GiveUp::Deadline => observer.observe(target, Event::DeadlineGiveUp),
                    _ => {}
                }
                observer.observe(target, Event::Failed(give_up));
                return finish(outcome, state.attempts(), result, Some(give_up));
            }
            Decision::Retry { after, kind } => {
                let went_to = match &outcome {
                    Ok(response) => response.extensions().get::<Instance>().map(|i| i.0),
                    Err(Some(e)) => instance_of(&**e),
                    Err(None) => None,
                };
                let tried = tried.get_or_insert_with(TriedInstances::default);
                if let Some(instance) = went_to {
                    tried.record(instance);
                }
                // The failed response goes now, not after the backoff: holding it would hold its
                // connection through every backoff. The decision already checked that the retry
                // fits the deadline after `after`; if the sleep overran it, the request ends with
                // a deadline error rather than that response.
                drop(outcome);
                if !after.is_zero() {
                    tokio::time::sleep(after).await;
                }
                let now = clock::now();
                let Some(timeout) = at.timeout(now) else {
                    observer.observe(target, Event::DeadlineGiveUp);
                    observer.observe(target, Event::Failed(GiveUp::Deadline));
                    return Err(Error::new(ErrorKind::Deadline, state.attempts() - 1, None));
                };
                // Counted when sent, so that the retries metric is retries sent.
                observer.observe(target, Event::Retry(kind));
                let body = at
                    .buffered
                    .as_ref()
                    .expect("only buffered bodies retry")
                    .replay();
                let request = at.request(body, timeout, now, Some(tried));
                (result, outcome) = attempt(&mut inner, &at, request, now, timeout).await;
            }
        }
    }
}

fn finish<RB>(
    outcome: Outcome<RB>,
    attempts: u32,
    last: AttemptResult,
    give_up: Option<GiveUp>,
) -> Result<Response<RB>, Error> {
    match outcome {
        Ok(mut response) => {
            if attempts > 1 {
                response.extensions_mut().insert(Attempts(attempts));
            }
            Ok(response)
        }
        Err(source) => {
            let give_up =
                give_up.unwrap_or(GiveUp::AttemptsExhausted(crate::classify::RetryKind::Error));
            Err(Error::gave_up(give_up, last, attempts, source))
        }
    }
}

#[cfg(test)]
mod tests;
