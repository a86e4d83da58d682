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
//!
//! A head longer than hyper's first read buffer is also charged, with the bytes read of it so
//! far, against the budget of all unfinished heads ([`super::head_budget`]) as it grows and
//! when it stalls; the service gives the charge back when the request arrives, and a charge
//! that does not fit fails the read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::timer::later;

use super::head_budget::HeadCharge;
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
    /// The bytes read of the head under way.
    head_read: usize,
    /// The unfinished head's share of the budget, given back by the service.
    charge: Arc<HeadCharge>,
}

impl<T> H1Clock<T> {
    /// `io` once the connection's first byte has arrived at `first_byte`, so that the first
    /// head is bounded from its first byte like every later one.
    pub(super) fn new(
        io: T,
        streams: Arc<OpenStreams>,
        limit: Duration,
        first_byte: Instant,
        charge: Arc<HeadCharge>,
    ) -> Self {
        streams.begin_head();
        H1Clock {
            io,
            streams,
            limit,
            head_began: Some(first_byte),
            timer: Box::pin(tokio::time::sleep_until(later(first_byte, limit))),
            head_read: 0,
            charge,
        }
    }

    /// Marks the first `read` bytes of a new head.
    fn begin_head(&mut self, read: usize) {
        self.streams.begin_head();
        self.head_began = None;
        self.head_read = read;
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
            let n = buf.filled().len() - before;
            if this.streams.head_begun() {
                this.head_read += n;
            } else if n > 0 && this.streams.bodiless() {
                this.begin_head(n);
            }
            return read;
        }
        let before = buf.filled().len();
        let head_begun = this.streams.head_begun();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if head_begun {
                    // A long head: what it holds counts against the budget.
                    this.head_read += n;
                    if let Err(error) = this.charge.hold(this.head_read) {
                        return Poll::Ready(Err(error));
                    }
                } else if n > 0 {
                    this.begin_head(n);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if head_begun => {
                // The head stalled: what it holds counts against the budget.
                if let Err(error) = this.charge.hold(this.head_read) {
                    return Poll::Ready(Err(error));
                }
                this.poll_clock(cx)
            }
            other => other,
        }
    }
}

write_through!(H1Clock);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::head_budget::HeaderBudget;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const LIMIT: Duration = Duration::from_secs(5);

    /// A charge against a budget of its own, of `limit` bytes.
    fn charge(limit: usize) -> Arc<HeadCharge> {
        let budget = HeaderBudget::new(prometheus_client::metrics::counter::Counter::default());
        Arc::new(HeadCharge::new(budget, limit))
    }

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
        let mut clock = H1Clock::new(
            server,
            OpenStreams::new(),
            LIMIT,
            first_byte,
            charge(1 << 20),
        );
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
        let mut clock = H1Clock::new(
            server,
            streams.clone(),
            LIMIT,
            Instant::now(),
            charge(1 << 20),
        );
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
        let charge = Arc::new(HeadCharge::new(
            HeaderBudget::new(prometheus_client::metrics::counter::Counter::default()),
            40_000,
        ));
        let mut clock = H1Clock::new(
            server,
            OpenStreams::new(),
            Duration::MAX,
            Instant::now(),
            charge,
        );
        client.write_all(b"GET / HT").await.unwrap();
        let mut buf = [0u8; 64];
        let read = clock.read(&mut buf).await.unwrap();
        assert_eq!(read, 8);
        let stalled = tokio::time::timeout(Duration::from_secs(3600), clock.read(&mut buf));
        assert!(stalled.await.is_err(), "an hour later, still waiting");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_head_is_charged_until_its_request_arrives_and_one_that_does_not_fit_fails() {
        let budget = HeaderBudget::new(prometheus_client::metrics::counter::Counter::default());
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let streams = OpenStreams::new();
        let charge = Arc::new(HeadCharge::new(budget.clone(), 40_000));
        let mut clock = H1Clock::new(
            server,
            streams.clone(),
            LIMIT,
            Instant::now(),
            charge.clone(),
        );
        let mut buf = [0u8; 4096];
        client.write_all(&[b'a'; 20_000]).await.unwrap();
        let mut read = 0;
        while read < 20_000 {
            read += clock.read(&mut buf).await.unwrap();
        }
        let stalled = tokio::time::timeout(Duration::from_secs(1), clock.read(&mut buf)).await;
        assert!(stalled.is_err(), "waits for the rest of the head");
        assert_eq!(budget.held(), 20_000);
        // The service gives it back when the request arrives.
        let open = streams.open();
        charge.release();
        assert_eq!(budget.held(), 0);
        drop(open);
        // The next head grows past what another connection's leaves of the budget.
        let other = HeadCharge::new(budget.clone(), 40_000);
        other.hold(25_000).unwrap();
        client.write_all(&[b'b'; 20_000]).await.unwrap();
        let mut read = 0;
        let error = loop {
            match clock.read(&mut buf).await {
                Ok(n) => read += n,
                Err(error) => break error,
            }
        };
        assert!(
            (8 * 1024..20_000).contains(&read),
            "failed after {read} bytes"
        );
        assert!(
            error.to_string().contains("max_unfinished_header_bytes"),
            "{error}"
        );
        // What the head held until then is given back when the connection ends.
        drop((clock, charge));
        assert_eq!(budget.held(), 25_000);
    }
}
