//! Histograms by route, each route with its own buckets: a fixed ladder plus that route's
//! timeouts, so that the share of requests (or attempts) under a timeout is read straight off a
//! bucket, as Mux reads an Apdex. One `Family` shares one set of buckets, so a small
//! [`Collector`] encodes them instead.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// Seconds: from 1 ms to 10 s, the span of most request latencies; each route adds its timeouts.
pub(crate) const LADDER: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A timeout above this is "none" (the graph's `NO_TIMEOUT` is a year): no bucket for it.
const LONGEST_BUCKET: Duration = Duration::from_secs(3600);

/// The bucket bounds of a route whose timeouts are `marks`: the ladder plus each mark that is a
/// real timeout, in order, without duplicates.
pub(crate) fn buckets(marks: &[Duration]) -> Vec<f64> {
    let mut bounds = LADDER.to_vec();
    for mark in marks.iter().filter(|mark| **mark <= LONGEST_BUCKET) {
        let t = mark.as_secs_f64();
        if !bounds.iter().any(|b| (b - t).abs() < 1e-9) {
            bounds.push(t);
        }
    }
    bounds.sort_by(f64::total_cmp);
    bounds
}

/// One route's histogram with its bucket bounds. Cheap to clone: the histogram is shared.
#[derive(Clone, Debug)]
pub(crate) struct RouteHistogram {
    bounds: Arc<[f64]>,
    histogram: Histogram,
}

impl RouteHistogram {
    /// Records one duration.
    pub(crate) fn observe(&self, duration: Duration) {
        self.histogram.observe(duration.as_secs_f64());
    }

    /// The histogram itself, for what records into it on the request path.
    pub(crate) fn histogram(&self) -> &Histogram {
        &self.histogram
    }
}

/// One metric's histograms by route; only the published ones are exported.
#[derive(Debug)]
pub(crate) struct RouteHistograms {
    name: &'static str,
    help: &'static str,
    routes: RwLock<BTreeMap<String, RouteHistogram>>,
}

impl RouteHistograms {
    /// Histograms exported as `name` with `help`, which ends with a period: a collector's help
    /// is written as given, where a registered metric's gets one added.
    pub(crate) fn new(name: &'static str, help: &'static str) -> Self {
        RouteHistograms {
            name,
            help,
            routes: RwLock::default(),
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, RouteHistogram>> {
        self.routes.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The histogram of `route` with buckets at `marks`: the published one when its buckets are
    /// the same (a reload does not reset it), else a new one, not exported until published.
    pub(crate) fn for_route(&self, route: &str, marks: &[Duration]) -> RouteHistogram {
        let bounds = buckets(marks);
        let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
        match map.get(route) {
            Some(existing) if *existing.bounds == *bounds => existing.clone(),
            _ => RouteHistogram {
                histogram: Histogram::new(bounds.iter().copied()),
                bounds: bounds.into(),
            },
        }
    }

    /// Exports exactly `routes`' histograms.
    pub(crate) fn publish<'a>(
        &self,
        routes: impl IntoIterator<Item = (&'a str, &'a RouteHistogram)>,
    ) {
        let map = routes
            .into_iter()
            .map(|(name, histogram)| (name.to_string(), histogram.clone()))
            .collect();
        *self.write() = map;
    }
}

impl Collector for RouteHistograms {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut family = encoder.encode_descriptor(
            self.name,
            self.help,
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (route, histogram) in map.iter() {
            let labels = [("route", route.as_str())];
            histogram.histogram.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bucket_for_no_timeout_one_for_each_timeout() {
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(buckets(&[year]), LADDER.to_vec());
        assert_eq!(buckets(&[Duration::from_secs(1)]), LADDER.to_vec());
        assert_eq!(
            buckets(&[Duration::from_millis(300)]).len(),
            LADDER.len() + 1
        );
        let both = buckets(&[Duration::from_secs(3), Duration::from_millis(300), year]);
        assert_eq!(both.len(), LADDER.len() + 2);
        assert!(both.windows(2).all(|w| w[0] < w[1]), "{both:?}");
        assert!(both.contains(&0.3) && both.contains(&3.0));
    }
}
