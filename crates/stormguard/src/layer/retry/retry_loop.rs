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

/// Decides on an attempt that did not simply succeed, and goes on attempting as the policy says.
///
/// `unsent` holds a body too large to buffer: it goes to another attempt only while no attempt
/// has polled it, and only after an attempt that was not sent (refused, or no connection in
/// time), whatever the method: nothing of it reached a server.
pub(crate) async fn retry_loop<S, B, RB, O>(
    mut inner: S,
    at: Attempting<O>,
    first: Tried<RB>,
    unsent: Option<Unsent<B>>,
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
        mut tried,
        mut result,
        mut outcome,
    } = first;
    let mut rng = shared.rng();
    // Attempts sent, as each outcome tells them: a hedged attempt's answer says two.
    let mut sent = sent_by(&outcome);
    loop {
        let now = clock::now();
        // The body of the next attempt, if one can be made: a buffered copy, or a body that
        // streams once, taken back when nothing of it was sent.
        let mut next_body = match &at.buffered {
            Some(buffered) => Some(buffered.replay()),
            None if result.is_not_sent() => unsent.as_ref().and_then(Unsent::hand_on),
            None => None,
        };
        let decision = if next_body.is_none() {
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
            policy.decide_estimated(
                &mut state,
                result,
                at.idempotent,
                at.deadline,
                now,
                shared.estimator.as_deref().map(as_quantiles),
                &mut rng,
            )
        };
        match decision {
            Decision::Success => {
                observer.observe(target, Event::Succeeded);
                return finish(outcome, total(sent, tried.as_ref()), result, None);
            }
            Decision::GiveUp(give_up) => {
                match give_up {
                    GiveUp::Denied(by, _) => observer.observe(target, Event::RetryDenied(by)),
                    GiveUp::Deadline => observer.observe(target, Event::DeadlineGiveUp),
                    _ => {}
                }
                observer.observe(target, Event::Failed(give_up));
                return finish(outcome, total(sent, tried.as_ref()), result, Some(give_up));
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
                    return Err(Error::new(
                        ErrorKind::Deadline,
                        total(sent, Some(&*tried)),
                        None,
                    ));
                };
                // Counted when sent, so that the retries metric is retries sent.
                observer.observe(target, Event::Retry(kind));
                let body = next_body.take().expect("decided on with a body to send");
                let mut request = at.request(body, timeout, now, Some(tried));
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
/// flight when the per-try timeout dropped both.
fn total(sent: u32, tried: Option<&TriedInstances>) -> u32 {
    tried.map_or(sent, |tried| sent.max(tried.attempts()))
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
