//! [`StreamResets`]: an HTTP/2 client that cancels most of the requests it starts is sent
//! GOAWAY.
//!
//! ## Why
//! An HTTP/2 client may cancel a stream at any moment (`RST_STREAM`), and a cancelled stream
//! no longer counts against `http2_max_concurrent_streams`, nor its request against the
//! upstream's `max_in_flight`: both count what is in flight, and a cancelled request is not. A
//! client that opens streams and resets them at once ("rapid reset", CVE-2023-44487) thus
//! starts requests without bound on one connection, each of which has reached its route, and
//! often its upstream, before the reset arrives. h2 bounds resets of streams not yet handed to
//! the proxy (hyper's `max_pending_accept_reset_streams`), not of those it is working on.
//!
//! ## The rule
//! Envoy's: per connection, the proxy counts the requests started and those the client reset
//! before their answer (the service's future dropped before it produced a response). Once the
//! resets are more than `http2_max_concurrent_streams` and more than half of the requests
//! started, the connection is sent GOAWAY (and closed soon after, see
//! [`super::Serving::http2`]), and every stream it opens from then on is refused
//! (`REFUSED_STREAM`, which a client may retry on a new connection) without starting any work:
//! h2's GOAWAY comes in two steps, a round trip apart, and a client that does not answer the
//! ping between them could otherwise go on opening streams until the connection is closed. A client may thus cancel as many requests as it may have open at
//! once, and beyond that fewer than it lets finish: a gRPC client whose deadlines expire, or
//! one that hedges, keeps its connection; one that cancels nearly everything reconnects, which
//! costs it a handshake. The counts are halved every 8 x `http2_max_concurrent_streams`
//! requests, so that a long-lived connection cannot bank finished requests to spend on resets
//! later.
//!
//! The cost is an atomic update of the connection's counts per request, no lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// A connection's requests started and reset before their answer.
pub(super) struct StreamResets {
    /// Requests started in the high 32 bits, reset before their answer in the low 32.
    counts: AtomicU64,
    /// Resets allowed before the share matters: `http2_max_concurrent_streams`.
    allowed: u32,
    /// Requests started after which both counts are halved.
    window: u32,
    tripped: AtomicBool,
    exceeded: Notify,
}

/// A request under way; counted as reset if dropped before [`Started::answered`].
pub(super) struct Started(Option<Arc<StreamResets>>);

fn split(counts: u64) -> (u32, u32) {
    ((counts >> 32) as u32, counts as u32)
}

fn join(started: u32, reset: u32) -> u64 {
    (u64::from(started) << 32) | u64::from(reset)
}

impl StreamResets {
    /// The counts of a new connection whose clients may have `max_concurrent_streams` open.
    pub(super) fn new(max_concurrent_streams: u32) -> Arc<Self> {
        // At least 16 resets are allowed, and the window stays far from overflowing.
        let allowed = max_concurrent_streams.clamp(16, 1 << 26);
        Arc::new(StreamResets {
            counts: AtomicU64::new(0),
            allowed,
            window: allowed * 8,
            tripped: AtomicBool::new(false),
            exceeded: Notify::new(),
        })
    }

    /// Counts a request started.
    pub(super) fn start(self: &Arc<Self>) -> Started {
        let window = self.window;
        let _ = self
            .counts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |counts| {
                let (started, reset) = split(counts);
                let started = started + 1;
                Some(if started >= window {
                    join(started / 2, reset / 2)
                } else {
                    join(started, reset)
                })
            });
        Started(Some(self.clone()))
    }

    fn reset(&self) {
        let counts = self
            .counts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |counts| {
                let (started, reset) = split(counts);
                Some(join(started, reset.saturating_add(1)))
            })
            .unwrap_or_else(|counts| counts);
        let (started, reset) = split(counts);
        let reset = reset.saturating_add(1);
        let too_many = reset > self.allowed && u64::from(reset) * 2 > u64::from(started);
        if too_many && !self.tripped.swap(true, Ordering::AcqRel) {
            self.exceeded.notify_one();
        }
    }

    /// Resolves once the client has reset too many requests. Cancel safe.
    pub(super) async fn exceeded(&self) {
        if !self.tripped.load(Ordering::Acquire) {
            self.exceeded.notified().await;
        }
    }

    /// Whether the client has reset too many requests: its new streams are refused.
    pub(super) fn is_exceeded(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }
}

impl Started {
    /// The request produced its response: not a reset, whatever happens to its body.
    pub(super) fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(resets) = self.0.take() {
            resets.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_beyond_the_stream_limit_and_half_the_requests_trip() {
        let resets = StreamResets::new(100);
        for _ in 0..100 {
            drop(resets.start());
        }
        assert!(!resets.is_exceeded(), "as many as may be open at once");
        drop(resets.start());
        assert!(resets.is_exceeded());
    }

    #[test]
    fn a_client_that_lets_most_requests_finish_may_reset_many() {
        let resets = StreamResets::new(100);
        // Hedging everything: one of every two requests is cancelled, for long.
        for _ in 0..10_000 {
            resets.start().answered();
            drop(resets.start());
        }
        assert!(!resets.is_exceeded());
    }

    #[test]
    fn finished_requests_cannot_be_banked() {
        let resets = StreamResets::new(100);
        for _ in 0..100_000 {
            resets.start().answered();
        }
        let mut cancelled = 0;
        while !resets.is_exceeded() {
            drop(resets.start());
            cancelled += 1;
        }
        // The window is 800 requests: at most some 400 finished ones count for the client.
        assert!(cancelled <= 801, "{cancelled} resets before GOAWAY");
    }

    #[tokio::test]
    async fn exceeded_resolves_for_a_waiter_and_after_the_fact() {
        let resets = StreamResets::new(16);
        let waiter = tokio::spawn({
            let resets = resets.clone();
            async move { resets.exceeded().await }
        });
        tokio::task::yield_now().await;
        for _ in 0..17 {
            drop(resets.start());
        }
        waiter.await.unwrap();
        resets.exceeded().await;
    }
}
