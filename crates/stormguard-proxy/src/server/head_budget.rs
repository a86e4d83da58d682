//! [`HeaderBudget`]: a bound on the bytes that unfinished request heads hold, summed over every
//! connection (`max_unfinished_header_bytes`).
//!
//! ## Why
//! A client may send a head of up to `max_header_bytes`, and one that sends most of it and
//! stops holds those bytes (in hyper's read buffer, or in h2's partial header block) until
//! `header_read_timeout` cuts it off. Over `max_connections` connections that is their
//! product, 10,000 x 64 KiB = 625 MiB with the defaults, and more in fact: hyper's read buffer
//! doubles as a head grows, and 900 connections each holding a 63 KB head were measured at
//! 272 MB. The budget bounds the sum instead, whatever the number of connections.
//!
//! ## How
//! The clocks that time heads ([`super::h1_clock`], [`super::header_clock`]) know when a head
//! is under way and how many of its bytes have been read. A head is charged with the bytes read
//! so far at each read once they pass [`FREE_HEAD_BYTES`], and when a read in its middle would
//! wait (it stalls): a head within the read buffer every connection has anyway holds nothing
//! more than an idle connection, and nearly every head is one, so the hot path never touches
//! the shared count. Charging as the head grows, not only when it stalls, stops a connection
//! before hyper's buffer has grown for the whole head. The charge is given back when the head is complete (its request
//! reaches the service; the header block's `END_HEADERS` arrives) or the connection ends. A
//! charge that would take the sum past the budget fails that connection's read, so the
//! connection ends: the newest head pays, not the clients already waiting.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

/// The bytes of a head that are not charged: hyper's first read buffer (8 KiB), which every
/// HTTP/1.1 connection holds whatever it sends.
pub(super) const FREE_HEAD_BYTES: usize = 8 * 1024;

/// The bytes held by unfinished heads across every connection, for the life of the listener.
pub(super) struct HeaderBudget {
    held: AtomicUsize,
    /// Connections closed because their head would not fit.
    closed: Counter,
}

impl HeaderBudget {
    pub(super) fn new(closed: Counter) -> Arc<Self> {
        Arc::new(HeaderBudget {
            held: AtomicUsize::new(0),
            closed,
        })
    }

    /// The bytes charged now, across every connection.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// One connection's charge against the budget: the bytes of its unfinished head, if any.
pub(super) struct HeadCharge {
    budget: Arc<HeaderBudget>,
    /// `max_unfinished_header_bytes` of the connection's generation.
    limit: usize,
    held: AtomicUsize,
}

impl HeadCharge {
    pub(super) fn new(budget: Arc<HeaderBudget>, limit: usize) -> Self {
        HeadCharge {
            budget,
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// Charges a head with `bytes` read so far (replacing what this connection held), if they
    /// are more than [`FREE_HEAD_BYTES`]. Fails, charging nothing more, when that would take the sum past the budget: the
    /// caller fails its read, and the connection ends.
    pub(super) fn hold(&self, bytes: usize) -> io::Result<()> {
        if bytes <= FREE_HEAD_BYTES {
            return Ok(());
        }
        let held = self.held.load(Ordering::Relaxed);
        if bytes <= held {
            self.budget.held.fetch_sub(held - bytes, Ordering::Relaxed);
            self.held.store(bytes, Ordering::Relaxed);
            return Ok(());
        }
        let more = bytes - held;
        let before = self.budget.held.fetch_add(more, Ordering::Relaxed);
        if before + more > self.limit {
            self.budget.held.fetch_sub(more, Ordering::Relaxed);
            self.budget.closed.inc();
            tracing::debug!(
                bytes,
                budget = self.limit,
                "closing a connection whose unfinished request head does not fit in \
                 max_unfinished_header_bytes"
            );
            return Err(io::Error::other(
                "unfinished request heads hold max_unfinished_header_bytes: no room for this one",
            ));
        }
        self.held.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Gives the charge back: the head is complete. Costs one load when nothing is held.
    pub(super) fn release(&self) {
        if self.held.load(Ordering::Relaxed) != 0 {
            let held = self.held.swap(0, Ordering::Relaxed);
            self.budget.held.fetch_sub(held, Ordering::Relaxed);
        }
    }
}

impl Drop for HeadCharge {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_heads_share_the_budget_and_give_it_back() {
        const K: usize = 1024;
        let budget = HeaderBudget::new(Counter::default());
        let first = HeadCharge::new(budget.clone(), 100 * K);
        let second = HeadCharge::new(budget.clone(), 100 * K);
        first.hold(8 * K).unwrap();
        assert_eq!(
            budget.held(),
            0,
            "a head within the first read buffer is free"
        );
        first.hold(40 * K).unwrap();
        first.hold(60 * K).unwrap();
        assert_eq!(
            budget.held(),
            60 * K,
            "a head's charge is replaced, not added"
        );
        let refused = second.hold(41 * K).unwrap_err();
        assert!(refused.to_string().contains("max_unfinished_header_bytes"));
        assert_eq!(budget.held(), 60 * K, "a refused charge takes nothing");
        assert_eq!(budget.closed.get(), 1);
        second.hold(40 * K).unwrap();
        assert_eq!(budget.held(), 100 * K);
        first.release();
        assert_eq!(budget.held(), 40 * K);
        second.hold(10 * K).unwrap();
        assert_eq!(
            budget.held(),
            10 * K,
            "a smaller head gives the difference back"
        );
        drop(second);
        assert_eq!(budget.held(), 0);
    }
}
