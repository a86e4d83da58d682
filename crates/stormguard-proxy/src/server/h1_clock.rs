//! [`H1Clock`]: an HTTP/1.1 client's request head must arrive within `header_read_timeout` of
//! its first byte, however long the connection was idle before it.
//!
//! ## Why not hyper's `header_read_timeout`
//! hyper starts that timer as soon as it waits for the next request head, so it bounds the idle
//! time of a keep-alive connection by the slowloris bound (5 s). Client pools keep idle
//! connections far longer (Go's 90 s, urllib3 without end), so a client regularly sends a
//! request on a connection the proxy is closing at that moment, and a POST then fails with a
//! reset it cannot safely retry. Like nginx (`client_header_timeout` and `keepalive_timeout`),
//! the proxy keeps the two apart: a head must arrive within `header_read_timeout` of its first
//! byte (this clock), and a connection with no request in flight and no byte of the next one is
//! closed after `idle_timeout` ([`OpenStreams::idle_for`], as on HTTP/2).
//!
//! ## How
//! The clock sits under hyper, on the client's reads, and tells a head from the rest with the
//! connection's [`OpenStreams`]: a request counts from its arrival at the service (its head is
//! complete) to its response body's end. Bytes read while none is in flight begin a head
//! ([`OpenStreams::begin_head`], which also holds off the idle close) until its request reaches
//! the service; a read that must wait in the middle of a head polls the clock, and one past the
//! limit fails with `TimedOut`. While a request is in flight there is no clock (its body and
//! the upstream are bounded by the route's deadline).
//!
//! The idle close is not this clock's because hyper does not read again after a response
//! unless its own header timer runs: a clock on the read would not be polled when the
//! connection turns idle, and waking the task at every response's end to poll it would cost a
//! poll of the connection per request.
//!
//! The clock costs the hot path almost nothing: a head that arrives in one read never looks at
//! the time; the timer is made once per connection and moved only for a head that spans reads.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::timer::later;

use super::streams::OpenStreams;

/// A client's byte stream with the head's clock on its reads.
pub(super) struct H1Clock<T> {
    io: T,
    streams: Arc<OpenStreams>,
    limit: Duration,
    /// When the head under way began, once a read had to wait for the rest of it.
    head_began: Option<Instant>,
    /// Made once per connection, moved for each head that spans reads.
    timer: Pin<Box<Sleep>>,
}

impl<T> H1Clock<T> {
    /// `io` once the connection's first byte has arrived at `first_byte`, so that the first
    /// head is bounded from its first byte like every later one.
    pub(super) fn new(
        io: T,
        streams: Arc<OpenStreams>,
        limit: Duration,
        first_byte: Instant,
    ) -> Self {
        streams.begin_head();
        H1Clock {
            io,
            streams,
            limit,
            head_began: Some(first_byte),
            timer: Box::pin(tokio::time::sleep_until(later(first_byte, limit))),
        }
    }

    /// Polled when a read in the middle of a head would wait: `Ready` with the read's error
    /// once the head is over its limit.
    fn poll_clock(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let began = *self.head_began.get_or_insert_with(Instant::now);
        let deadline = later(began, self.limit);
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "an HTTP/1.1 request head was not complete within header_read_timeout",
            ))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for H1Clock<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.streams.in_flight() {
            // hyper reads while a request is in flight (to see a client hang up, or its body).
            // Bytes behind a request without a body are the next head, pipelined: its clock
            // starts, so a client cannot stall that head until idle_timeout (a request with a
            // body cannot tell its last bytes from the next head's here; clients do not
            // pipeline behind those).
            let before = buf.filled().len();
            let read = Pin::new(&mut this.io).poll_read(cx, buf);
            if buf.filled().len() > before && this.streams.bodiless() && !this.streams.head_begun()
            {
                this.streams.begin_head();
                this.head_began = None;
            }
            return read;
        }
        let before = buf.filled().len();
        let head_begun = this.streams.head_begun();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if !head_begun && buf.filled().len() > before {
                    this.streams.begin_head();
                    this.head_began = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if head_begun => this.poll_clock(cx),
            other => other,
        }
    }
}

write_through!(H1Clock);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const LIMIT: Duration = Duration::from_secs(5);

    /// Reads until the clock fails the read: how long that took.
    async fn until_timed_out(clock: &mut H1Clock<DuplexStream>) -> Duration {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        loop {
            match clock.read(&mut buf).await {
                Ok(n) => assert!(n > 0, "ended without the clock"),
                Err(error) => {
                    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
                    return start.elapsed();
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_head_cut_short_times_out_from_its_first_byte() {
        let (mut client, server) = tokio::io::duplex(1024);
        let first_byte = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut clock = H1Clock::new(server, OpenStreams::new(), LIMIT, first_byte);
        client.write_all(b"GET / HT").await.unwrap();
        assert_eq!(
            until_timed_out(&mut clock).await,
            LIMIT - Duration::from_secs(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_has_no_clock_and_a_head_after_a_long_idle_gets_its_own() {
        let (mut client, server) = tokio::io::duplex(1024);
        let streams = OpenStreams::new();
        let mut clock = H1Clock::new(server, streams.clone(), LIMIT, Instant::now());
        let mut buf = [0u8; 64];
        let head = b"POST / HTTP/1.1\r\n\r\n";
        client.write_all(head).await.unwrap();
        clock.read_exact(&mut buf[..head.len()]).await.unwrap();
        // The head reached the service; the body comes, and the response ends, after the limit.
        let in_flight = streams.open();
        tokio::time::sleep(LIMIT * 2).await;
        client.write_all(b"body").await.unwrap();
        clock.read_exact(&mut buf[..4]).await.unwrap();
        tokio::time::sleep(LIMIT * 2).await;
        drop(in_flight);
        assert!(!streams.head_begun());
        // Idle for long, then a head that stalls: a whole limit after its first byte.
        tokio::time::sleep(LIMIT * 10).await;
        client.write_all(b"GET").await.unwrap();
        assert_eq!(until_timed_out(&mut clock).await, LIMIT);
        assert!(streams.head_begun());
    }

    /// A limit past the end of the clock (a `Listen` built in code) is no limit, never a
    /// panic: `first_byte + limit` once overflowed here.
    #[tokio::test(start_paused = true)]
    async fn a_limit_of_duration_max_never_fires_and_never_panics() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut clock = H1Clock::new(server, OpenStreams::new(), Duration::MAX, Instant::now());
        client.write_all(b"GET / HT").await.unwrap();
        let mut buf = [0u8; 64];
        let read = clock.read(&mut buf).await.unwrap();
        assert_eq!(read, 8);
        let stalled = tokio::time::timeout(Duration::from_secs(3600), clock.read(&mut buf));
        assert!(stalled.await.is_err(), "an hour later, still waiting");
    }
}
