//! [`ResponseFuture`]: the first attempt polled in place; retries in a boxed loop.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{first_succeeded, retry_loop, settle, settle_response, Attempting, Resend, Tried};
use crate::layer::balance::TriedInstances;
use crate::layer::body::ReplayBody;
use crate::layer::error::{BoxError, Error};
use crate::metrics::Observer;
use crate::policy::RetryState;

type Boxed<RB> = Pin<Box<dyn Future<Output = Result<Response<RB>, Error>> + Send>>;

/// What the retry loop needs, kept while the first attempt is in flight.
pub(crate) struct Rest<S, O, B> {
    pub(crate) inner: S,
    pub(crate) at: Attempting<O>,
    pub(crate) state: Option<RetryState>,
    pub(crate) tried: Option<TriedInstances>,
    /// Where a later attempt's body comes from.
    pub(crate) resend: Resend<B>,
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
            call: tokio::time::Timeout<F>,
            rest: Option<Box<Rest<S, O, B>>>,
            sent: Instant,
        },
        Boxed { future: Boxed<RB> },
        Ready { result: Option<Result<Response<RB>, Error>> },
    }
}

impl<F, S, B, RB, O> ResponseFuture<F, S, B, RB, O> {
    pub(crate) fn first(
        call: tokio::time::Timeout<F>,
        rest: Box<Rest<S, O, B>>,
        sent: Instant,
    ) -> Self {
        ResponseFuture {
            state: State::First {
                call,
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
                StateProj::First { call, rest, sent } => {
                    let output = ready!(call.poll(cx));
                    let rest = rest.take().expect("polled after completion");
                    let shared = &rest.at.shared;
                    // A response (nearly always a success) is settled by reference and handed
                    // on as it is; only a failure becomes an `Outcome` for the retry loop.
                    let (result, outcome) = match output {
                        Ok(Ok(response)) => {
                            let result = settle_response(shared, &response, *sent);
                            if first_succeeded(shared, result, rest.at.idempotent) {
                                return Poll::Ready(Ok(response));
                            }
                            (result, Ok(response))
                        }
                        other => settle(shared, other.map(|r| r.map_err(Into::into)), *sent),
                    };
                    let Rest {
                        inner,
                        at,
                        state,
                        tried,
                        resend,
                    } = *rest;
                    let first = Tried {
                        state: state.expect("set before the first attempt"),
                        tried,
                        result,
                        outcome,
                    };
                    let future: Boxed<RB> =
                        Box::pin(retry_loop::<S, B, RB, O>(inner, at, first, resend));
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
