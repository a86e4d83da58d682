//! [`Retry`]: sends a request, and again when the policy says so, within its deadline.

mod layer;

pub use self::layer::RetryLayer;

use std::future::{poll_fn, Future};
use std::pin::Pin;
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
use super::body::{prepare, Prepared, ReplayBody};
use super::clock;
use super::error::{classify_error, BoxError, Error, ErrorKind};
use crate::backoff::JitterRng;
use crate::classify::{is_idempotent, parse_retry_after, AttemptResult};
use crate::deadline::{budget_from_headers, write_budget, Deadline};
use crate::estimate::LatencyEstimator;
use crate::metrics::{Event, Observer, TimeoutKind};
use crate::policy::{Decision, GiveUp, RetryPolicy};

/// Response extension: how many attempts the request took (1 when the first succeeded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempts(pub u32);

/// The state a [`RetryLayer`] shares with every service it makes.
pub(crate) struct Shared<O> {
    pub(crate) policy: RetryPolicy,
    pub(crate) observer: O,
    pub(crate) target: Arc<str>,
    pub(crate) estimator: Option<Arc<LatencyEstimator>>,
    pub(crate) body_limit: usize,
    pub(crate) seed: u64,
    pub(crate) counter: AtomicU64,
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
            counter: AtomicU64::new(self.counter.load(Ordering::Relaxed)),
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
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::new(ErrorKind::Overloaded, 0, Some(e.into())))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service goes with this request; `self` keeps a fresh clone (tower's rule).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(run(inner, self.shared.clone(), req))
    }
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
    match budget_from_headers(headers) {
        Ok(budget) => budget.map(|b| Deadline::after(now, b)),
        Err(error) => {
            tracing::debug!(%error, "ignoring a malformed deadline header");
            None
        }
    }
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

pub(crate) fn response_result<RB>(response: &Response<RB>) -> AttemptResult {
    let status = response.status().as_u16();
    let retry_after = if status == 429 || status == 503 {
        response
            .headers()
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

/// Wall-clock time for HTTP dates in `Retry-After`. The one place the layers read the wall
/// clock: an HTTP date cannot be read against anything else.
fn wall_offset() -> Duration {
    #[allow(clippy::disallowed_methods)]
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

async fn run<S, B, RB, O>(
    mut inner: S,
    shared: Arc<Shared<O>>,
    req: Request<B>,
) -> Result<Response<RB>, Error>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    O: Observer,
{
    let policy = &shared.policy;
    let observer = &shared.observer;
    let target = &*shared.target;
    let start = clock::now();
    observer.observe(target, Event::Request);

    let (parts, body) = req.into_parts();
    let deadline = policy.request_deadline(
        incoming_deadline(&parts.extensions, &parts.headers, start),
        start,
    );
    let idempotent = policy
        .idempotent
        .unwrap_or_else(|| is_idempotent(&parts.method, &parts.headers));
    let expected = |now| {
        shared
            .estimator
            .as_ref()
            .and_then(|e| e.quantile(now, 0.5))
            .unwrap_or(policy.expected_latency)
    };
    if !policy.should_start(deadline, start, expected(start)) {
        observer.observe(target, Event::DeadlineGiveUp);
        observer.observe(target, Event::Failed(GiveUp::Deadline));
        return Err(Error::new(ErrorKind::Deadline, 0, None));
    }
    let mut state = policy.begin(start);
    let (buffered, mut once) = match prepare(body, shared.body_limit).await {
        Ok(Prepared::Replayable(buffered)) => (Some(buffered), None),
        Ok(Prepared::Once(body)) => (None, Some(body)),
        Err(e) => return Err(Error::new(ErrorKind::Body, 0, Some(e))),
    };
    let grpc = is_grpc(&parts.headers);
    let mut tried: Option<TriedInstances> = parts.extensions.get::<TriedInstances>().cloned();
    let mut rng: Option<JitterRng> = None;

    loop {
        let now = clock::now();
        let adaptive = policy
            .adaptive_timeout
            .zip(shared.estimator.as_ref())
            .map(|(a, e)| a.timeout(e, now));
        let Some(timeout) = policy.attempt_timeout(deadline, now, adaptive) else {
            observer.observe(target, Event::DeadlineGiveUp);
            observer.observe(target, Event::Failed(GiveUp::Deadline));
            return Err(Error::new(ErrorKind::Deadline, state.attempts() - 1, None));
        };
        let body = match (&buffered, once.take()) {
            (Some(buffered), _) => buffered.replay(),
            (None, Some(body)) => body,
            (None, None) => unreachable!("a body sent once is never asked for again"),
        };
        let mut attempt = Request::from_parts(parts.clone(), body);
        if policy.propagate_deadline {
            write_budget(attempt.headers_mut(), timeout, grpc);
        }
        if deadline.is_some() || policy.propagate_deadline {
            attempt
                .extensions_mut()
                .insert(Deadline::after(now, timeout));
        }
        if let Some(tried) = &tried {
            attempt.extensions_mut().insert(tried.clone());
        }

        observer.observe(target, Event::Attempt);
        let sent = clock::now();
        let ready: Result<(), BoxError> =
            poll_fn(|cx| inner.poll_ready(cx)).await.map_err(Into::into);
        let outcome = match ready {
            Ok(()) => {
                let call = inner.call(attempt);
                tokio::time::timeout(timeout, async move { call.await.map_err(Into::into) }).await
            }
            Err(e) => Ok(Err(e)),
        };
        let now = clock::now();
        let (result, outcome): (AttemptResult, Result<Response<RB>, Option<BoxError>>) =
            match outcome {
                Ok(Ok(response)) => {
                    if let Some(estimator) = &shared.estimator {
                        estimator.record(now, now.saturating_duration_since(sent));
                    }
                    (response_result(&response), Ok(response))
                }
                Ok(Err(e)) => {
                    let result = classify_error(&*e);
                    if result == AttemptResult::ConnectTimeout {
                        observer.observe(target, Event::Timeout(TimeoutKind::Connect));
                    }
                    (result, Err(Some(e)))
                }
                Err(_elapsed) => {
                    observer.observe(target, Event::Timeout(TimeoutKind::Request));
                    (AttemptResult::TimeoutAfterWritten, Err(None))
                }
            };

        let decision = if buffered.is_none() {
            // A body that streamed once cannot be sent again: the outcome is final either way.
            match policy.classifier.classify(result, idempotent, None) {
                crate::classify::Class::Success => {
                    policy.limiter.on_success(None);
                    Decision::Success
                }
                crate::classify::Class::Final(reason) => Decision::GiveUp(GiveUp::Final(reason)),
                crate::classify::Class::Retryable { kind, .. } => {
                    Decision::GiveUp(GiveUp::AttemptsExhausted(kind))
                }
            }
        } else {
            let rng = rng.get_or_insert_with(|| shared.rng());
            policy.decide_expecting(
                &mut state,
                result,
                idempotent,
                deadline,
                now,
                expected(now),
                rng,
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
                observer.observe(target, Event::Retry(kind));
                let went_to = match &outcome {
                    Ok(response) => response.extensions().get::<Instance>().map(|i| i.0),
                    Err(Some(e)) => instance_of(&**e),
                    Err(None) => None,
                };
                let tried = tried.get_or_insert_with(TriedInstances::default);
                if let Some(instance) = went_to {
                    tried.record(instance);
                }
                drop(outcome);
                if !after.is_zero() {
                    tokio::time::sleep(after).await;
                }
            }
        }
    }
}

fn finish<RB>(
    outcome: Result<Response<RB>, Option<BoxError>>,
    attempts: u32,
    last: AttemptResult,
    give_up: Option<GiveUp>,
) -> Result<Response<RB>, Error> {
    match outcome {
        Ok(mut response) => {
            response.extensions_mut().insert(Attempts(attempts));
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
