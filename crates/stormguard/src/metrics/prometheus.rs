//! [`Observer`] counters in a `prometheus-client` registry.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{retry_kind_label, Event, Observer, TimeoutKind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    target: String,
    reason: &'static str,
}

/// Prometheus counters for every [`Event`], registered with help texts that say what to do.
///
/// Metric names (all counters, labelled by `target`): `stormguard_requests`,
/// `stormguard_attempts`, `stormguard_retries` (`reason`), `stormguard_retries_denied`
/// (`reason` = `retry-budget` | `token-bucket`), `stormguard_hedges`, `stormguard_hedges_won`,
/// `stormguard_timeouts` (`reason` = `connect` | `request`), `stormguard_deadline_giveups`,
/// `stormguard_succeeded`, `stormguard_failed` (`reason`), `stormguard_ejections`.
///
/// ```
/// use prometheus_client::registry::Registry;
/// use stormguard::metrics::{Event, Observer, PrometheusMetrics};
///
/// let mut registry = Registry::default();
/// let metrics = PrometheusMetrics::register(&mut registry);
/// metrics.observe("api", Event::Attempt);
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("stormguard_attempts_total{target=\"api\"} 1"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct PrometheusMetrics {
    // One pointer: the layers clone their observer on the request path (a deadline layer for
    // every call), and a clone of eleven families and a map was twelve reference counts.
    inner: Arc<Families>,
}

/// The counters of a [`PrometheusMetrics`] and its clones.
#[derive(Debug, Default)]
struct Families {
    requests: Family<TargetLabels, Counter>,
    attempts: Family<TargetLabels, Counter>,
    retries: Family<ReasonLabels, Counter>,
    retries_denied: Family<ReasonLabels, Counter>,
    hedges: Family<TargetLabels, Counter>,
    hedges_won: Family<TargetLabels, Counter>,
    timeouts: Family<ReasonLabels, Counter>,
    deadline_giveups: Family<TargetLabels, Counter>,
    succeeded: Family<TargetLabels, Counter>,
    failed: Family<ReasonLabels, Counter>,
    ejections: Family<TargetLabels, Counter>,
    /// The counters labelled by target alone, found by the target's name without making a
    /// label set: the events every request reports (request, attempt, success) cost a lookup
    /// and an atomic add, not an allocation, a hash of the label set and the family's lock.
    by_target: RwLock<HashMap<Box<str>, TargetCounters, FnvBuild>>,
}

/// One target's counters of the families labelled by target alone: the same counters the
/// families export.
#[derive(Clone, Debug)]
struct TargetCounters {
    requests: Counter,
    attempts: Counter,
    hedges: Counter,
    hedges_won: Counter,
    deadline_giveups: Counter,
    succeeded: Counter,
    ejections: Counter,
}

/// FNV-1a: target names are few, short and come from the settings, not from requests, so a
/// hash that is cheap on short keys is enough.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type FnvBuild = BuildHasherDefault<Fnv>;

impl PrometheusMetrics {
    /// Creates the counters and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "stormguard_requests",
            "Requests received, before any retry. Divide stormguard_attempts by this for the load your retries and hedges add; above 1.2 the dependency is failing often enough to look at",
            metrics.inner.requests.clone(),
        );
        registry.register(
            "stormguard_attempts",
            "Attempts sent: first tries, retries and hedges. This is the load the dependency sees",
            metrics.inner.attempts.clone(),
        );
        registry.register(
            "stormguard_retries",
            "Retries sent, by what the failed attempt came to. A steady rate means a failure that retries are hiding: fix its cause, do not raise max_attempts",
            metrics.inner.retries.clone(),
        );
        registry.register(
            "stormguard_retries_denied",
            "Retries not sent because the retry budget or token bucket was spent. Rising means the dependency is failing broadly: the limiter is protecting it; do not raise the budget, find the failure",
            metrics.inner.retries_denied.clone(),
        );
        registry.register(
            "stormguard_hedges",
            "Hedged requests sent after the hedge delay. Near max_extra of requests means the delay is too short or the tail too long",
            metrics.inner.hedges.clone(),
        );
        registry.register(
            "stormguard_hedges_won",
            "Hedges that answered before the original. Few wins for many hedges: raise the hedge delay",
            metrics.inner.hedges_won.clone(),
        );
        registry.register(
            "stormguard_timeouts",
            "Attempts that timed out, by kind. Connect timeouts point at the network or a dead instance; request timeouts at a slow dependency or a timeout below its p99.9 (run stormguard recommend)",
            metrics.inner.timeouts.clone(),
        );
        registry.register(
            "stormguard_deadline_giveups",
            "Requests answered at once, or not retried, because too little of the caller's deadline was left. Rising means callers upstream wait less than this path needs: check timeouts telescope (stormguard check)",
            metrics.inner.deadline_giveups.clone(),
        );
        registry.register(
            "stormguard_succeeded",
            "Requests that ended in success, after any retries",
            metrics.inner.succeeded.clone(),
        );
        registry.register(
            "stormguard_failed",
            "Requests that ended in failure, by why no further attempt was made (final, attempts, retry-budget, token-bucket, deadline)",
            metrics.inner.failed.clone(),
        );
        registry.register(
            "stormguard_ejections",
            "Instances left out of load balancing for a while after failing several times in a row (refused connections, 5xx). A steady rate means one instance keeps failing: look at it, or take it out of the list of instances",
            metrics.inner.ejections.clone(),
        );
        metrics
    }
}

impl PrometheusMetrics {
    /// The counters of one target, found once: an [`Observer`] for a layer (or a route's whole
    /// stack) that reports events of `target` only.
    ///
    /// Why: [`PrometheusMetrics::observe`] finds a target's counters by its name on every event,
    /// behind a read lock on a map shared by every target. A route's layers report three or
    /// more events per request, always under the same name; the handle returned here holds that
    /// name's counters, so an event is a string comparison and an atomic add. It counts into
    /// the same series as `self` (a clone of it sees the same numbers), and an event of another
    /// target still goes through the lookup, so it is never wrong, only slower.
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use stormguard::metrics::{Event, Observer, PrometheusMetrics};
    ///
    /// let mut registry = Registry::default();
    /// let metrics = PrometheusMetrics::register(&mut registry);
    /// let api = metrics.for_target("api");
    /// api.observe("api", Event::Attempt);
    /// metrics.observe("api", Event::Attempt);
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    /// assert!(text.contains("stormguard_attempts_total{target=\"api\"} 2"));
    /// ```
    pub fn for_target(&self, target: &str) -> TargetMetrics {
        TargetMetrics {
            inner: Arc::new(Bound {
                counters: self.counters(target),
                target: target.into(),
                metrics: self.clone(),
            }),
        }
    }

    /// The counters of target `t`, made (and kept for the next lookup) on first use.
    fn counters(&self, t: &str) -> TargetCounters {
        self.with_target(t, TargetCounters::clone)
    }

    /// Runs `f` on the counters of target `t`, made on first use.
    fn with_target<R>(&self, t: &str, f: impl FnOnce(&TargetCounters) -> R) -> R {
        {
            let map = self
                .inner
                .by_target
                .read()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(counters) = map.get(t) {
                return f(counters);
            }
        }
        let labels = target(t);
        let counters = TargetCounters {
            requests: self.inner.requests.get_or_create_owned(&labels),
            attempts: self.inner.attempts.get_or_create_owned(&labels),
            hedges: self.inner.hedges.get_or_create_owned(&labels),
            hedges_won: self.inner.hedges_won.get_or_create_owned(&labels),
            deadline_giveups: self.inner.deadline_giveups.get_or_create_owned(&labels),
            succeeded: self.inner.succeeded.get_or_create_owned(&labels),
            ejections: self.inner.ejections.get_or_create_owned(&labels),
        };
        let result = f(&counters);
        self.inner
            .by_target
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(t.into())
            .or_insert(counters);
        result
    }

    /// Counts `event` of target `t`; `own` holds `t`'s counters when the caller has them, so
    /// that the events labelled by target alone need no lookup.
    fn count(&self, t: &str, own: Option<&TargetCounters>, event: Event) {
        let by_target = |f: fn(&TargetCounters)| match own {
            Some(counters) => f(counters),
            None => self.with_target(t, f),
        };
        match event {
            Event::Request => by_target(|c| {
                c.requests.inc();
            }),
            Event::Attempt => by_target(|c| {
                c.attempts.inc();
            }),
            Event::Retry(kind) => {
                self.inner
                    .retries
                    .get_or_create(&reason(t, retry_kind_label(kind)))
                    .inc();
            }
            Event::RetryDenied(by) => {
                self.inner
                    .retries_denied
                    .get_or_create(&reason(t, by.name()))
                    .inc();
            }
            Event::HedgeSent => by_target(|c| {
                c.hedges.inc();
            }),
            Event::HedgeWon => by_target(|c| {
                c.hedges_won.inc();
            }),
            Event::Timeout(kind) => {
                let label = match kind {
                    TimeoutKind::Connect => "connect",
                    TimeoutKind::Request => "request",
                };
                self.inner.timeouts.get_or_create(&reason(t, label)).inc();
            }
            Event::DeadlineGiveUp => by_target(|c| {
                c.deadline_giveups.inc();
            }),
            Event::Succeeded => by_target(|c| {
                c.succeeded.inc();
            }),
            Event::Failed(give_up) => {
                self.inner
                    .failed
                    .get_or_create(&reason(t, give_up.reason()))
                    .inc();
            }
            Event::Ejected { .. } => by_target(|c| {
                c.ejections.inc();
            }),
        }
    }
}

/// A [`PrometheusMetrics`] bound to one target, made by [`PrometheusMetrics::for_target`]: the
/// observer of a layer that reports that target's events, without a lookup per event.
///
/// Cloning is one reference count. Events of the bound target go straight to its counters;
/// events of any other target are counted as [`PrometheusMetrics`] counts them.
///
/// ```
/// use prometheus_client::registry::Registry;
/// use stormguard::metrics::{Event, Observer, PrometheusMetrics};
///
/// let mut registry = Registry::default();
/// let metrics = PrometheusMetrics::register(&mut registry);
/// // One handle per dependency, given to each of its layers.
/// let payments = metrics.for_target("payments");
/// assert_eq!(payments.target(), "payments");
/// # #[cfg(feature = "tower")]
/// # {
/// use stormguard::layer::RetryLayer;
/// use stormguard::policy::RetryPolicy;
/// let layer = RetryLayer::new(RetryPolicy::recommended())
///     .target("payments")
///     .observer(payments.clone());
/// # let _ = layer;
/// # }
/// payments.observe("payments", Event::Succeeded);
/// ```
#[derive(Clone, Debug)]
pub struct TargetMetrics {
    // One pointer, as `PrometheusMetrics`: a deadline layer clones its observer for every call.
    inner: Arc<Bound>,
}

#[derive(Debug)]
struct Bound {
    target: Box<str>,
    counters: TargetCounters,
    /// For the events labelled by reason too, and for events of other targets.
    metrics: PrometheusMetrics,
}

impl TargetMetrics {
    /// The target this handle's counters are labelled with.
    pub fn target(&self) -> &str {
        &self.inner.target
    }
}

impl Observer for TargetMetrics {
    fn observe(&self, t: &str, event: Event) {
        let bound = &*self.inner;
        let own = (*bound.target == *t).then_some(&bound.counters);
        bound.metrics.count(t, own, event);
    }
}

fn target(target: &str) -> TargetLabels {
    TargetLabels {
        target: target.to_string(),
    }
}

fn reason(target: &str, reason: &'static str) -> ReasonLabels {
    ReasonLabels {
        target: target.to_string(),
        reason,
    }
}

impl Observer for PrometheusMetrics {
    fn observe(&self, t: &str, event: Event) {
        self.count(t, None, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::RetryKind;
    use crate::policy::{Denied, GiveUp};

    #[test]
    fn every_event_lands_in_its_counter_with_help() {
        let mut registry = Registry::default();
        let metrics = PrometheusMetrics::register(&mut registry);
        let events = [
            Event::Request,
            Event::Attempt,
            Event::Attempt,
            Event::Retry(RetryKind::Status(503)),
            Event::RetryDenied(Denied::Budget),
            Event::HedgeSent,
            Event::HedgeWon,
            Event::Timeout(TimeoutKind::Connect),
            Event::DeadlineGiveUp,
            Event::Succeeded,
            Event::Failed(GiveUp::Deadline),
            Event::Ejected {
                instance: 2,
                duration: std::time::Duration::from_secs(1),
            },
        ];
        for event in events {
            metrics.observe("api", event);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        // prometheus-client ends every help text with a period of its own.
        for help in text.lines().filter(|l| l.starts_with("# HELP")) {
            assert!(help.ends_with('.') && !help.ends_with(".."), "{help}");
        }
        for line in [
            "stormguard_requests_total{target=\"api\"} 1",
            "stormguard_attempts_total{target=\"api\"} 2",
            "stormguard_retries_total{target=\"api\",reason=\"503\"} 1",
            "stormguard_retries_denied_total{target=\"api\",reason=\"retry-budget\"} 1",
            "stormguard_hedges_total{target=\"api\"} 1",
            "stormguard_hedges_won_total{target=\"api\"} 1",
            "stormguard_timeouts_total{target=\"api\",reason=\"connect\"} 1",
            "stormguard_deadline_giveups_total{target=\"api\"} 1",
            "stormguard_succeeded_total{target=\"api\"} 1",
            "stormguard_failed_total{target=\"api\",reason=\"deadline\"} 1",
            "stormguard_ejections_total{target=\"api\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.contains("# HELP stormguard_retries_denied"));
    }

    #[test]
    fn a_bound_handle_counts_into_the_same_series_and_others_by_name() {
        let mut registry = Registry::default();
        let metrics = PrometheusMetrics::register(&mut registry);
        metrics.observe("api", Event::Request);
        let api = metrics.for_target("api");
        assert_eq!(api.target(), "api");
        let copy = api.clone();
        for event in [Event::Request, Event::Attempt, Event::Succeeded] {
            copy.observe("api", event);
        }
        api.observe("api", Event::Timeout(TimeoutKind::Request));
        // Another target's events, given to the handle, still land under that target.
        api.observe("db", Event::Attempt);
        api.observe("db", Event::Failed(GiveUp::Deadline));
        metrics.observe("api", Event::Attempt);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "stormguard_requests_total{target=\"api\"} 2",
            "stormguard_attempts_total{target=\"api\"} 2",
            "stormguard_succeeded_total{target=\"api\"} 1",
            "stormguard_timeouts_total{target=\"api\",reason=\"request\"} 1",
            "stormguard_attempts_total{target=\"db\"} 1",
            "stormguard_failed_total{target=\"db\",reason=\"deadline\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
