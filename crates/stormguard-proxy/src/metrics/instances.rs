//! Per-instance series: what each instance's attempts came to, and whether it is ejected.
//!
//! ## Why bounded by the instances that run
//! An instance is named by its address (`instance_addr`; Prometheus's own `instance` label is
//! the scraped proxy). Addresses come and go with reloads and discovery, and a series kept for
//! every address ever seen would grow without end and show dead instances as healthy zeros.
//! So the series of an instance are exported only while a route's stack holds the instance:
//! the map keeps them weakly, and an instance that a reload or a DNS refresh took out goes
//! with its last request in flight (a settings file that failed to build never shows). Counters
//! survive a reload for an instance that stays, since the new stack finds the running series.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use stormguard::classify::AttemptResult;
use stormguard::metrics::{Event, Observer, PrometheusMetrics};
use tokio::time::Instant;

/// Which route, upstream and address a set of instance series belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct InstanceKey {
    pub(crate) route: String,
    pub(crate) upstream: String,
    pub(crate) addr: String,
}

/// What an attempt to an instance came to: the `outcome` label, each counter made at once so
/// that every outcome shows from the start (at 0) and `rate()` over it has data.
const OUTCOMES: [&str; 5] = ["ok", "5xx", "connect-failure", "error", "abandoned"];

/// One instance's counters on one route. Cheap to clone (one `Arc`): each attempt's timing
/// holds one.
#[derive(Clone, Debug, Default)]
pub(crate) struct InstanceMetrics(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    /// By [`OUTCOMES`], in that order.
    attempts: [Counter; 5],
    ejections: Counter,
    /// When the last ejection ends (tokio's clock, as the balancer's).
    ejected_until: Mutex<Option<Instant>>,
}

impl InstanceMetrics {
    /// Counts an attempt that was answered with `status`: a 5xx is the instance's failure, as
    /// the balancer's outlier detection counts it; anything else is an answer.
    pub(crate) fn answered(&self, status: u16) {
        let outcome = if status >= 500 { 1 } else { 0 };
        self.0.attempts[outcome].inc();
    }

    /// Counts an attempt that failed: a connection that was never made, or an error after.
    pub(crate) fn failed(&self, error: &(dyn std::error::Error + Send + Sync + 'static)) {
        let outcome = match stormguard::layer::classify_error(error) {
            AttemptResult::ConnectRefused | AttemptResult::ConnectTimeout => 2,
            _ => 3,
        };
        self.0.attempts[outcome].inc();
    }

    /// Counts an attempt dropped before it ended: cut off by a timeout, or a hedge that lost.
    pub(crate) fn abandoned(&self) {
        self.0.attempts[4].inc();
    }

    /// Records an ejection for `duration` from now.
    fn ejected(&self, duration: Duration) {
        self.0.ejections.inc();
        let until = Instant::now().checked_add(duration);
        *self
            .0
            .ejected_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = until;
    }

    /// Whether the instance is ejected now.
    fn is_ejected(&self) -> bool {
        let until = *self
            .0
            .ejected_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|until| Instant::now() < until)
    }
}

/// A route's balancer observer: the library's counters, plus each ejection on its instance's
/// series, found by the instance's name (its address).
#[derive(Clone, Debug)]
pub(crate) struct InstanceObserver {
    pub(crate) inner: PrometheusMetrics,
    pub(crate) series: Arc<InstanceSeries>,
    pub(crate) route: String,
    pub(crate) upstream: String,
}

impl Observer for InstanceObserver {
    fn observe(&self, target: &str, event: Event) {
        self.inner.observe(target, event);
    }

    fn instance_ejected(&self, _target: &str, instance: &str, duration: Duration) {
        let key = InstanceKey {
            route: self.route.clone(),
            upstream: self.upstream.clone(),
            addr: instance.to_string(),
        };
        if let Some(metrics) = self.series.live(&key) {
            metrics.ejected(duration);
        }
    }
}

/// The instances' series, keyed by route, upstream and address, each held weakly: exported
/// while a running stack holds it.
#[derive(Debug, Default)]
pub(crate) struct InstanceSeries {
    held: Mutex<BTreeMap<InstanceKey, Weak<Counters>>>,
}

impl InstanceSeries {
    /// The series of `key`: the running ones when a stack holds them, else new ones.
    pub(crate) fn get(&self, key: &InstanceKey) -> InstanceMetrics {
        let mut map = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(counters) = map.get(key).and_then(Weak::upgrade) {
            return InstanceMetrics(counters);
        }
        // The map never holds more than the live instances and those that left since.
        map.retain(|_, counters| counters.strong_count() > 0);
        let metrics = InstanceMetrics::default();
        map.insert(key.clone(), Arc::downgrade(&metrics.0));
        metrics
    }

    /// The series of `key` if a stack holds them.
    fn live(&self, key: &InstanceKey) -> Option<InstanceMetrics> {
        let map = self.held.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).and_then(Weak::upgrade).map(InstanceMetrics)
    }

    /// Every held instance's series, in key order.
    fn held(&self) -> Vec<(InstanceKey, InstanceMetrics)> {
        let map = self.held.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter_map(|(key, counters)| Some((key.clone(), InstanceMetrics(counters.upgrade()?))))
            .collect()
    }
}

impl Collector for InstanceSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let map = self.held();
        let labels = |key: &InstanceKey| {
            [
                ("route", key.route.clone()),
                ("upstream", key.upstream.clone()),
                ("instance_addr", key.addr.clone()),
            ]
        };
        let mut family = encoder.encode_descriptor(
            "stormguard_proxy_instance_attempts",
            "Attempts sent to each instance of a route's upstream, by outcome: ok (answered, not 5xx), 5xx, connect-failure (refused or not connected in time), error (failed after it was sent), abandoned (cut off by a timeout, or a hedge that lost). One instance with more failures than the others is a bad instance: look at it, or take it out of the list; all of them failing is the upstream's problem.",
            None,
            MetricType::Counter,
        )?;
        for (key, metrics) in &map {
            for (outcome, counter) in OUTCOMES.iter().zip(&metrics.0.attempts) {
                let [route, upstream, addr] = labels(key);
                let labels = [route, upstream, addr, ("outcome", (*outcome).to_string())];
                counter.encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "stormguard_proxy_instance_ejections",
            "Times each instance was left out of a route's load balancing after failing several times in a row. A steady rate on one instance means it keeps failing: look at it, or take it out of the list of instances.",
            None,
            MetricType::Counter,
        )?;
        for (key, metrics) in &map {
            metrics
                .0
                .ejections
                .encode(family.encode_family(&labels(key))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "stormguard_proxy_instance_ejected",
            "1 while an instance is left out of a route's load balancing, else 0. The balancer never ejects the last instances (at most max_ejected_percent of them): when every instance is ejected or failing, the upstream itself is down.",
            None,
            MetricType::Gauge,
        )?;
        for (key, metrics) in &map {
            let ejected = Gauge::<i64>::default();
            ejected.set(i64::from(metrics.is_ejected()));
            ejected.encode(family.encode_family(&labels(key))?)?;
        }
        Ok(())
    }
}
