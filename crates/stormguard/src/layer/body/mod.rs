//! A request body that can be sent again, or is known to be sendable only once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::error::BoxError;

mod chunks;
mod recording;

pub(crate) use self::recording::Recording;
use self::recording::Replica;

/// The body the retry and hedge layers hand to the inner service.
///
/// The first attempt's body streams the client's body as it arrives, while a copy of up to the
/// layer's body limit is kept; a later attempt replays the copy and then goes on from the
/// client's body where the earlier attempt left it. A body larger than the limit streams
/// through once. A request whose attempts can never be more than one passes its body straight
/// through, with no copy.
///
/// ```
/// use bytes::Bytes;
/// use http_body::Body;
/// use stormguard::layer::ReplayBody;
///
/// let body: ReplayBody<http_body_util::Empty<Bytes>> = ReplayBody::from_bytes(Bytes::from_static(b"hi"));
/// assert_eq!(body.size_hint().exact(), Some(2));
/// ```
#[derive(Debug)]
pub struct ReplayBody<B> {
    inner: Inner<B>,
}

#[derive(Debug)]
enum Inner<B> {
    /// No body: what nearly every request has, so it costs nothing to make, send or drop.
    Empty,
    /// A complete body, held by this attempt alone. The trailers (rare) are boxed: every
    /// attempt's request carries a `ReplayBody` and is moved a few times on its way down, and
    /// an inline map made each of them 88 bytes larger.
    Replay {
        chunks: VecDeque<Bytes>,
        trailers: Option<Box<HeaderMap>>,
    },
    /// Streamed once, straight through: never copied, never sent again.
    Once(Option<Pin<Box<B>>>),
    /// One attempt's view of a recorded body.
    Recorded(Replica<B>),
}

impl<B> ReplayBody<B> {
    /// A body of `data`, complete.
    pub fn from_bytes(data: Bytes) -> Self {
        if data.is_empty() {
            return Self::empty();
        }
        ReplayBody {
            inner: Inner::Replay {
                chunks: VecDeque::from([data]),
                trailers: None,
            },
        }
    }

    /// An empty body, which any number of attempts can send.
    pub(crate) fn empty() -> Self {
        ReplayBody {
            inner: Inner::Empty,
        }
    }

    /// `body`, streamed once as it arrives: never copied, never replayed.
    pub(crate) fn once(body: B) -> Self {
        ReplayBody {
            inner: Inner::Once(Some(Box::pin(body))),
        }
    }

    /// Whether another attempt could send this body again: a complete body, or one whose copy
    /// is still kept (true); a body that streams once, or whose copy passed the limit (false).
    pub fn is_replayable(&self) -> bool {
        match &self.inner {
            Inner::Empty | Inner::Replay { .. } => true,
            Inner::Once(_) => false,
            Inner::Recorded(replica) => replica.is_replayable(),
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // `Inner` holds the client's body pinned in a box, so `ReplayBody` is `Unpin`.
        match &mut self.get_mut().inner {
            Inner::Empty => Poll::Ready(None),
            Inner::Replay { chunks, trailers } => {
                if let Some(data) = chunks.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(*t))))
            }
            Inner::Once(rest) => {
                let Some(body) = rest else {
                    return Poll::Ready(None);
                };
                match body.as_mut().poll_frame(cx) {
                    Poll::Ready(None) => {
                        *rest = None;
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
                    Poll::Pending => Poll::Pending,
                }
            }
            Inner::Recorded(replica) => replica.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Replay { chunks, trailers } => chunks.is_empty() && trailers.is_none(),
            Inner::Once(rest) => rest.as_ref().is_none_or(|b| b.is_end_stream()),
            Inner::Recorded(replica) => replica.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            Inner::Replay { chunks, .. } => {
                SizeHint::with_exact(chunks.iter().map(|c| c.len() as u64).sum())
            }
            Inner::Once(rest) => rest
                .as_ref()
                .map_or(SizeHint::with_exact(0), |b| b.size_hint()),
            Inner::Recorded(replica) => replica.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests;
