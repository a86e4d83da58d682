//! A request body that can be sent again, or is known to be sendable only once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::error::BoxError;

mod unsent;

use self::unsent::Claim;
pub(crate) use self::unsent::Unsent;

/// The body the retry and hedge layers hand to the inner service.
///
/// Either a buffered copy, which every attempt replays, or a body larger than the buffer limit,
/// which streams through once: what was read while deciding comes first, then the rest.
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
    Replay {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    Once(Streaming<B>),
    /// A body that streams once, kept in a slot the retry loop can take it back from while
    /// no attempt has polled it ([`Unsent`]); this attempt's first poll takes it out.
    Unpolled(Claim<B>),
}

/// A body streamed once: what was read while deciding, then the rest as it arrives.
#[derive(Debug)]
struct Streaming<B> {
    prefix: VecDeque<Bytes>,
    rest: Option<Pin<Box<B>>>,
}

impl<B> ReplayBody<B> {
    /// A body of `data`, complete.
    pub fn from_bytes(data: Bytes) -> Self {
        ReplayBody {
            inner: Inner::Replay {
                data: (!data.is_empty()).then_some(data),
                trailers: None,
            },
        }
    }

    /// `body`, streamed once as it arrives: never buffered, never replayed.
    pub(crate) fn once(body: B) -> Self {
        once(VecDeque::new(), body)
    }

    /// Whether this body is a replayable copy (true) or streams once (false).
    pub fn is_replayable(&self) -> bool {
        matches!(self.inner, Inner::Replay { .. })
    }
}

/// A complete body, buffered so that any number of attempts can send it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Buffered {
    data: Bytes,
    // Boxed: trailers are rare, and this keeps the retry context small.
    trailers: Option<Box<HeaderMap>>,
}

impl Buffered {
    pub(crate) fn replay<B>(&self) -> ReplayBody<B> {
        ReplayBody {
            inner: Inner::Replay {
                data: (!self.data.is_empty()).then(|| self.data.clone()),
                trailers: self.trailers.as_deref().cloned(),
            },
        }
    }
}

/// A body made ready for attempts: buffered, or to be sent once.
pub(crate) enum Prepared<B> {
    Replayable(Buffered),
    Once(ReplayBody<B>),
}

/// How long [`prepare`] waits for a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Until the body ends or passes the limit: a request body arriving from a client is read
    /// before the first attempt, so that it can be replayed (bound it by the deadline).
    UntilEnd,
    /// Only while frames come without a pause longer than [`STALL_GRACE`]. A gRPC
    /// client-streaming or bidirectional call may wait for a reply before it sends more;
    /// waiting for its end would hang it. Unary calls (one message, already encoded) are still
    /// buffered whole, though their message often arrives a moment after their head: an HTTP/2
    /// client (hyper's, so tonic's) writes the DATA frame after the HEADERS frame, once the
    /// connection has given the stream window, and a server may take the request as soon as its
    /// head is in.
    WhileReady,
}

/// How long [`Wait::WhileReady`] waits for a body's next frame before it streams the body once.
///
/// Long enough for a frame sent right behind the one before it, on a busy proxy (scheduling,
/// not the network, is what separates them); short enough that a streaming call whose client
/// waits for the server's first message is held up once by no more than this.
pub(crate) const STALL_GRACE: std::time::Duration = std::time::Duration::from_millis(10);

/// One step of reading a body.
enum Step<T> {
    Frame(T),
    End,
    Stalled,
}

/// Reads `body` up to `limit` bytes. A body that ends within the limit is buffered; a larger one
/// (or one whose size hint says it will be larger, or, with [`Wait::WhileReady`], one that is
/// not ready) is returned to stream once, with what was read put back in front.
pub(crate) async fn prepare<B>(body: B, limit: usize, wait: Wait) -> Result<Prepared<B>, BoxError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if body.is_end_stream() {
        return Ok(Prepared::Replayable(Buffered::default()));
    }
    if body.size_hint().lower() > limit as u64 {
        return Ok(Prepared::Once(once(VecDeque::new(), body)));
    }
    let mut body = Box::pin(body);
    let mut chunks: VecDeque<Bytes> = VecDeque::new();
    let mut len = 0usize;
    let mut trailers: Option<HeaderMap> = None;
    loop {
        // A frame that is ready costs no timer; only a pause starts the grace.
        let step = match next_frame(&mut body, wait == Wait::WhileReady).await {
            Step::Stalled => tokio::time::timeout(STALL_GRACE, next_frame(&mut body, false))
                .await
                .unwrap_or(Step::Stalled),
            step => step,
        };
        let frame = match step {
            Step::Frame(frame) => frame?,
            Step::End => break,
            // Trailers end a body, so none were read before a stall: only data goes back in front.
            Step::Stalled => {
                return Ok(Prepared::Once(ReplayBody {
                    inner: Inner::Once(Streaming {
                        prefix: chunks,
                        rest: Some(body),
                    }),
                }));
            }
        };
        match frame.into_data() {
            Ok(data) => {
                len += data.len();
                if !data.is_empty() {
                    chunks.push_back(data);
                }
                if len > limit {
                    return Ok(Prepared::Once(ReplayBody {
                        inner: Inner::Once(Streaming {
                            prefix: chunks,
                            rest: Some(body),
                        }),
                    }));
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    match &mut trailers {
                        Some(existing) => existing.extend(t),
                        None => trailers = Some(t),
                    }
                }
            }
        }
    }
    let data = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop_front().expect("one chunk"),
        _ => {
            let mut all = BytesMut::with_capacity(len);
            for chunk in chunks {
                all.extend_from_slice(&chunk);
            }
            all.freeze()
        }
    };
    Ok(Prepared::Replayable(Buffered {
        data,
        trailers: trailers.map(Box::new),
    }))
}

/// The body's next frame, its end, or, when `stall` is set and none is ready, `Stalled`.
/// The error is boxed here, so that what waits across the grace is `Send` whatever the body.
async fn next_frame<B>(
    body: &mut Pin<Box<B>>,
    stall: bool,
) -> Step<Result<Frame<B::Data>, BoxError>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    std::future::poll_fn(|cx| match body.as_mut().poll_frame(cx) {
        Poll::Ready(Some(frame)) => Poll::Ready(Step::Frame(frame.map_err(Into::into))),
        Poll::Ready(None) => Poll::Ready(Step::End),
        Poll::Pending if stall => Poll::Ready(Step::Stalled),
        Poll::Pending => Poll::Pending,
    })
    .await
}

fn once<B>(prefix: VecDeque<Bytes>, rest: B) -> ReplayBody<B> {
    ReplayBody {
        inner: Inner::Once(Streaming {
            prefix,
            rest: Some(Box::pin(rest)),
        }),
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
        // `Inner` holds the streaming body pinned in a box, so `ReplayBody` is `Unpin`.
        let inner = &mut self.get_mut().inner;
        if let Inner::Unpolled(claim) = inner {
            // The first poll: from here on this attempt owns the body, and it can never be
            // taken back for another.
            match claim.take() {
                Ok(streaming) => *inner = Inner::Once(streaming),
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
        }
        match inner {
            Inner::Replay { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            Inner::Once(streaming) => streaming.poll_frame(cx),
            Inner::Unpolled(_) => unreachable!("taken out above"),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Replay { data, trailers } => data.is_none() && trailers.is_none(),
            Inner::Once(streaming) => streaming.is_end_stream(),
            // A claim another attempt took over: not ended, so that the poll reports the error
            // rather than the client sending an empty body.
            Inner::Unpolled(claim) => claim.peek(Streaming::is_end_stream).unwrap_or(false),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Replay { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Inner::Once(streaming) => streaming.size_hint(),
            Inner::Unpolled(claim) => claim.peek(Streaming::size_hint).unwrap_or_default(),
        }
    }
}

impl<B> Streaming<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.prefix.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let Some(body) = &mut self.rest else {
            return Poll::Ready(None);
        };
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(None) => {
                self.rest = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.rest.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self.prefix.iter().map(|b| b.len() as u64).sum();
        let rest = self
            .rest
            .as_ref()
            .map_or(SizeHint::with_exact(0), |b| b.size_hint());
        // A fresh hint: setting the lower bound of the rest's hint first could put it above the
        // rest's upper bound, which http-body asserts against.
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(buffered));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(buffered));
        }
        hint
    }
}

#[cfg(test)]
mod tests;
