//! [`Attempting`]: what every attempt of one request shares, and one attempt sent and settled.

use super::*;

/// What every attempt of one request shares.
pub(crate) struct Attempting<O> {
    pub(super) shared: Arc<Shared<O>>,
    pub(super) parts: http::request::Parts,
    pub(super) deadline: Option<Deadline>,
    pub(super) idempotent: bool,
    pub(super) grpc: bool,
    /// Whether a deadline header came with the request, so that writing the budget need look
    /// for stale ones to remove only then (the prologue has read every header already).
    pub(super) deadline_headers: bool,
}

impl<O: Observer> Attempting<O> {
    /// A context for `parts`, to be filled in by the prologue.
    pub(super) fn new(shared: Arc<Shared<O>>, parts: http::request::Parts) -> Self {
        Attempting {
            shared,
            parts,
            deadline: None,
            idempotent: false,
            grpc: false,
            deadline_headers: true,
        }
    }

    /// The instances list the attempts share: the one the request came with, used as it is;
    /// else none yet. The retry loop makes one when a retry is decided, with the instance the
    /// first attempt went to (its answer names it, or, when the per-try timeout dropped it
    /// unanswered, the balancer below reports it to the list watching the drop:
    /// [`TriedInstances::watching`]), and every later attempt carries it.
    ///
    /// Why not from the first attempt: nearly every request ends with that attempt answered,
    /// and a list in its extensions cost a map made, filled and freed per request (some 700
    /// instructions, a fifth of the layer, callgrind), for a retry that does not come.
    ///
    /// A list that came with the request is taken out of the head the attempts are cloned
    /// from, as each attempt gets it anyway; a map left empty (the list and an outer deadline
    /// taken out of it) is dropped, so that cloning the head allocates no map. With a policy
    /// that sends once, the one attempt takes the head itself
    /// ([`first_request`](Attempting::first_request)): the list stays in it, and the clone
    /// returned here only counts the attempts a balancer sent with it.
    pub(super) fn take_tried_instances(&mut self) -> Option<TriedInstances> {
        if self.parts.extensions.is_empty() {
            // Nearly every request: no list came with it. A map made but empty is dropped
            // all the same, so that no clone of the head allocates one.
            self.parts.extensions = http::Extensions::new();
            return None;
        }
        if self.shared.policy.max_attempts <= 1 {
            return self.parts.extensions.get::<TriedInstances>().cloned();
        }
        let carried = self.parts.extensions.remove::<TriedInstances>();
        if self.parts.extensions.is_empty() {
            self.parts.extensions = http::Extensions::new();
        }
        carried
    }

    /// The timeout of an attempt starting at `now`; `None` when no time is left.
    pub(super) fn timeout(&self, now: Instant) -> Option<Duration> {
        let policy = &self.shared.policy;
        if self.deadline.is_none() && policy.adaptive_timeout.is_none() {
            // What `attempt_timeout` answers without a deadline or an adaptive timeout, for the
            // request nearly every caller sends, without the call.
            return Some(policy.deadline.per_try_timeout);
        }
        let adaptive = policy
            .adaptive_timeout
            .zip(self.shared.estimator.as_ref())
            .map(|(a, e)| a.timeout(e, now));
        policy.attempt_timeout(self.deadline, now, adaptive)
    }

    /// The request of the first attempt.
    ///
    /// With a policy that sends once, the head itself, moved out rather than cloned: no attempt
    /// follows to need it (the policy decides no retry once `max_attempts` were sent), and the
    /// clone of its headers, URI and extensions was most of what the layer cost such a route.
    ///
    /// Otherwise a copy of the head, made before the attempt's budget and list are written, but
    /// with the caller's header map, which the kept head exchanges for the copy of it: the
    /// budget header then goes into a map with room for it (a cloned map has none, and grew to
    /// take it), and the head kept for a retry carries one header less to clone and to drop
    /// (a retry writes its own budget).
    pub(super) fn first_request<B>(
        &mut self,
        body: ReplayBody<B>,
        timeout: Duration,
        now: Instant,
        tried: Option<&TriedInstances>,
    ) -> Request<ReplayBody<B>> {
        if self.shared.policy.max_attempts <= 1 {
            let mut head = std::mem::replace(&mut self.parts, Request::new(()).into_parts().0);
            // A list that came with the request is in the head already
            // (`take_tried_instances`).
            self.finish(&mut head, timeout, now, None);
            return Request::from_parts(head, body);
        }
        let mut head = self.parts.clone();
        if self.shared.policy.propagate_deadline {
            std::mem::swap(&mut head.headers, &mut self.parts.headers);
        }
        self.finish(&mut head, timeout, now, tried);
        Request::from_parts(head, body)
    }

    /// The request of one attempt: the head again, the body (replayed), the budget downstream.
    pub(super) fn request<B>(
        &self,
        body: ReplayBody<B>,
        timeout: Duration,
        now: Instant,
        tried: Option<&TriedInstances>,
    ) -> Request<ReplayBody<B>> {
        let mut head = self.parts.clone();
        self.finish(&mut head, timeout, now, tried);
        Request::from_parts(head, body)
    }

    /// An attempt's head made from the one kept: its budget (or deadline) and its list. On the
    /// head, before the body joins it, so that the request is put together once and not moved
    /// in and out of here.
    fn finish(
        &self,
        head: &mut http::request::Parts,
        timeout: Duration,
        now: Instant,
        tried: Option<&TriedInstances>,
    ) {
        let shared = &self.shared;
        if shared.policy.propagate_deadline {
            let value = if timeout == shared.policy.deadline.per_try_timeout {
                // The common case: the per-try timeout, whose header value is made once.
                shared.per_try_budget.clone()
            } else {
                budget_value(timeout)
            };
            // The kept head has every header the request came with (none of the attempts'),
            // so stale deadline headers are looked for only if the prologue saw one.
            insert_budget_value(
                &mut head.headers,
                timeout,
                value,
                self.grpc,
                self.deadline_headers,
            );
        } else if self.deadline.is_some() {
            // Without the header, an inner layer learns the deadline from the extension.
            head.extensions.insert(Deadline::after(now, timeout));
        }
        if let Some(tried) = tried {
            head.extensions.insert(tried.clone());
        }
    }
}

/// One attempt's outcome: the response, or the error (`None` for our own per-try timeout).
pub(crate) type Outcome<RB> = Result<Response<RB>, Option<BoxError>>;

/// Sends one attempt with its timeout and classifies what came back.
pub(super) async fn attempt<S, B, RB, O>(
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
    .await
    .ok();
    settle(shared, outcome, sent)
}

/// [`settle`] for an attempt that came back with a response: records the latency and
/// classifies the response. Apart, so that the first attempt's future can
/// settle a response without moving it in and out of an [`Outcome`].
pub(crate) fn settle_response<RB, O>(
    shared: &Shared<O>,
    response: &Response<RB>,
    sent: Instant,
) -> AttemptResult {
    if let Some(estimator) = &shared.estimator {
        let now = clock::now();
        estimator.record(now, now.saturating_duration_since(sent));
    }
    response_result(response)
}

/// Classifies what one attempt came to, records its latency, and counts its timeouts.
pub(crate) fn settle<RB, O: Observer>(
    shared: &Shared<O>,
    outcome: Option<Result<Response<RB>, BoxError>>,
    sent: Instant,
) -> (AttemptResult, Outcome<RB>) {
    match outcome {
        Some(Ok(response)) => (settle_response(shared, &response, sent), Ok(response)),
        Some(Err(e)) => {
            let result = classify_error(&*e);
            if result == AttemptResult::ConnectTimeout {
                shared
                    .observer
                    .observe(&shared.target, Event::Timeout(TimeoutKind::Connect));
            }
            (result, Err(Some(e)))
        }
        None => {
            shared
                .observer
                .observe(&shared.target, Event::Timeout(TimeoutKind::Request));
            (AttemptResult::TimeoutAfterWritten, Err(None))
        }
    }
}
