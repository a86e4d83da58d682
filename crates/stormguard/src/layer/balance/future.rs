//! [`ResponseFuture`]: an attempt through a [`Balance`](super::Balance), unboxed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::{answered, InFlight};
use crate::layer::error::BoxError;

type Boxed<RB> = Pin<Box<dyn Future<Output = Result<Response<RB>, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`Balance`].
    ///
    /// The call in flight, unboxed: nearly every instance is ready at once, and a box per
    /// attempt (allocated, called through a pointer, freed) cost more than the choice itself.
    pub struct ResponseFuture<F, RB> {
        #[pin]
        pub(super) state: Step<F, RB>,
    }
}

pin_project! {
    #[project = StepProj]
    pub(super) enum Step<F, RB> {
        /// Called at once: the instance was ready.
        Called {
            #[pin]
            call: F,
            guard: Option<InFlight>,
        },
        /// Waiting for the instance to be ready, then calling it.
        Boxed { future: Boxed<RB> },
        /// Answered without a call.
        Ready { result: Option<Result<Response<RB>, BoxError>> },
    }
}

impl<F, RB> ResponseFuture<F, RB> {
    pub(super) fn ready(result: Result<Response<RB>, BoxError>) -> Self {
        ResponseFuture {
            state: Step::Ready {
                result: Some(result),
            },
        }
    }

    pub(super) fn boxed(future: Boxed<RB>) -> Self {
        ResponseFuture {
            state: Step::Boxed { future },
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StepProj::Called { call, guard } => {
                let answer = std::task::ready!(call.poll(cx)).map_err(Into::into);
                let guard = guard.take().expect("polled after completion");
                Poll::Ready(answered(guard, answer))
            }
            StepProj::Boxed { future } => future.as_mut().poll(cx),
            StepProj::Ready { result } => {
                Poll::Ready(result.take().expect("polled after completion"))
            }
        }
    }
}
