//! [`ConnectionLimit`]: at most `max_connections` client connections at once, and none of them
//! held by a client that has said nothing.
//!
//! ## Why wait rather than refuse
//! At the limit the listener stops accepting until a connection ends, as HAProxy's `maxconn`
//! does (but for the one client it holds while a silent connection gives way, below), rather
//! than accepting and closing at once: a client that waits in the kernel's accept queue is
//! served as soon as there is room, where a reset is an error every client reports
//! (and a request it may not retry). The queue is the listen backlog, so what waits is bounded
//! by the kernel, and once it is full new connections are not acknowledged and clients retry
//! their handshake with their own backoff. Accepting to close would also spend an accept, a
//! descriptor and a close on every client turned away, in the overload that is the reason for
//! the limit.
//!
//! ## Why silent connections give way
//! A bare TCP connect costs a client nothing, and until its first byte the proxy cannot tell a
//! pool that opened a connection ahead of its request from an attacker who opens
//! `max_connections` of them to lock everyone else out. So at the limit the listener takes the
//! next client from the queue, holds it unserved, and closes the oldest connection that has not
//! sent a byte ([`Admitted::evicted`] resolves for it) to make room, before it waits for a
//! connection to end: a client keeps its place by speaking ([`Admitted::spoke`]) before
//! `max_connections` newer connections arrive. A connection is only taken for silent once it
//! has been open for [`SILENT_AFTER`], so that one whose request is on its way, or whose task
//! has not run yet, is never closed for room; connections that have spoken never are.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::ProxyMetrics;

/// How long a connection must have been open without a byte to be closed for room: far longer
/// than a client takes to send its request once connected, or the proxy to start serving it.
pub(super) const SILENT_AFTER: Duration = Duration::from_secs(1);

/// The open client connections and the wake-up of an accept that waits for room.
pub(super) struct ConnectionLimit {
    open: AtomicUsize,
    ended: Notify,
    metrics: ProxyMetrics,
    /// Connections accepted, oldest first, with when, that had not spoken when last looked at:
    /// some have spoken or ended since, and are dropped as they are met. Only the accept loop
    /// touches it, so its lock is never contended.
    silent: Mutex<VecDeque<(Instant, Arc<FirstByte>)>>,
}

/// Whether a connection has sent its first byte.
struct FirstByte {
    state: AtomicU8,
    evicted: Notify,
}

/// No byte yet: the connection may be closed to admit another.
const SILENT: u8 = 0;
/// It sent a byte: it keeps its place.
const SPOKE: u8 = 1;
/// Evicted, or ended.
const GONE: u8 = 2;

/// A connection's place under the limit, given back when dropped.
pub(super) struct Admitted {
    limit: Arc<ConnectionLimit>,
    first_byte: Arc<FirstByte>,
    /// Whether its connection was accepted, and so counted in the open connections' gauge: the
    /// accept loop takes a place before a client arrives, which the gauge counted as a
    /// connection (1 with none open).
    counted: bool,
}

/// What the oldest silent connection came to.
enum Eviction {
    /// It was closed: its end wakes the accept.
    Evicted,
    /// It is too young to be taken for silent until then.
    NotBefore(Instant),
    /// Every connection has spoken.
    NoneSilent,
}

impl ConnectionLimit {
    pub(super) fn new(metrics: ProxyMetrics) -> Arc<Self> {
        Arc::new(ConnectionLimit {
            open: AtomicUsize::new(0),
            ended: Notify::new(),
            metrics,
            silent: Mutex::new(VecDeque::new()),
        })
    }

    fn silent(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Arc<FirstByte>)>> {
        // A queue of places stays valid after any panic.
        self.silent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place, if fewer than `max` connections are open. Only the accept loop admits, so no
    /// other caller can take the place between the check and the count.
    pub(super) fn try_admit(self: &Arc<Self>, max: usize) -> Option<Admitted> {
        if self.open.load(Ordering::Acquire) >= max {
            return None;
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        Some(Admitted {
            limit: self.clone(),
            first_byte: Arc::new(FirstByte {
                state: AtomicU8::new(SILENT),
                evicted: Notify::new(),
            }),
            counted: false,
        })
    }

    /// Waits until fewer than `max` connections are open, closing the oldest silent one for
    /// room, then takes a place: for a client that is waiting. Cancel safe: a wait dropped
    /// takes nothing. A limit raised by a reload is seen when the next connection ends.
    pub(super) async fn admit(self: &Arc<Self>, max: usize) -> Admitted {
        let mut counted = false;
        loop {
            let ended = self.ended.notified();
            if let Some(admitted) = self.try_admit(max) {
                return admitted;
            }
            let wake_at = match self.evict_oldest_silent() {
                Eviction::Evicted => None,
                Eviction::NotBefore(at) => Some(at),
                Eviction::NoneSilent => {
                    if !counted {
                        counted = true;
                        self.metrics.connections_limited.inc();
                        tracing::warn!(max, "max_connections open: not accepting until one ends");
                    }
                    None
                }
            };
            match wake_at {
                Some(at) => tokio::select! {
                    () = ended => {}
                    () = tokio::time::sleep_until(at) => {}
                },
                None => ended.await,
            }
        }
    }

    /// Closes the oldest connection that has been silent for [`SILENT_AFTER`].
    fn evict_oldest_silent(&self) -> Eviction {
        let now = Instant::now();
        let mut silent = self.silent();
        while let Some((accepted, oldest)) = silent.front() {
            if !oldest.is_silent() {
                silent.pop_front();
                continue;
            }
            if now < *accepted + SILENT_AFTER {
                return Eviction::NotBefore(*accepted + SILENT_AFTER);
            }
            let evicted = oldest
                .state
                .compare_exchange(SILENT, GONE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if evicted {
                // Stored when the connection is not waiting yet: it sees it when it does.
                oldest.evicted.notify_one();
                silent.pop_front();
                self.metrics.connections_closed.silent_at_limit.inc();
                tracing::debug!("closed a connection that sent nothing to admit a new one");
                return Eviction::Evicted;
            }
        }
        Eviction::NoneSilent
    }
}

impl FirstByte {
    fn is_silent(&self) -> bool {
        self.state.load(Ordering::Acquire) == SILENT
    }
}

impl Admitted {
    /// Says that the place's connection was accepted now: from here it may be closed for room
    /// until it speaks. Called by the accept loop only.
    pub(super) fn accepted(&mut self, max: usize) {
        if !self.counted {
            self.counted = true;
            self.limit.metrics.connections.inc();
        }
        let mut silent = self.limit.silent();
        while silent.front().is_some_and(|(_, f)| !f.is_silent()) {
            silent.pop_front();
        }
        silent.push_back((Instant::now(), self.first_byte.clone()));
        // One silent connection held at the front leaves the entries behind it: sweep them all
        // now and then, so that the queue stays within about twice the connections open.
        if silent.len() > 2 * max.max(64) {
            silent.retain(|(_, f)| f.is_silent());
        }
    }

    /// Resolves when the limit closes this connection, silent, to admit another: the
    /// connection should end at once. Cancel safe.
    pub(super) async fn evicted(&self) {
        self.first_byte.evicted.notified().await;
    }

    /// Marks the connection's first byte, which keeps its place from then on; false when it
    /// was evicted first (it must end, even with a byte in hand: its place is promised).
    pub(super) fn spoke(&self) -> bool {
        self.first_byte
            .state
            .compare_exchange(SILENT, SPOKE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.first_byte.state.store(GONE, Ordering::Release);
        let limit = &self.limit;
        limit.open.fetch_sub(1, Ordering::AcqRel);
        if self.counted {
            limit.metrics.connections.dec();
        }
        // Stored when no accept waits, so an accept that checks just before is not missed.
        limit.ended.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit() -> Arc<ConnectionLimit> {
        let mut registry = prometheus_client::registry::Registry::default();
        ConnectionLimit::new(ProxyMetrics::register(&mut registry))
    }

    /// A place for an accepted connection that has spoken.
    async fn spoken(limit: &Arc<ConnectionLimit>, max: usize) -> Admitted {
        let mut admitted = limit.admit(max).await;
        admitted.accepted(max);
        assert!(admitted.spoke());
        admitted
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_limit_an_admission_waits_for_a_place_to_be_given_back() {
        let limit = limit();
        let first = spoken(&limit, 2).await;
        let _second = spoken(&limit, 2).await;
        assert!(limit.try_admit(2).is_none());
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.admit(2).await }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            !waiting.is_finished(),
            "a third place was given at a limit of two"
        );
        assert_eq!(limit.metrics.connections_limited.get(), 1);
        drop(first);
        let mut third = waiting.await.unwrap();
        third.accepted(2);
        assert_eq!(limit.metrics.connections.get(), 2);
        // A raised limit admits at once.
        let _fourth = limit.admit(3).await;
        assert_eq!(limit.metrics.connections_limited.get(), 1);
        assert_eq!(limit.metrics.connections_closed.silent_at_limit.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_limit_the_oldest_connection_silent_for_long_gives_way() {
        let limit = limit();
        let _spoken = spoken(&limit, 3).await;
        // Two silent connections, a second apart, each ending when evicted.
        let silent = |mut admitted: Admitted| {
            admitted.accepted(3);
            tokio::spawn(async move {
                admitted.evicted().await;
                assert!(!admitted.spoke(), "an evicted connection may not speak");
            })
        };
        let oldest = silent(limit.admit(3).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let newer = silent(limit.admit(3).await);
        let start = Instant::now();
        let mut fourth = limit.admit(3).await;
        // The oldest had been silent for a second already: closed at once.
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(oldest.is_finished() && !newer.is_finished());
        fourth.accepted(3);
        assert!(fourth.spoke());
        assert_eq!(limit.metrics.connections_closed.silent_at_limit.get(), 1);
        // The newer one is taken for silent only a second after it was accepted.
        let mut fifth = limit.admit(3).await;
        assert_eq!(start.elapsed(), SILENT_AFTER);
        assert!(newer.is_finished());
        fifth.accepted(3);
        assert!(fifth.spoke());
        // Only connections that spoke are left: an admission waits.
        let waits = tokio::time::timeout(Duration::from_secs(60), limit.admit(3)).await;
        assert!(
            waits.is_err(),
            "a connection that spoke was closed for room"
        );
        assert_eq!(limit.metrics.connections_limited.get(), 1);
        assert_eq!(limit.metrics.connections_closed.silent_at_limit.get(), 2);
    }

    /// The gauge counts connections accepted, not the place the accept loop takes before a
    /// client arrives (it read 1 with no client, 4 with three).
    #[tokio::test]
    async fn the_gauge_counts_accepted_connections_only() {
        let limit = limit();
        let mut waiting = limit.try_admit(4).unwrap();
        assert_eq!(limit.metrics.connections.get(), 0);
        waiting.accepted(4);
        assert_eq!(limit.metrics.connections.get(), 1);
        let never = limit.try_admit(4).unwrap();
        assert_eq!(limit.metrics.connections.get(), 1);
        drop(never);
        assert_eq!(limit.metrics.connections.get(), 1);
        drop(waiting);
        assert_eq!(limit.metrics.connections.get(), 0);
    }

    #[tokio::test]
    async fn the_queue_of_silent_connections_stays_small() {
        let limit = limit();
        // One connection stays silent at the front while thousands come and go behind it.
        let mut held = limit.admit(10).await;
        held.accepted(10);
        for _ in 0..5_000 {
            spoken(&limit, 10).await;
        }
        assert!(
            limit.silent().len() <= 2 * 64 + 1,
            "{}",
            limit.silent().len()
        );
    }
}
