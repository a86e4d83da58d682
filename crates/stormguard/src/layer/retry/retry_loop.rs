//! The retry loop: what follows an attempt that did not simply succeed.

use super::*;

/// What the first attempt left for the retry loop: the policy's state, the instances list, and
/// what the attempt came to.
pub(crate) struct Tried<RB> {
    pub(crate) state: RetryState,
    pub(crate) tried: Option<TriedInstances>,
    pub(crate) result: AttemptResult,
    pub(crate) outcome: Outcome<RB>,
}

/// Where the body of a later attempt comes from.
pub(crate) enum Resend<B> {
    /// An empty body, which every attempt sends.
    Empty,
    /// The client's body as it was recorded: the copy replayed, then the rest from the client,
    /// while the copy is within the limit; a body too large to copy only while no attempt has
    /// polled it, and only after an attempt that was not sent (refused, or no connection in
    /// time), whatever the method: nothing of it reached a server.
    Recorded(Recording<B>),
    /// A body streamed once (one attempt allowed): never sent again.
    Never,
}

impl<B: Body> Resend<B> {
    /// Whether another attempt could be given the body after an attempt that came to `result`.
    fn possible(&self, result: AttemptResult) -> bool {
        match self {
            Resend::Empty => true,
            Resend::Recorded(recording) => recording.can_hand_on(result.is_not_sent()),
            Resend::Never => false,
        }
    }

    /// The body of the next attempt, which from now on alone reads the client's body; `None`
    /// if the copy was dropped since [`Resend::possible`] said yes (the earlier attempt's body,
    /// still being written, passed the limit).
    fn hand_on(&self, result: AttemptResult) -> Option<ReplayBody<B>> {
        match self {
            Resend::Empty => Some(ReplayBody::empty()),
            Resend::Recorded(recording) => recording.hand_on(result.is_not_sent()),
            Resend::Never => None,
        }
    }
}

/// What the policy decides on an outcome when no further attempt can be sent: final either way.
fn without_resend(policy: &RetryPolicy, result: AttemptResult, idempotent: bool) -> Decision {
    match policy.classifier.classify(result, idempotent, None) {
        Class::Success => {
            policy.limiter.on_success(None);
            Decision::Success
        }
        Class::Final(reason) => Decision::GiveUp(GiveUp::Final(reason)),
        Class::Retryable { kind, .. } => Decision::GiveUp(GiveUp::AttemptsExhausted(kind)),
    }
}

/// Decides on an attempt that did not simply succeed, and goes on attempting as the policy says.
///
/// `resend` makes each later attempt's body (see [`Resend`]). The body is handed on only once
/// a retry is decided: until then the earlier attempt keeps it, and an answer returned to the
/// caller keeps a body that is still streaming.
pub(crate) async fn retry_loop<S, B, RB, O>(
    mut inner: S,
    at: Attempting<O>,
    first: Tried<RB>,
    resend: Resend<B>,
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
    let Tried {
        mut state,
        tried,
        mut result,
        mut outcome,
    } = first;
    // Reported to a list watching the drop if the loop is dropped before it ends (an outer
    // layer's timeout): its instances and attempts would be lost with it.
    let mut tried = HeldList(tried);
    let mut rng = shared.rng();
    // Attempts sent, as each outcome tells them: a hedged attempt's answer says two.
    let mut sent = sent_by(&outcome);
    loop {
        let now = clock::now();
        let decision = if resend.possible(result) {
            policy.decide_estimated(
                &mut state,
                result,
                at.idempotent,
                at.deadline,
                now,
                shared.estimator.as_deref().map(as_quantiles),
                &mut rng,
            )
        } else {
            // A body that cannot be sent again: the outcome is final either way.
            without_resend(policy, result, at.idempotent)
        };
        // The body is handed on now, before the failed outcome is dropped: that attempt is over.
        let mut next_body = None;
        let decision = match decision {
            Decision::Retry { .. } => match resend.hand_on(result) {
                Some(body) => {
                    next_body = Some(body);
                    decision
                }
                // The earlier attempt's body, still being written, passed the limit since:
                // the retry the policy granted (and counted) cannot be sent.
                None => without_resend(policy, result, at.idempotent),
            },
            decision => decision,
        };
        match decision {
            Decision::Success => {
                observer.observe(target, Event::Succeeded);
                return finish(outcome, total(sent, tried.0.take()), result, None);
            }
            Decision::GiveUp(give_up) => {
                match give_up {
                    GiveUp::Denied(by, _) => observer.observe(target, Event::RetryDenied(by)),
                    GiveUp::Deadline => observer.observe(target, Event::DeadlineGiveUp),
                    _ => {}
                }
                observer.observe(target, Event::Failed(give_up));
                return finish(outcome, total(sent, tried.0.take()), result, Some(give_up));
            }
            Decision::Retry { after, kind } => {
                let went_to = match &outcome {
                    Ok(response) => response.extensions().get::<Instance>().map(|i| i.0),
                    Err(Some(e)) => instance_of(&**e),
                    Err(None) => None,
                };
                // A list made now starts with the attempts the outcomes counted, so that the
                // balancer's counts that follow add to them.
                let list = tried.0.get_or_insert_with(|| {
                    let list = TriedInstances::pooled();
                    list.add_sent(sent);
                    list
                });
                // A hedge below that made its own list hands it up with its answer: both
                // copies' instances (the answer names none, its request having a list).
                if let Some(hedged) = outcome
                    .as_ref()
                    .ok()
                    .and_then(|response| response.extensions().get::<TriedInstances>())
                {
                    for instance in hedged.to_vec() {
                        list.record(instance);
                    }
                }
                if let Some(instance) = went_to {
                    list.record(instance);
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
                    let attempts = total(sent, tried.0.take());
                    return Err(Error::new(ErrorKind::Deadline, attempts, None));
                };
                // Counted when sent, so that the retries metric is retries sent.
                observer.observe(target, Event::Retry(kind));
                let body = next_body.take().expect("decided on with a body to send");
                let mut request = at.request(body, timeout, now, Some(list));
                request
                    .extensions_mut()
                    .insert(AttemptNumber(state.attempts()));
                (result, outcome) = attempt(&mut inner, &at, request, now, timeout).await;
                sent += sent_by(&outcome);
            }
        }
    }
}

/// Attempts one attempt's outcome says were sent: 1, or what a layer below reported (a hedged
/// attempt's answer says 2). An attempt that timed out or failed says nothing more.
fn sent_by<RB>(outcome: &Outcome<RB>) -> u32 {
    outcome.as_ref().map_or(1, Attempts::of)
}

/// Attempts sent for the request: what the outcomes said, or what a balancer counted in its
/// [`TriedInstances`] if more. The count survives what outcomes cannot tell: a hedge's copy in
/// flight when the per-try timeout dropped both. The list, read for the last time, goes back
/// to the pool if nobody else holds it.
fn total(sent: u32, tried: Option<TriedInstances>) -> u32 {
    tried.map_or(sent, |tried| {
        let attempts = sent.max(tried.attempts());
        tried.recycle();
        attempts
    })
}

pub(super) fn finish<RB>(
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
