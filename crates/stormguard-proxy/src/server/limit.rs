//! [`ConnectionLimit`]: at most `max_connections` client connections at once.
//!
//! ## Why wait rather than refuse
//! At the limit the listener stops accepting until a connection ends, as HAProxy's `maxconn`
//! does, rather than accepting and closing at once: a client that waits in the kernel's accept
//! queue is served as soon as there is room, where a reset is an error every client reports
//! (and a request it may not retry). The queue is the listen backlog, so what waits is bounded
//! by the kernel, and once it is full new connections are not acknowledged and clients retry
//! their handshake with their own backoff. Accepting to close would also spend an accept, a
//! descriptor and a close on every client turned away, in the overload that is the reason for
//! the limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::metrics::ProxyMetrics;

/// The open client connections and the wake-up of an accept that waits for room.
pub(super) struct ConnectionLimit {
    open: AtomicUsize,
    ended: Notify,
    metrics: ProxyMetrics,
}

/// A connection's place under the limit, given back when dropped.
pub(super) struct Admitted(Arc<ConnectionLimit>);

impl ConnectionLimit {
    pub(super) fn new(metrics: ProxyMetrics) -> Arc<Self> {
        Arc::new(ConnectionLimit {
            open: AtomicUsize::new(0),
            ended: Notify::new(),
            metrics,
        })
    }

    /// Waits until fewer than `max` connections are open, then takes a place. Only the accept
    /// loop calls it, so no other caller can take the place between the check and the count.
    /// Cancel safe: a wait dropped takes nothing. A limit raised by a reload is seen when the
    /// next connection ends.
    pub(super) async fn admit(self: &Arc<Self>, max: usize) -> Admitted {
        let mut counted = false;
        loop {
            let ended = self.ended.notified();
            if self.open.load(Ordering::Acquire) < max {
                break;
            }
            if !counted {
                counted = true;
                self.metrics.connections_limited.inc();
                tracing::warn!(max, "max_connections open: not accepting until one ends");
            }
            ended.await;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        self.metrics.connections.inc();
        Admitted(self.clone())
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.connections.dec();
        // Stored when no accept waits, so an accept that checks just before is not missed.
        self.0.ended.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_the_limit_an_admission_waits_for_a_place_to_be_given_back() {
        let mut registry = prometheus_client::registry::Registry::default();
        let limit = ConnectionLimit::new(ProxyMetrics::register(&mut registry));
        let first = limit.admit(2).await;
        let _second = limit.admit(2).await;
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.admit(2).await }
        });
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(
            !waiting.is_finished(),
            "a third place was given at a limit of two"
        );
        assert_eq!(limit.metrics.connections_limited.get(), 1);
        drop(first);
        let _third = waiting.await.unwrap();
        assert_eq!(limit.metrics.connections.get(), 2);
        // A raised limit admits at once.
        let _fourth = limit.admit(3).await;
        assert_eq!(limit.metrics.connections_limited.get(), 1);
    }
}
