//! [`RequestBody`]: a client's request body as the route's stack takes it, and
//! [`read_first`], which reads it before the request counts against its upstream.
//!
//! ## Why the body is read before the upstream's slot is taken
//! The retry layer streams a body to the first attempt as it arrives, keeping a copy up to the
//! route's `retry_body_limit` to send it again. Forwarded at once, a body sent a byte at a time
//! held its request's place among the upstream's `max_in_flight` for as long as it took, and a
//! hundred such clients shed every other request to the route while the upstream saw nothing.
//! Read first, up to the same limit, the same bytes cost the upstream nothing until they are
//! all there; the time they may take is bounded
//! by `request_body_timeout` (the whole) and `stream_idle_timeout` (each pause), past which the
//! answer is 408 `body-timeout`.
//!
//! A body longer than the limit streams to the upstream as it arrives, what was read first in
//! front: the upstream sees it, so it takes a place. So does a gRPC body, which is not read
//! first at all: a streaming call may wait for the server's reply before it sends more. A
//! body that streams is watched by its connection's `stream_idle_timeout`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use stormguard::layer::BoxError;
use tokio::time::Instant;

use crate::server::{BodyWatch, UnderWay};
use crate::timer::later;

/// A client's request body: what the proxy read before forwarding, then the rest (if any) as
/// it arrives, within `max_request_body`. Generic only for the tests, which cannot make an
/// `Incoming`.
pub(crate) struct RequestBody<B = Limited<Incoming>> {
    read: VecDeque<Bytes>,
    // Boxed: trailers on a request are rare.
    trailers: Option<Box<HeaderMap>>,
    rest: Option<B>,
    /// The stream's watch, until the rest is first polled: from then on it is under way.
    watch: Option<Arc<BodyWatch>>,
    under_way: Option<UnderWay>,
}

/// Why [`read_first`] gave up.
#[derive(Debug)]
pub(crate) enum ReadFailed {
    /// The body did not arrive within `request_body_timeout`, or paused longer than
    /// `stream_idle_timeout`, after this many bytes (which the access log's `request_bytes`
    /// says: it said 0).
    Timeout(u64),
    /// The body could not be read, or passed `max_request_body`.
    Body(BoxError),
}

impl<B> RequestBody<B> {
    /// `body` unread, streaming as it arrives, watched by `watch` from its first poll.
    pub(crate) fn streaming(body: B, watch: Arc<BodyWatch>) -> Self {
        RequestBody {
            read: VecDeque::new(),
            trailers: None,
            rest: Some(body),
            watch: Some(watch),
            under_way: None,
        }
    }

    /// Watches the rest of a body [`read_first`] returned, if it has one.
    /// The bytes already read count as received.
    pub(crate) fn watched_by(mut self, watch: Arc<BodyWatch>) -> Self {
        watch.received_more(self.read.iter().map(Bytes::len).sum());
        if self.rest.is_some() {
            self.watch = Some(watch);
        }
        self
    }
}

/// Whether this request's body streams at once, never read first: gRPC's, whose streaming
/// calls may wait for a reply before they send more. The retry layer copies it as it streams.
pub(crate) fn streams_at_once(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// Reads `body` until it ends or passes `limit` bytes, all of it within `whole` and with no
/// pause longer than `pause`. A body that passed the limit comes back to stream the rest.
///
/// Cancel safe: dropping the future drops the body.
pub(crate) async fn read_first<B>(
    mut body: B,
    limit: usize,
    whole: Duration,
    pause: Duration,
) -> Result<RequestBody<B>, ReadFailed>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let give_up = later(Instant::now(), whole);
    let mut read = VecDeque::new();
    let mut len = 0usize;
    let mut trailers: Option<Box<HeaderMap>> = None;
    let mut last = Instant::now();
    loop {
        // A frame that is ready costs no timer: tokio registers one only when it must wait.
        let next = tokio::time::timeout_at(give_up.min(later(last, pause)), body.frame()).await;
        let frame = match next {
            Err(_) => return Err(ReadFailed::Timeout(len as u64)),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(ReadFailed::Body)?,
        };
        last = Instant::now();
        match frame.into_data() {
            Ok(data) => {
                len += data.len();
                if !data.is_empty() {
                    read.push_back(data);
                }
                if len > limit {
                    return Ok(RequestBody {
                        read,
                        trailers: None,
                        rest: Some(body),
                        watch: None,
                        under_way: None,
                    });
                }
            }
            Err(frame) => {
                if let Ok(more) = frame.into_trailers() {
                    match &mut trailers {
                        Some(trailers) => trailers.extend(more),
                        None => trailers = Some(Box::new(more)),
                    }
                }
            }
        }
    }
    Ok(RequestBody {
        read,
        trailers,
        rest: None,
        watch: None,
        under_way: None,
    })
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(data) = this.read.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(rest) = &mut this.rest {
            if let Some(watch) = this.watch.take() {
                this.under_way = Some(watch.start());
            }
            match Pin::new(rest).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(under_way) = &this.under_way {
                        under_way.moved();
                        if let Some(data) = frame.data_ref() {
                            under_way.watch().received_more(data.len());
                        }
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(error))) => {
                    (this.rest, this.under_way) = (None, None);
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => (this.rest, this.under_way) = (None, None),
            }
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(*t))))
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self.read.iter().map(|b| b.len() as u64).sum();
        let Some(rest) = &self.rest else {
            if self.trailers.is_some() {
                // Trailers follow the data: an exact length would have the body framed by its
                // length (`Content-Length`), which cannot carry them.
                let mut hint = SizeHint::new();
                hint.set_lower(read);
                return hint;
            }
            return SizeHint::with_exact(read);
        };
        let rest = rest.size_hint();
        // A fresh hint: raising the rest's lower bound first could pass its upper bound, which
        // http-body asserts against.
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(read));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(read));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    /// A body whose frames the test sends, one by one.
    struct Fed(mpsc::Receiver<Frame<Bytes>>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|frame| frame.map(Ok))
        }
    }

    /// A fed body, and a task that sends `chunks`, one every `every`, then `trailers`.
    fn fed(chunks: &[&'static str], every: Duration, trailers: bool) -> Fed {
        let (tx, rx) = mpsc::channel(1);
        let chunks = chunks.to_vec();
        tokio::spawn(async move {
            for chunk in chunks {
                tokio::time::sleep(every).await;
                let _ = tx
                    .send(Frame::data(Bytes::from_static(chunk.as_bytes())))
                    .await;
            }
            if trailers {
                let mut map = HeaderMap::new();
                map.insert("grpc-status", http::HeaderValue::from_static("0"));
                let _ = tx.send(Frame::trailers(map)).await;
            }
        });
        Fed(rx)
    }

    const LONG: Duration = Duration::from_secs(30);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_within_the_limit_is_read_whole_with_its_trailers() {
        let body = fed(&["ab", "cd"], ms(100), true);
        let read = read_first(body, 10, LONG, LONG).await.unwrap();
        assert!(read.rest.is_none());
        // Four bytes, then trailers: not framed by a length, which could not carry them.
        assert_eq!(read.size_hint().exact(), None);
        assert_eq!(read.size_hint().lower(), 4);
        let collected = read.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(collected.to_bytes(), "abcd");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_past_the_limit_streams_the_rest_under_watch() {
        let body = fed(&["abc", "def", "gh"], ms(100), false);
        let read = read_first(body, 4, LONG, LONG).await.unwrap();
        assert!(read.rest.is_some());
        let watch = BodyWatch::new();
        let mut body = read.watched_by(watch.clone());
        // What was read (past the limit) comes first, without the rest being watched yet.
        for read in ["abc", "def"] {
            let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(frame, read);
            assert!(body.under_way.is_none());
        }
        let rest = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(rest, "gh");
        assert!(body.under_way.is_some(), "the rest streams under watch");
        assert!(body.frame().await.is_none());
        // Ended: no longer under way.
        assert!(body.under_way.is_none() && body.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_slower_than_the_whole_timeout_is_given_up() {
        let start = Instant::now();
        let body = fed(&["a"; 10], ms(100), false);
        let read = read_first(body, 64, ms(250), LONG).await;
        // The bytes that came before count as received (the access log said 0).
        assert!(
            matches!(read, Err(ReadFailed::Timeout(2))),
            "{:?}",
            read.err()
        );
        assert_eq!(start.elapsed(), ms(250));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_longer_than_the_pause_timeout_is_given_up() {
        let start = Instant::now();
        let body = fed(&["a", "b"], ms(500), false);
        let read = read_first(body, 64, LONG, ms(300)).await;
        assert!(matches!(read, Err(ReadFailed::Timeout(_))));
        assert_eq!(start.elapsed(), ms(300));
    }

    #[test]
    fn grpc_bodies_stream_at_once() {
        let mut headers = HeaderMap::new();
        assert!(!streams_at_once(&headers));
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(streams_at_once(&headers));
    }
}
