//! [`OpenStreams`]: whether a client connection has a request in flight, and since when not.
//!
//! An idle client connection holds its buffers and a descriptor for as long as the client keeps
//! it, and neither of hyper's servers closes one on a clock the proxy can use (HTTP/2 has none,
//! HTTP/1's `header_read_timeout` also cuts off idle keep-alive connections, see [`h1_clock`]).
//! The proxy counts a connection's requests (HTTP/2: streams) from their arrival at the service
//! to the end of their response body, and closes the connection once none has been in flight
//! for `idle_timeout`: one count for both protocols, so that both mean the same by idle. An
//! HTTP/1.1 head that has begun to arrive is not idle either: it has its own clock
//! (`header_read_timeout`), and closing under it would lose a request the client has sent.
//!
//! [`h1_clock`]: super::h1_clock

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::stream_idle::{BodyWatch, UnderWay};
use crate::timer::later;

/// The streams of one connection.
pub(super) struct OpenStreams {
    open: AtomicUsize,
    /// When the last stream ended (or the connection began), in milliseconds since `epoch`.
    last_end: AtomicU64,
    epoch: Instant,
    /// An HTTP/1.1 head has begun to arrive and has not reached the service.
    head_begun: AtomicBool,
    /// The HTTP/1.1 request in flight came without a body, so bytes that arrive while it is in
    /// flight are the next request's head (pipelined), not its body.
    bodiless: AtomicBool,
}

/// One stream's place in its connection's count, given back when dropped.
pub(super) struct StreamOpen(Arc<OpenStreams>);

impl OpenStreams {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(OpenStreams {
            open: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
            epoch: Instant::now(),
            head_begun: AtomicBool::new(false),
            bodiless: AtomicBool::new(false),
        })
    }

    /// Says whether the HTTP/1.1 request that just reached the service has a body.
    pub(super) fn set_bodiless(&self, bodiless: bool) {
        self.bodiless.store(bodiless, Ordering::Release);
    }

    /// Whether the HTTP/1.1 request in flight came without a body.
    pub(super) fn bodiless(&self) -> bool {
        self.bodiless.load(Ordering::Acquire)
    }

    /// Counts a stream open until the returned place is dropped.
    pub(super) fn open(self: &Arc<Self>) -> StreamOpen {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.head_begun.store(false, Ordering::Release);
        StreamOpen(self.clone())
    }

    /// Whether a request is in flight (from its arrival at the service to its response's end).
    pub(super) fn in_flight(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0
    }

    /// Whether an HTTP/1.1 head has begun to arrive since the last request reached the service.
    pub(super) fn head_begun(&self) -> bool {
        self.head_begun.load(Ordering::Acquire)
    }

    /// Marks the first bytes of an HTTP/1.1 head, until its request reaches the service.
    pub(super) fn begin_head(&self) {
        self.head_begun.store(true, Ordering::Release);
    }

    /// Since when no stream has been open (nor a head begun); `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight() || self.head_begun() {
            return None;
        }
        Some(self.epoch + Duration::from_millis(self.last_end.load(Ordering::Acquire)))
    }

    /// Resolves once no stream has been open (nor a head begun) for `idle`. Cancel safe.
    pub(super) async fn idle_for(&self, idle: Duration) {
        loop {
            let now = Instant::now();
            let wake = match self.idle_since() {
                Some(since) if now >= later(since, idle) => return,
                Some(since) => later(since, idle),
                None => later(now, idle),
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

impl Drop for StreamOpen {
    fn drop(&mut self) {
        let streams = &self.0;
        let now = Instant::now().saturating_duration_since(streams.epoch);
        let millis = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        // Written before the count drops, so that whoever sees no stream open sees this end.
        streams.last_end.fetch_max(millis, Ordering::AcqRel);
        streams.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds its stream's place until it is dropped (sent, or reset), and
/// tells the stream's [`BodyWatch`] that it is under way, and when it moves, until its end.
pub(super) struct Counted<B> {
    body: B,
    under_way: Option<UnderWay>,
    _open: StreamOpen,
}

impl<B: Body> Counted<B> {
    pub(super) fn new(body: B, open: StreamOpen, watch: &Arc<BodyWatch>) -> Self {
        Counted {
            under_way: (!body.is_end_stream()).then(|| watch.start()),
            body,
            _open: open,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                if let Some(under_way) = &self.under_way {
                    under_way.moved();
                }
            }
            // Ended, or failed: no longer under way.
            Poll::Ready(_) => self.under_way = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_after_its_last_stream_ended_plus_the_timeout() {
        let streams = OpenStreams::new();
        let idle = Duration::from_secs(10);
        let start = Instant::now();
        let open = streams.open();
        tokio::time::sleep(Duration::from_secs(30)).await;
        // 30 s with a stream open is not idle.
        assert!(streams.idle_since().is_none());
        drop(open);
        streams.idle_for(idle).await;
        assert_eq!(start.elapsed(), Duration::from_secs(40));
    }

    /// An idle timeout past the end of the clock (a `Listen` built in code) waits, and never
    /// panics: `since + idle` once overflowed here.
    #[tokio::test(start_paused = true)]
    async fn an_idle_timeout_of_duration_max_never_fires_and_never_panics() {
        let streams = OpenStreams::new();
        let idle = tokio::time::timeout(Duration::from_secs(3600), streams.idle_for(Duration::MAX));
        assert!(idle.await.is_err());
    }
}
