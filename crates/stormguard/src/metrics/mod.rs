//! Every decision counted: the observer that the layers, the proxy and the simulator report to.
//!
//! ## Why count every retry and timeout
//! Retries hide failures; that is their job and their danger. A dependency that needs one retry
//! in ten looks healthy from above until the day the budget runs out. So every decision the
//! policy takes is an [`Event`] given to an [`Observer`]: attempts, retries and why, retries
//! refused by the budget or the token bucket, hedges sent and won, timeouts split into connect and
//! request, requests given up for lack of deadline, and instances ejected for failing.
//! [`NoMetrics`] drops them; the `prometheus` feature adds `PrometheusMetrics`, whose help texts
//! say what to do about each number.
// Docs built without the feature (docs.rs builds the default features) have no such item to
// link to, so the link is made only where the item exists.
#![cfg_attr(
    feature = "prometheus",
    doc = "See [`PrometheusMetrics`], and [`TargetMetrics`] for the layers of one target."
)]

use std::time::Duration;

use crate::classify::RetryKind;
use crate::policy::{Denied, GiveUp};

#[cfg(feature = "prometheus")]
mod prometheus;
#[cfg(feature = "prometheus")]
pub use self::prometheus::{PrometheusMetrics, TargetMetrics};

/// Which timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// The connection was not established in time: the request never reached the server.
    Connect,
    /// The request was sent but no response came within the per-try timeout.
    Request,
}

/// One decision or outcome, reported to an [`Observer`].
///
/// Non-exhaustive: the layers will report more kinds of decision as they learn to take them, and
/// an observer written today should keep compiling then, so match it with a `_ =>` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A request (not an attempt) began.
    Request,
    /// An attempt was sent: first tries, retries and hedges alike.
    Attempt,
    /// A retry was granted after an attempt that came to `kind`.
    Retry(RetryKind),
    /// A retry was refused by a limiter.
    RetryDenied(Denied),
    /// A hedge was sent.
    HedgeSent,
    /// The hedge answered first.
    HedgeWon,
    /// An attempt timed out.
    Timeout(TimeoutKind),
    /// A request was refused (or not retried) because too little of its deadline was left.
    DeadlineGiveUp,
    /// A request ended successfully.
    Succeeded,
    /// A request ended without success.
    Failed(GiveUp),
    /// A balancer left `instance` out of its choice for `duration`, after it failed several
    /// times in a row ([`crate::instance::ejection`]).
    Ejected {
        /// The instance's number in the balancer: its position until the set changes
        /// (`Balance::update`), never reused.
        instance: usize,
        /// How long it is left out.
        duration: Duration,
    },
}

/// Receives the events of a target (a route, an upstream, a call in the graph).
///
/// Implementations must be cheap and must not block: they are called on the request path.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use stormguard::metrics::{Event, Observer};
///
/// #[derive(Default)]
/// struct CountRetries(AtomicU64);
///
/// impl Observer for CountRetries {
///     fn observe(&self, _target: &str, event: Event) {
///         if let Event::Retry(_) = event {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let counter = CountRetries::default();
/// counter.observe("api", Event::Retry(stormguard::classify::RetryKind::Refused));
/// assert_eq!(counter.0.load(Ordering::Relaxed), 1);
/// ```
pub trait Observer: Send + Sync + 'static {
    /// Records one event of `target`.
    fn observe(&self, target: &str, event: Event);

    /// A balancer of `target` ejected the instance it names `instance` (an address, say) for
    /// `duration`; called beside [`Event::Ejected`], whose number alone does not say which
    /// instance it is once the set has changed. For per-instance series, which are kept by
    /// name; nothing by default.
    fn instance_ejected(&self, target: &str, instance: &str, duration: std::time::Duration) {
        let _ = (target, instance, duration);
    }
}

/// Drops every event: for users who do not want metrics, at no cost.
///
/// ```
/// use stormguard::metrics::{Event, NoMetrics, Observer};
/// NoMetrics.observe("api", Event::Attempt);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMetrics;

impl Observer for NoMetrics {
    #[inline]
    fn observe(&self, _target: &str, _event: Event) {}
}

impl<O: Observer + ?Sized> Observer for std::sync::Arc<O> {
    fn instance_ejected(&self, target: &str, instance: &str, duration: std::time::Duration) {
        (**self).instance_ejected(target, instance, duration);
    }

    #[inline]
    fn observe(&self, target: &str, event: Event) {
        (**self).observe(target, event)
    }
}

/// A stable label for the kind of failure that called for a retry.
pub fn retry_kind_label(kind: RetryKind) -> &'static str {
    match kind {
        RetryKind::Refused => "connect-refused",
        RetryKind::ConnectTimeout => "connect-timeout",
        RetryKind::Reset => "reset",
        RetryKind::RefusedStream => "refused-stream",
        RetryKind::Timeout => "timeout",
        RetryKind::Error => "error",
        RetryKind::Status(429) => "429",
        RetryKind::Status(408) => "408",
        RetryKind::Status(500) => "500",
        RetryKind::Status(502) => "502",
        RetryKind::Status(503) => "503",
        RetryKind::Status(504) => "504",
        RetryKind::Status(409) => "409",
        RetryKind::Status(_) => "status",
        RetryKind::Grpc(code) => crate::classify::grpc_name(code.into()).unwrap_or("grpc"),
    }
}
