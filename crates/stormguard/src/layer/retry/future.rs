//! [`ResponseFuture`]: the first attempt polled in place; retries in a boxed loop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{first_succeeded, retry_loop, settle, settle_response, Attempting, Resend, Tried};
use crate::layer::balance::{HeldList, TriedInstances};
use crate::layer::body::ReplayBody;
use crate::layer::error::{BoxError, Error};
use crate::layer::retry::Attempts;
use crate::metrics::Observer;

type Boxed<RB> = Pin<Box<dyn Future<Output = Result<Response<RB>, Error>> + Send>>;

/// What the retry loop needs, kept while the first attempt is in flight.
pub(crate) struct Rest<S, O, B> {
    pub(crate) inner: S,
    pub(crate) at: Attempting<O>,
    pub(crate) tried: Option<TriedInstances>,
    /// Where a later attempt's body comes from.
    pub(crate) resend: Resend<B>,
    /// The list the first attempt is polled under once it has waited (see
    /// [`ResponseFuture`]'s `poll`); reported to an outer watch if dropped with it.
    pub(crate) watch: HeldList,
}

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    ///
    /// The first attempt is polled in place: no generator, one clock read, and the layer costs
    /// little more than the clone of the request head that a retry needs (and, for a request
    /// with a body, the copy kept for a retry). A failure continues in a boxed async loop,
    /// where the cost of a retry (a backoff of milliseconds) dwarfs a box.
    pub struct ResponseFuture<F, S, B, RB, O> {
        #[pin]
        state: State<F, S, B, RB, O>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B, RB, O> {
        First {
            #[pin]
            call: F,
            #[pin]
            timer: Timer,
            rest: Option<Box<Rest<S, O, B>>>,
            sent: Instant,
        },
        Boxed { future: Boxed<RB> },
        Ready { result: Option<Result<Response<RB>, Error>> },
    }
}

pin_project! {
    /// The first attempt's timeout: armed (a tokio `Sleep`, which takes the runtime's handle and
    /// a timer entry) only once the attempt has to wait, so that an attempt answered at once
    /// (a cache, a shed request, an in-process service) pays for no timer. The deadline is an
    /// instant, so a timer armed later fires when one armed at the start would have; and, as
    /// tokio's `Timeout`, the attempt is polled before the timer, so an answer that is ready
    /// wins.
    #[project = TimerProj]
    enum Timer {
        Unarmed { deadline: tokio::time::Instant },
        Armed {
            #[pin]
            sleep: tokio::time::Sleep,
        },
    }
}

impl Timer {
    /// Whether the deadline has passed, asked after the attempt returned `Pending`: arms the
    /// timer first if need be, and registers the task to be woken at the deadline otherwise.
    ///
    /// `had_budget` is whether the task had coop budget before the attempt was polled. As in
    /// tokio's `Timeout`, when the attempt spent the last of it the timer is polled
    /// unconstrained: else an attempt that always spends the budget (a fast upload) would keep
    /// its timeout from ever firing.
    fn poll_expired(mut self: Pin<&mut Self>, had_budget: bool, cx: &mut Context<'_>) -> bool {
        use tokio::task::coop;
        let has_budget = coop::has_budget_remaining();
        if let TimerProj::Unarmed { deadline } = self.as_mut().project() {
            let deadline = *deadline;
            self.set(Timer::Armed {
                sleep: tokio::time::sleep_until(deadline),
            });
        }
        let TimerProj::Armed { sleep } = self.project() else {
            unreachable!("armed above")
        };
        if had_budget && !has_budget {
            std::pin::pin!(coop::unconstrained(sleep))
                .poll(cx)
                .is_ready()
        } else {
            sleep.poll(cx).is_ready()
        }
    }
}

impl<F, S, B, RB, O> ResponseFuture<F, S, B, RB, O> {
    pub(crate) fn first(
        call: F,
        deadline: tokio::time::Instant,
        rest: Box<Rest<S, O, B>>,
        sent: Instant,
    ) -> Self {
        ResponseFuture {
            state: State::First {
                call,
                timer: Timer::Unarmed { deadline },
                rest: Some(rest),
                sent,
            },
        }
    }

    pub(crate) fn ready(result: Result<Response<RB>, Error>) -> Self {
        ResponseFuture {
            state: State::Ready {
                result: Some(result),
            },
        }
    }
}

impl<F, S, B, RB, O, E> Future for ResponseFuture<F, S, B, RB, O>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>, Error = E, Future = F>
        + Send
        + 'static,
    F: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Send + 'static,
    O: Observer,
{
    type Output = Result<Response<RB>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::First {
                    mut call,
                    timer,
                    rest,
                    sent,
                } => {
                    let had_budget = tokio::task::coop::has_budget_remaining();
                    // Once the attempt has waited, it is polled under a watch: a layer below
                    // that ends it with its own error (a timeout layer) drops the balancer's
                    // call as it answers, and that call names its instance only to a watch.
                    // An attempt answered at once (nearly every one) pays for none.
                    let scope = rest.as_mut().and_then(|r| r.watch.lend());
                    let polled = call.as_mut().poll(cx);
                    let output = match polled {
                        Poll::Ready(output) => Some(output),
                        Poll::Pending if timer.poll_expired(had_budget, cx) => None,
                        Poll::Pending => {
                            drop(scope);
                            if let Some(rest) = rest.as_mut() {
                                if rest.watch.0.is_none() && rest.tried.is_none() {
                                    rest.watch.0 = Some(TriedInstances::pooled());
                                }
                            }
                            return Poll::Pending;
                        }
                    };
                    drop(scope);
                    let mut rest = rest.take().expect("polled after completion");
                    let watched = rest.watch.0.take();
                    let shared = &rest.at.shared;
                    // A response (nearly always a success) is settled by reference and handed
                    // on as it is; only a failure becomes an `Outcome` for the retry loop.
                    let (result, outcome) = match output {
                        Some(Ok(response)) => {
                            let result = settle_response(shared, &response, *sent);
                            if first_succeeded(shared, result, rest.at.idempotent) {
                                if let Some(tried) = rest.tried.take() {
                                    tried.recycle();
                                }
                                if let Some(watched) = watched {
                                    watched.recycle();
                                }
                                return Poll::Ready(Ok(response));
                            }
                            (result, Ok(response))
                        }
                        other => settle(shared, other.map(|r| r.map_err(Into::into)), *sent),
                    };
                    let Rest {
                        inner,
                        at,
                        mut tried,
                        resend,
                        watch: _,
                    } = *rest;
                    // An attempt the per-try timeout ended names no instance, nor does one a
                    // layer below ended with its own error while the call went on inside it:
                    // the call, dropped with this state, tells a list that watches, which the
                    // retries carry (the one it was polled under, if it waited).
                    let watch = match (watched, &outcome) {
                        (Some(list), _) => Some(list),
                        (None, Err(_)) if tried.is_none() => Some(TriedInstances::pooled()),
                        (None, _) => None,
                    };
                    if let Some(list) = &watch {
                        tried = Some(list.clone());
                    }
                    let copies = outcome.as_ref().map_or(1, Attempts::of);
                    let first = Tried {
                        state: at.shared.policy.first_attempt_state(),
                        tried,
                        result,
                        outcome,
                    };
                    let future: Boxed<RB> =
                        Box::pin(retry_loop::<S, B, RB, O>(inner, at, first, resend));
                    if let Some(list) = watch {
                        list.watching(|| this.state.set(State::Boxed { future }));
                        // What was reported counts the attempt's copies; nothing was if no
                        // balancer was below, or if it answered: then its answer says.
                        if list.attempts() == 0 {
                            list.add_sent(copies);
                        }
                        continue;
                    }
                    State::Boxed { future }
                }
                StateProj::Boxed { future } => return future.as_mut().poll(cx),
                StateProj::Ready { result } => {
                    return Poll::Ready(result.take().expect("polled after completion"))
                }
            };
            this.state.set(next);
        }
    }
}
