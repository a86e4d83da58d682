//! A request body that can be sent again, or is known to be sendable only once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::error::BoxError;

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
    Once {
        prefix: VecDeque<Bytes>,
        rest: Option<Pin<Box<B>>>,
    },
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
    /// Only while frames are ready at once. A gRPC client-streaming or bidirectional call may
    /// wait for a reply before it sends more; waiting for its end would hang it. Unary calls
    /// (one message, already encoded) are still buffered whole.
    WhileReady,
}

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
        let step = std::future::poll_fn(|cx| match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(Step::Frame(frame)),
            Poll::Ready(None) => Poll::Ready(Step::End),
            Poll::Pending if wait == Wait::WhileReady => Poll::Ready(Step::Stalled),
            Poll::Pending => Poll::Pending,
        })
        .await;
        let frame = match step {
            Step::Frame(frame) => frame.map_err(Into::into)?,
            Step::End => break,
            // Trailers end a body, so none were read before a stall: only data goes back in front.
            Step::Stalled => {
                return Ok(Prepared::Once(ReplayBody {
                    inner: Inner::Once {
                        prefix: chunks,
                        rest: Some(body),
                    },
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
                        inner: Inner::Once {
                            prefix: chunks,
                            rest: Some(body),
                        },
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

fn once<B>(prefix: VecDeque<Bytes>, rest: B) -> ReplayBody<B> {
    ReplayBody {
        inner: Inner::Once {
            prefix,
            rest: Some(Box::pin(rest)),
        },
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
        match &mut self.get_mut().inner {
            Inner::Replay { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            Inner::Once { prefix, rest } => {
                if let Some(data) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
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
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Replay { data, trailers } => data.is_none() && trailers.is_none(),
            Inner::Once { prefix, rest } => {
                prefix.is_empty() && rest.as_ref().is_none_or(|b| b.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Replay { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Inner::Once { prefix, rest } => {
                let buffered: u64 = prefix.iter().map(|b| b.len() as u64).sum();
                let rest = rest
                    .as_ref()
                    .map_or(SizeHint::with_exact(0), |b| b.size_hint());
                // A fresh hint: setting the lower bound of the rest's hint first could put it
                // above the rest's upper bound, which http-body asserts against.
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(buffered));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(buffered));
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    async fn collect<B: Body<Data = Bytes, Error = BoxError>>(body: B) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn small_bodies_replay_identically() {
        let prepared = prepare(Full::new(Bytes::from_static(b"hello")), 64, Wait::UntilEnd)
            .await
            .unwrap();
        let Prepared::Replayable(buffered) = prepared else {
            panic!("should be buffered")
        };
        for _ in 0..3 {
            let body: ReplayBody<Full<Bytes>> = buffered.replay();
            assert_eq!(collect(body).await, Bytes::from_static(b"hello"));
        }
    }

    /// A body that yields its chunks one at a time, with no size hint.
    struct Chunked(VecDeque<Bytes>);

    impl Body for Chunked {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn large_bodies_stream_once_without_losing_the_prefix() {
        let chunks = (0..10u8).map(|i| Bytes::from(vec![b'a' + i; 10])).collect();
        let Prepared::Once(once) = prepare(Chunked(chunks), 25, Wait::UntilEnd).await.unwrap()
        else {
            panic!("should stream once")
        };
        assert!(!once.is_replayable());
        let all = collect(once).await;
        assert_eq!(all.len(), 100);
        assert_eq!(&all[..10], &[b'a'; 10]);
        assert_eq!(&all[90..], &[b'j'; 10]);
    }

    #[tokio::test]
    async fn a_size_hint_over_the_limit_skips_buffering() {
        let body = Full::new(Bytes::from(vec![0u8; 100]));
        assert!(matches!(
            prepare(body, 10, Wait::UntilEnd).await.unwrap(),
            Prepared::Once(_)
        ));
    }

    /// A body that yields one chunk, then is not ready (a client waiting for a reply).
    struct Stalls(Option<Bytes>);

    impl Body for Stalls {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.0.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Poll::Pending,
            }
        }

        fn size_hint(&self) -> SizeHint {
            // Like http_body_util::Limited: at most 100 bytes, no lower bound.
            let mut hint = SizeHint::new();
            hint.set_upper(100);
            hint
        }
    }

    #[tokio::test]
    async fn a_stalled_stream_is_sent_once_with_what_was_read() {
        let prepared = prepare(
            Stalls(Some(Bytes::from_static(b"first"))),
            64,
            Wait::WhileReady,
        )
        .await
        .unwrap();
        let Prepared::Once(once) = prepared else {
            panic!("a stalled stream must not be waited for")
        };
        assert!(!once.is_replayable());
        let hint = once.size_hint();
        assert_eq!((hint.lower(), hint.upper()), (5, Some(105)));
    }

    #[test]
    fn the_size_hint_of_a_streamed_body_never_has_lower_above_upper() {
        // The rest may promise at most 30 more bytes after 70 were buffered.
        let mut hint = SizeHint::new();
        hint.set_upper(30);
        struct Rest(SizeHint);
        impl Body for Rest {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                Poll::Ready(None)
            }
            fn size_hint(&self) -> SizeHint {
                self.0
            }
        }
        let body = ReplayBody {
            inner: Inner::Once {
                prefix: VecDeque::from([Bytes::from(vec![0u8; 70])]),
                rest: Some(Box::pin(Rest(hint))),
            },
        };
        let hint = body.size_hint();
        assert_eq!((hint.lower(), hint.upper()), (70, Some(100)));
    }
}
